"""Kill the coordinator (SIGKILL, as ``kill -9``) at every named crash point and at random
times, run ``coord resume``, and check the invariants of docs/reliability.md on the result.

Real processes throughout: ``coord`` runs as a subprocess, its trials are real processes
that outlive it, and the checker reads the run directory, the Optuna journal and a trace
the trials write themselves.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.crashpoint import POINTS
from tests.resume.invariants import SPACE, TRIAL, check, committed_bytes

TRIALS, PARALLEL, RETRIES = 8, 2, 2


def _coord(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=180)


def _search_args(tmp_path: Path, run: Path, trials: int = TRIALS) -> list[str]:
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text(SPACE)
    return ["search", "--command", f"{sys.executable} trial.py", "--space", "space.yaml", "--metric", "loss",
            "--trials", str(trials), "--parallel", str(PARALLEL), "--sampler", "random", "--seed", "3",
            "--max-retries", str(RETRIES), "--run-dir", str(run), "--quiet"]


def _resume(tmp_path: Path, run: Path) -> dict[str, object]:
    done = _coord("resume", str(run), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


@pytest.mark.parametrize("point", [f"{p}:3" for p in POINTS if p != "mid_report"] + ["mid_report:1"])
def test_kill_at_a_named_point_then_resume(tmp_path: Path, point: str) -> None:
    run = tmp_path / "run"
    crashed = _coord(*_search_args(tmp_path, run), env={"COORD_CRASH_AT": point}, cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    before = committed_bytes(run)
    summary = _resume(tmp_path, run)
    counts = check(run, trials=TRIALS, max_retries=RETRIES, before=before)
    assert counts.get("COMPLETE") == TRIALS and counts["attempts"] == TRIALS  # nothing lost, nothing re-run
    assert summary["complete"] == TRIALS
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(resumed) == 1
    if point.startswith("after_ask"):
        assert resumed[0]["stale"] == 1  # the asked-but-unrecorded Optuna trial was failed, not left RUNNING
    if point.startswith(("after_launch", "mid_run", "after_end")):
        assert resumed[0]["reattached"] >= 1
    csv_rows = (run / "report" / "trials.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + TRIALS  # the report covers every trial once
    assert _coord("status", str(run), "--json", cwd=tmp_path).stdout.count('"finished"') == 1


def test_running_trials_are_reattached_not_rerun(tmp_path: Path) -> None:
    """Killed while both slots run long trials: after resume the same attempts finish
    (one start each in the trial's own trace) and no retry is spent."""
    run = tmp_path / "run"
    crashed = _coord(*_search_args(tmp_path, run, trials=4), env={"COORD_CRASH_AT": "mid_run:2", "TRIAL_SLEEP": "2"},
                     cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    running = [p for p in run.glob("trials/*/attempt-1/pid") if not (p.parent / "exit.json").exists()]
    assert running, "the trials should still be running after the coordinator died"
    pids = {p: p.read_text() for p in running}
    _resume(tmp_path, run)
    check(run, trials=4, max_retries=RETRIES)
    for p, pid in pids.items():
        assert p.read_text() == pid and not (p.parent.parent / "attempt-2").exists()
    status = json.loads(_coord("status", str(run), "--json", cwd=tmp_path).stdout)
    assert status["complete"] == 4 and status["state"] == "finished"


def test_random_kills_then_resume(tmp_path: Path) -> None:
    """Two kills at random moments (one of them during a resume), then a resume to the end."""
    rng = random.Random(11)
    run = tmp_path / "run"
    args = _search_args(tmp_path, run, trials=10)
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the random moment counts from the run's creation: on a loaded machine Python's start-up
    # alone can outlast 3 s, and a kill before run.json leaves nothing to resume (rightly refused)
    deadline = time.monotonic() + 60
    while not (run / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.5, 2.0))
    proc.kill()
    proc.wait()
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", "resume", str(run), "--quiet"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(1.0, 2.0))
    proc.kill()
    proc.wait()
    before = committed_bytes(run)
    _resume(tmp_path, run)
    counts = check(run, trials=10, max_retries=RETRIES, before=before)
    assert counts.get("COMPLETE") == 10


def test_resume_of_a_live_run_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # trials long enough (2 x 2 x 6 s) that the two CLI calls below finish while the search
    # runs, even on a loaded machine where each takes seconds to start (1 s trials raced them)
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *_search_args(tmp_path, run, trials=4)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TRIAL_SLEEP": "6"})
    try:
        deadline = time.monotonic() + 30
        while not (run / "lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        refused = _coord("resume", str(run), cwd=tmp_path)
        assert refused.returncode != 0 and "live coordinator" in refused.stderr
        assert "Traceback" not in refused.stderr
        status = json.loads(_coord("status", str(run), "--json", cwd=tmp_path).stdout)
        assert status["state"].startswith("live")
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0


def test_the_checker_catches_each_violation(tmp_path: Path) -> None:
    """The invariant checker must be able to fail: damage a good run one way at a time."""
    import shutil

    good = tmp_path / "good"
    assert _coord(*_search_args(tmp_path, good, trials=4), cwd=tmp_path).returncode == 0
    check(good, trials=4, max_retries=RETRIES)

    def damaged(name: str, damage) -> Path:  # type: ignore[no-untyped-def]
        run = tmp_path / name
        shutil.copytree(good, run)
        damage(run)
        return run

    def wrong_value(run: Path) -> None:
        res = run / "trials/1/result.json"
        data = json.loads(res.read_text())
        data["values"] = [data["values"][0] + 1]
        res.write_text(json.dumps(data))

    def too_many_attempts(run: Path) -> None:  # four failed attempts on record, with their directories
        for k in (2, 3, 4):
            shutil.copytree(run / "trials/0/attempt-1", run / f"trials/0/attempt-{k}")
        res = run / "trials/0/result.json"
        data = json.loads(res.read_text())
        data["attempts"] = [{**data["attempts"][0], "attempt": k, "kind": "crashed"} for k in (1, 2, 3)] + \
            [{**data["attempts"][0], "attempt": 4}]
        data["attempt"] = 4
        res.write_text(json.dumps(data))

    cases = {
        "I1": lambda run: (run / "trials/2/result.json").unlink(),
        "I4": wrong_value,
        "ran twice": lambda run: (run / "trace.log").write_text((run / "trace.log").read_text() + "0 1 start 1.0\n"),
        "I5": too_many_attempts,
    }
    for want, damage in cases.items():
        with pytest.raises(AssertionError, match=want):
            check(damaged(want.replace(" ", "_"), damage), trials=4, max_retries=RETRIES)
    before = committed_bytes(good)
    (good / "trials/3/result.json").write_text((good / "trials/3/result.json").read_text() + " ")
    with pytest.raises(AssertionError, match="I3"):
        check(good, trials=4, max_retries=RETRIES, before=before)


def test_ctrl_c_leaves_running_trials_for_resume(tmp_path: Path) -> None:
    """Ctrl-C stops the running trials but commits nothing for them: the report shows them
    UNFINISHED, and ``coord resume`` runs them again with the same parameters."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *_search_args(tmp_path, run, trials=6)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TRIAL_SLEEP": "3"})
    deadline = time.monotonic() + 60
    while len(list(run.glob("trials/*/attempt-1/pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    status = json.loads(_coord("status", str(run), "--json", cwd=tmp_path).stdout)
    assert status["state"] == f"interrupted (coord resume {run} continues it)" and status["unfinished"] == 2
    assert (run / "report/trials.csv").read_text().count(",UNFINISHED,") == 2
    interrupted = {d.name for d in run.glob("trials/*") if not (d / "result.json").exists()}
    _resume(tmp_path, run)
    counts = check(run, trials=6, max_retries=RETRIES)
    assert counts.get("COMPLETE") == 6
    for name in interrupted:  # retried with the same parameters after the interrupt
        result = json.loads((run / "trials" / name / "result.json").read_text())
        assert result["attempt"] == 2 and result["attempts"][0]["kind"] == "interrupted"  # no retry spent
