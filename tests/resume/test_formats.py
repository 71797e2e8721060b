"""The run directory's format (``run.json``'s ``format``; ``records.py``): a run written in
format 1 (before the typed records) is read, reported and resumed as it is; a format this
version does not know is refused with one line; a new run is format 2.

A format-1 run is made here from a run this version stopped with Ctrl-C, by taking away
what format 2 added (run.json's ``format`` 2, the records' ``schema`` keys, recipe.json):
format 1 holds the same fields as format 2, fewer of them (docs/architecture.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SPACE = "params:\n  x: {type: float, low: 0.0, high: 1.0}\n"
TRIAL = ("import json, os, time\np = json.load(open(os.environ['COORD_SPEC']))['params']\n"
         "assert os.path.exists('space.yaml')  # started where the run began\n"
         "time.sleep(1.0)\nprint('[coord-metric] {\"loss\": %f}' % p['x'])\n")


def _coord(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ), timeout=240)


def _stopped_run(home: Path, trials: int, results: int) -> Path:
    """A run of ``trials`` one-second trials in ``home``, stopped with Ctrl-C once ``results``
    trials are committed; relative paths throughout, as a user types them."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "space.yaml").write_text(SPACE)
    (home / "trial.py").write_text(TRIAL)
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", "search", "--command", f"{sys.executable} trial.py",
                             "--space", "space.yaml", "--metric", "loss", "--trials", str(trials), "--parallel", "1",
                             "--run-dir", "run", "--quiet"], cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list((home / "run").glob("trials/*/result.json"))) < results and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    return home / "run"


def _as_format_1(run: Path) -> None:
    cfg = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**cfg, "format": 1}))
    for path in run.glob("trials/*/result.json"):
        record = json.loads(path.read_text())
        record.pop("schema")
        path.write_text(json.dumps(record))
    for path in run.glob("trials/*/attempt-*/recipe.json"):
        path.unlink()


def test_a_format_1_run_is_read_reported_and_resumed(tmp_path: Path) -> None:
    run = _stopped_run(tmp_path / "old", trials=5, results=3)
    _as_format_1(run)
    before = {p: p.read_bytes() for p in run.glob("trials/*/result.json")}
    assert len(before) >= 3
    status = _coord("status", str(run), "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["complete"] == len(before) and counts["planned"] == 5
    resumed = _coord("resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    results = {int(p.parent.name): json.loads(p.read_text()) for p in run.glob("trials/*/result.json")}
    assert sorted(results) == [0, 1, 2, 3, 4] and all(r["status"] == "COMPLETE" for r in results.values())
    assert all(p.read_bytes() == data for p, data in before.items())  # committed results untouched
    assert results[4]["schema"] == 2 and "schema" not in results[0]  # new records in the new format
    assert json.loads((run / "run.json").read_text())["format"] == 1  # run.json is never rewritten
    rows = (run / "report" / "trials.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[0].startswith("number,")


def test_an_unknown_format_is_refused_with_one_line(tmp_path: Path) -> None:
    run = _stopped_run(tmp_path / "future", trials=5, results=1)
    planned = len(list(run.glob("trials/*")))
    cfg = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**cfg, "format": 99}))
    for cmd in (("status", str(run)), ("resume", str(run)), ("report", str(run))):
        res = _coord(*cmd, cwd=tmp_path)
        assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
        assert "run format 99 is newer than this coord reads" in res.stderr + res.stdout
    assert len(list(run.glob("trials/*"))) == planned  # nothing was started


def test_a_new_run_is_format_2(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  x: {type: float, low: 0.0, high: 1.0}\n")
    cmd = f"{sys.executable} -c \"import json,os;p=json.load(open(os.environ['COORD_SPEC']))['params'];" \
          "print('[coord-metric] {\\\"loss\\\": %f}' % p['x'])\""
    res = _coord("search", "--command", cmd, "--space", str(space), "--metric", "loss", "--trials", "2",
                 "--run-dir", str(tmp_path / "new"), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((tmp_path / "new" / "run.json").read_text())["format"] == 2
    for p in (tmp_path / "new").glob("trials/*/result.json"):
        assert json.loads(p.read_text())["schema"] == 2


def test_resume_from_another_directory_keeps_relative_paths_meaning_where_the_run_began(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _stopped_run(home, trials=4, results=1)
    done = _coord("resume", str(run), cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    results = [json.loads(p.read_text()) for p in run.glob("trials/*/result.json")]
    assert len(results) == 4 and all(r["status"] == "COMPLETE" for r in results)
    assert not list(elsewhere.iterdir())  # nothing written where resume was called from
