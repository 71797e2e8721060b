"""A trial that trained to its end while the coordinator was down is complete: its step
reports, replayed into the pruner on resume, must not turn it into PRUNED (issue 8, item 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Trials 0-3 score 1.0 at every step, later ones 0.1: ASHA would stop trial 4 at its first
# rung, had it seen its reports in time.
TRIAL = """import json, os, time
spec = json.load(open(os.environ["COORD_SPEC"]))
score = 1.0 if spec["number"] < 4 else 0.1
for step in range(1, 6):
    print('[coord-metric] {"step": %d, "score": %r}' % (step, score), flush=True)
    time.sleep(0.05)
print('[coord-metric] {"score": %r}' % score)
"""


def test_a_trial_that_finished_while_the_coordinator_was_down_stays_complete(tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    run = tmp_path / "run"
    args = ["--command", f"{sys.executable} trial.py", "--space", "space.yaml", "--metric", "score", "--trials", "6",
            "--parallel", "1", "--sampler", "random", "--pruner", "asha", "--min-resource", "1", "--run-dir", str(run),
            "--quiet"]
    crashed = subprocess.run([sys.executable, "-m", "coordinator", "search", *args], cwd=tmp_path, capture_output=True,
                             text=True, env={**os.environ, "COORD_CRASH_AT": "after_launch:5"}, timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    attempt = run / "trials" / "4" / "attempt-1"
    deadline = time.monotonic() + 30
    while not (attempt / "exit.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # trial 4 runs on without the coordinator, to its end
    assert json.loads((attempt / "exit.json").read_text())["exit"] == 0
    done = subprocess.run([sys.executable, "-m", "coordinator", "resume", str(run), "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((run / "trials" / "4" / "result.json").read_text())
    assert result["status"] == "COMPLETE" and result["values"] == [0.1] and result["attempt"] == 1
    late = [json.loads(p.read_text()) for p in sorted(run.glob("trials/5/result.json"))]
    assert all(r["status"] == "PRUNED" for r in late)  # the pruner still stops live trials
