"""A full disk under the run directory, and the torn or stale files a crash leaves in it.

Real parts throughout: the run directory sits on a real, small tmpfs that a ballast file
fills mid-search; ``coord`` runs as a subprocess; the trials are the invariant checker's
(a pure function of their parameters, logging every start and end to a trace), so
``check`` can prove after ``coord resume`` that every trial was recorded exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resume.invariants import SPACE, TRIAL, check, committed_bytes
from tests.tmpfs import tmpfs

RETRIES = 2


def _coord(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _search_args(tmp_path: Path, run: Path, trials: int, extra: tuple[str, ...] = ()) -> list[str]:
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text(SPACE)
    return ["search", "--command", f"{sys.executable} {tmp_path / 'trial.py'}", "--space", "space.yaml",
            "--metric", "loss", "--trials", str(trials), "--sampler", "random", "--seed", "5",
            "--max-retries", str(RETRIES), "--run-dir", str(run), "--quiet", *extra]


def _events(run: Path) -> list[dict[str, object]]:
    out = []
    for line in (run / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line a full disk cut short
    return out


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system holding it refuses one more byte."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass


def _fill_when(ballast: Path, ready: Path, pattern: str, count: int) -> threading.Thread:
    def wait_then_fill() -> None:
        deadline = time.monotonic() + 120
        while len(list(ready.glob(pattern))) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        _fill(ballast)
    thread = threading.Thread(target=wait_then_fill, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "2m") as mount:
        yield mount


def _assert_one_line(done: subprocess.CompletedProcess[str], run: Path) -> str:
    assert done.returncode == 75, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("coord: error: no space left on device writing " + str(run) + "/"), lines[0]
    assert lines[0].endswith(f"; free space, then: coord resume {run}"), lines[0]
    return lines[0]


def test_full_disk_stops_with_one_line_and_resume_finishes_every_trial_once(tmp_path: Path,
                                                                            small_fs: Path) -> None:
    run, ballast = small_fs / "run", small_fs / "ballast"
    _fill_when(ballast, run, "trials/*/result.json", 2)
    full = _coord(*_search_args(tmp_path, run, 8, ("--parallel", "2")), cwd=tmp_path)
    _assert_one_line(full, run)
    assert not (run / "report").exists()  # stopped as a crash stops: no report of a half run
    assert json.loads(_coord("status", str(run), "--json", cwd=tmp_path).stdout)["state"] == \
        f"unfinished (coord resume {run} continues it)"  # as after a crash: no search end recorded
    # still full: resume says so the same way, and harms nothing
    _assert_one_line(_coord("resume", str(run), cwd=tmp_path), run)
    before = committed_bytes(run)
    ballast.unlink()
    done = _coord("resume", str(run), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = check(run, trials=8, max_retries=RETRIES, before=before)
    assert counts.get("COMPLETE") == 8
    assert json.loads(done.stdout.strip().splitlines()[-1])["complete"] == 8
    assert len((run / "report" / "trials.csv").read_text().strip().splitlines()) == 1 + 8
    # the report on a full disk: the same one line; resume of the finished run writes it
    shutil.rmtree(run / "report")
    _fill(ballast)
    assert f"writing {run}/report/" in _assert_one_line(_coord("report", str(run), cwd=tmp_path), run)
    ballast.unlink()
    assert _coord("resume", str(run), cwd=tmp_path).returncode == 0
    assert len((run / "report" / "trials.csv").read_text().strip().splitlines()) == 1 + 8


def test_journal_append_on_a_full_disk_leaves_no_torn_record(tmp_path: Path, small_fs: Path) -> None:
    """Optuna appends each record with one write: the journal is cut back to where the
    append began and the error names it, so the next append never glues onto a torn line."""
    import optuna

    from coordinator.errors import DiskFull
    from coordinator.search import open_storage
    from coordinator.store.rundir import RunStore

    store = RunStore.create(small_fs, "x", {"name": "x"}, small_fs / "run")
    store.lock()
    storage = open_storage(store.root, None, store)
    study = optuna.create_study(storage=storage, study_name="s")
    big = optuna.distributions.CategoricalDistribution([f"choice-{i:05d}" + "x" * 40 for i in range(2000)])
    study.tell(study.ask({"a": big}), 1.0)
    journal = store.root / "study.journal"
    kept = journal.read_bytes()
    _fill(small_fs / "ballast")
    with pytest.raises(DiskFull) as raised:
        study.ask({"a": big})  # a record of about 100 KB: more than the last page has left
    assert raised.value.path == journal and raised.value.run == store.root
    assert str(raised.value) == (f"no space left on device writing {journal}; free space, then: "
                                 f"coord resume {store.root}")
    after = journal.read_bytes()  # the trial's creation fitted; its 100 KB parameter did not
    assert after.startswith(kept) and after.endswith(b"\n")
    assert all(json.loads(line) for line in after.splitlines())
    (small_fs / "ballast").unlink()
    study.tell(study.ask({"a": big}), 2.0)
    store.close()
    reread = optuna.load_study(study_name="s", storage=open_storage(store.root, None))
    assert [t.value for t in reread.trials if t.value is not None] == [1.0, 2.0]


def _stopped_run(tmp_path: Path, trials: int = 4) -> tuple[Path, dict[str, bytes]]:
    """A run whose coordinator was killed (-9) after its second commit."""
    run = tmp_path / "run"
    crashed = _coord(*_search_args(tmp_path, run, trials), cwd=tmp_path,
                     env={"COORD_CRASH_AT": "after_tell:2", "TRIAL_SLEEP": "0.1"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    return run, committed_bytes(run)


def test_torn_journal_tail_is_cut_back_on_resume(tmp_path: Path) -> None:
    run, before = _stopped_run(tmp_path)
    torn = b'{"op_code":5,"worker_id":"x","trial_id":3,"state":1,"val'  # a write cut short
    with open(run / "study.journal", "ab") as fh:
        fh.write(torn)
    done = _coord("resume", str(run), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert check(run, trials=4, max_retries=RETRIES, before=before).get("COMPLETE") == 4
    assert (run / "study.journal").read_bytes().count(torn) == 0
    repaired = [e for e in _events(run) if e["event"] == "repaired"]
    assert repaired == [{**repaired[0], "file": "study.journal", "cut_bytes": len(torn)}]
    assert "cut back to its last complete record" in done.stderr


def test_stale_journal_lock_is_removed_and_resume_starts_promptly(tmp_path: Path) -> None:
    """A kill -9 inside an Optuna append leaves its lock symlink; Optuna would wait 30 s for it."""
    run, before = _stopped_run(tmp_path)
    os.symlink(run / "study.journal", run / "study.journal.lock")
    began = time.monotonic()
    done = _coord("resume", str(run), "--json", cwd=tmp_path)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-3000:]
    assert took < 15, f"resume took {took:.1f}s: it waited for the stale lock"
    assert "removed a stale journal lock" in done.stderr
    assert not os.path.lexists(run / "study.journal.lock")
    assert check(run, trials=4, max_retries=RETRIES, before=before).get("COMPLETE") == 4
    assert any(e["event"] == "repaired" and e["file"] == "study.journal.lock" for e in _events(run))
