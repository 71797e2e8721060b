"""A full disk under the run directory while SSH trials stream their output home: the
local copy fails in the backend's reader thread, which must neither die into an endless
re-attach loop nor kill the trials. The coordinator stops with one line, as a crash would;
the trials go on on their hosts; ``coord resume`` re-attaches and records each once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.resume.invariants import SPACE, TRIAL, check
from tests.resume.test_disk_full import _assert_one_line, _coord, _fill_when, small_fs  # noqa: F401
from tests.ssh.conftest import Cluster
from tests.ssh.test_ssh_search import RULE_SSH_ONLY

SLEEP = 'time.sleep(float(os.environ.get("TRIAL_SLEEP", "0.4")))'
# the invariant checker's trial, printing 200 lines of 1 KB over a second or more instead of sleeping
CHATTY = TRIAL.replace(SLEEP, 'for i in range(200):\n    print("x" * 1000, flush=True)\n    time.sleep(0.006)')
# ... or saving a 300 KB checkpoint after a second (with the built-in runners' own module), then
# going on for another second
RUNNERS = Path(__file__).resolve().parents[2] / "runners"
SAVES = TRIAL.replace(SLEEP, f'time.sleep(1.0)\nsys.path.insert(0, {str(RUNNERS)!r})\nimport checkpoint\n'
                      'checkpoint.save(os.environ["COORD_CHECKPOINT_DIR"], 1, {"w": os.urandom(300000)}, "k")\n'
                      'time.sleep(1.0)')


def _args(tmp_path: Path, cluster: Cluster, script: str, run: Path) -> list[str]:
    (tmp_path / "trial.py").write_text(script)
    (tmp_path / "space.yaml").write_text(SPACE)
    return ["search", "--command", f"{sys.executable} {tmp_path / 'trial.py'}", "--space", "space.yaml",
            "--metric", "loss", "--trials", "3", "--parallel", "1", "--sampler", "random", "--max-retries", "2",
            "--registry", str(cluster.registry(RULE_SSH_ONLY)), "--run-dir", str(run), "--quiet"]


def test_full_disk_while_copying_ssh_output_stops_once_and_resume_finishes(cluster: Cluster, tmp_path: Path,
                                                                           small_fs: Path) -> None:  # noqa: F811
    assert CHATTY != TRIAL
    run, ballast = small_fs / "run", small_fs / "ballast"
    args = _args(tmp_path, cluster, CHATTY, run)
    # filled while trial 0's output streams home: the copy is the next thing written
    _fill_when(ballast, run, "trials/0/attempt-1/stdout", 1)
    try:
        full = _coord(*args, cwd=tmp_path, timeout=90)  # before the fix: re-attached forever
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the coordinator did not stop on the full disk") from exc
    line = _assert_one_line(full, run)
    assert f"writing {run}/trials/0/attempt-1/stdout;" in line  # the reader thread's copy, named
    ballast.unlink()
    done = _coord("resume", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = check(run, trials=3, max_retries=2)
    assert counts.get("COMPLETE") == 3 and counts["attempts"] == 3  # trial 0 went on, detached: not re-run
    copy = (run / "trials/0/attempt-1/stdout").read_text()
    assert copy.count("x" * 1000) == 200  # the re-attach wrote the whole copy again


def test_full_disk_while_copying_a_checkpoint_home_stops_once_and_resume_finishes(
        cluster: Cluster, tmp_path: Path, small_fs: Path) -> None:  # noqa: F811
    assert SAVES != TRIAL
    run, ballast = small_fs / "run", small_fs / "ballast"
    _fill_when(ballast, run, "trials/0/attempt-1/stdout", 1)  # the trial saves a second later
    try:
        full = _coord(*_args(tmp_path, cluster, SAVES, run), cwd=tmp_path, timeout=90)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the coordinator did not stop on the full disk") from exc
    line = _assert_one_line(full, run)
    assert f"writing {run}/trials/0/checkpoint/step-00000001.ckpt;" in line
    assert not list((run / "trials/0/checkpoint").glob(".*.tmp"))  # no partial copy holds on to space
    ballast.unlink()
    done = _coord("resume", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = check(run, trials=3, max_retries=2)
    assert counts.get("COMPLETE") == 3 and counts["attempts"] == 3
