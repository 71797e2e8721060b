"""Stopping and ending cleanly (issue 8, item 16): a trial's leftover children end with it;
a Ctrl-C that lands during a commit is counted; SIGTERM outside the loop is a Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.resume.invariants import SPACE, TRIAL
from tests.resume.invariants import _alive as alive

LEAVES_A_CHILD = """import json, os, subprocess, sys
spec = json.load(open(os.environ["COORD_SPEC"]))
child = subprocess.Popen(["sleep", "300"])
open(os.path.join(spec["attempt_dir"], "child.pid"), "w").write(str(child.pid))
print("loss: 1.0")
"""


def test_children_a_trial_leaves_behind_end_with_it(tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(LEAVES_A_CHILD)
    (tmp_path / "space.yaml").write_text(SPACE)
    done = subprocess.run([sys.executable, "-m", "coordinator", "search", "--command", f"{sys.executable} trial.py",
                           "--space", "space.yaml", "--metric", "loss", "--trials", "2", "--run-dir", "run", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    pids = [int(p.read_text()) for p in tmp_path.glob("run/trials/*/attempt-1/child.pid")]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "a trial's child outlived it"


def test_a_ctrl_c_during_a_commit_counts_the_committed_trial(tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text(SPACE)
    done = subprocess.run([sys.executable, "-m", "coordinator", "search", "--command", f"{sys.executable} trial.py",
                           "--space", "space.yaml", "--metric", "loss", "--trials", "6", "--parallel", "1",
                           "--run-dir", "run", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COORD_CRASH_AT": "after_commit:2:INT", "TRIAL_SLEEP": "0"})
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    committed = [json.loads(p.read_text()) for p in tmp_path.glob("run/trials/*/result.json")]
    assert summary["interrupted"] is True
    assert summary["complete"] == sum(r["status"] == "COMPLETE" for r in committed) >= 2
