"""Interrupting a search (Ctrl-C, SIGTERM, kill -9) and resuming it must end where an
uninterrupted search would: no configuration proposed twice, no retry spent on an
interruption, every interrupted built-in trial finished from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.resume.invariants import SPACE, TRIAL, check

XGB_SPACE = ("params:\n  max_depth: {type: int, low: 2, high: 4}\n  n_estimators: {type: int, low: 100, high: 300}\n"
             "  learning_rate: {type: float, low: 0.05, high: 0.3, log: true}\n")


def _coord(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=240)


def _params(run: Path) -> list[str]:
    return [json.dumps(json.loads(p.read_text())["params"], sort_keys=True)
            for p in sorted(run.glob("trials/*/trial.json"))]


@pytest.mark.timeout(240)
def test_resumed_tpe_search_never_proposes_a_configuration_twice(tmp_path: Path) -> None:
    """16 TPE trials, killed twice and resumed each time: 16 distinct configurations (a
    sampler restarted with its first seed replayed its first random draws)."""
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text(SPACE.replace("{type: int, low: 0, high: 3}", "{type: float, low: 0, high: 3}"))
    run = tmp_path / "run"
    args = ["--command", f"{sys.executable} trial.py", "--space", "space.yaml", "--metric", "loss", "--trials", "16",
            "--parallel", "1", "--sampler", "tpe", "--seed", "4", "--run-dir", str(run), "--quiet"]
    env = {"TRIAL_SLEEP": "0"}
    first = _coord("search", *args, cwd=tmp_path, env={**env, "COORD_CRASH_AT": "after_tell:5"})
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    second = _coord("resume", str(run), "--quiet", cwd=tmp_path, env={**env, "COORD_CRASH_AT": "after_tell:5"})
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    last = _coord("resume", str(run), "--quiet", cwd=tmp_path, env=env)
    assert last.returncode == 0, last.stderr[-2000:]
    check(run, trials=16, max_retries=3)
    params = _params(run)
    assert len(params) == 16 and len(set(params)) == 16


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_builtin_trials_finish_after_resume_without_spending_a_retry(tmp_path: Path, small_csv: Path,
                                                                                  sig: int) -> None:
    """XGBoost with ASHA on 2 slots, stopped (Ctrl-C or SIGTERM) while two trials train,
    then resumed: the interrupted trials go on from their SIGTERM checkpoint in their slot's
    warm worker (which the stop had killed) and end COMPLETE or PRUNED, never FAILED."""
    (tmp_path / "space.yaml").write_text(XGB_SPACE)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "coordinator", "search", "--model", "xgboost", "--space", "space.yaml",
           "--data", str(small_csv), "--target", "home_win", "--time-col", "season", "--folds", "2",
           "--trials", "8", "--parallel", "2", "--pruner", "asha", "--seed", "1", "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # a trial done, and one past its first report still training
        reports = [p for p in run.glob("trials/*/attempt-1/stdout") if "[coord-metric]" in p.read_text()]
        training = [p for p in reports if not (p.parent.parent / "result.json").exists()]
        if len(reports) >= 3 and training and len(list(run.glob("trials/*/result.json"))) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in out and "coord resume run" in out  # relative to its cwd
    unfinished = [d for d in run.glob("trials/*") if not (d / "result.json").exists()]
    assert unfinished, "the stop should have left running trials uncommitted"
    done = _coord("resume", str(run), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = {int(p.parent.name): json.loads(p.read_text()) for p in run.glob("trials/*/result.json")}
    assert len(results) == 8
    assert {r["status"] for r in results.values()} <= {"COMPLETE", "PRUNED"}, \
        {n: (r["status"], r["kind"], r["error"][-300:]) for n, r in results.items()}
    for d in unfinished:
        r = results[int(d.name)]
        kinds = [h["kind"] for h in r["attempts"]]
        assert kinds[0] == "interrupted" and "killed" not in kinds and "crashed" not in kinds, kinds
        assert len(kinds) == 2, kinds  # one more attempt, from the checkpoint
