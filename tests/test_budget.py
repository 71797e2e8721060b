"""Budgets and goals end a search and say so (schedule/budget.py): a machine-hour budget and
a goal stop new trials while the running ones finish; --hard stops those too, leaving them
for coord resume, which a raised budget continues to the end with every trial once; the
projection; and the mistakes refused at the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli import main
from coordinator.schedule.budget import Budget
from coordinator.store.rundir import RunStore
from coordinator.store.usage import Usage

ROOT = Path(__file__).resolve().parents[1]
SPACE = "params:\n  x: {type: float, low: 0.0, high: 1.0}\n"
PRICED = ("currency: EUR\nplatforms:\n  box:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 2}\n"
          "    max_concurrent_jobs: 2\n    cost_per_hour: 7200\n")  # 1 EUR per slot-second


def _search(tmp_path: Path, cmd: str, space: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", "search", "--command", cmd, "--space", space,
                           "--metric", "score", "--direction", "maximize", "--parallel", "2", "--seed", "1",
                           "--run-dir", str(tmp_path / "run"), "--no-mlflow", *extra], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_machine_hour_budget_stops_new_trials_and_says_so(tmp_path: Path, script, space_file) -> None:
    cmd = script("time.sleep(0.6)\nprint(f\"score={p['x']}\")\n")
    res = _search(tmp_path, cmd, space_file(SPACE), "--trials", "30", "--budget-machine-hours", str(3.0 / 3600))
    assert res.returncode == 0, res.stdout + res.stderr
    # used up, or projected: another trial of the mean length would go over
    assert "ended: the machine-hour budget of 0.0008333 h " in res.stdout, res.stdout
    done = [r for r in RunStore.open(tmp_path / "run").trials() if r.result]
    assert 3 <= len(done) < 10 and all(r.result and r.result.status.value == "COMPLETE" for r in done)
    used = sum(a.duration_s for r in done if r.result for a in r.result.attempts)
    assert used < 3.0 + 2 * 1.5  # the budget, plus at most the two attempts running when it ran out


def test_a_goal_ends_the_search_once_a_trial_reaches_it(tmp_path: Path, script, space_file) -> None:
    cmd = script("print(f\"score={p['x']}\")\n")
    res = _search(tmp_path, cmd, space_file(SPACE), "--trials", "200", "--goal", "0.9", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["best_value"] >= 0.9 and summary["ended_by"].startswith("the goal score >= 0.9000 is reached")
    assert summary["trials"] < 200  # random-ish draws of x in [0, 1] reach 0.9 long before


def test_hard_cost_budget_stops_running_trials_and_a_raised_budget_resumes_them(tmp_path: Path, script,
                                                                                 space_file) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(PRICED)
    cmd = script("time.sleep(2.0)\nprint(f\"score={p['x']}\")\n")
    res = _search(tmp_path, cmd, space_file(SPACE), "--trials", "6", "--registry", str(reg),
                  "--budget-cost", "1.5", "--hard")
    assert res.returncode == 0, res.stdout + res.stderr  # a budget's end is an end, not an interrupt
    assert "ended: the cost budget of 1.50 EUR is used up" in res.stdout, res.stdout
    assert "--hard: the running trials were stopped and kept; continue them with a raised budget: coord resume " \
        "run --budget-cost MORE" in res.stdout, res.stdout  # the run as given, relative to here
    run = tmp_path / "run"
    status = json.loads(CliRunner().invoke(main, ["status", str(run), "--json"]).output)
    assert status["state"].startswith("interrupted") and status.get("unfinished", 0) >= 1, status
    assert status["state"].endswith(": the cost budget of 1.50 EUR is used up (" + status["state"].split("(")[-1])
    # the hosts' own measures of the stopped attempts, a little under what the loop counted
    # while they ran (from their launch): near the budget, not far past it
    assert 1.0 < status["cost"] < 1.5 + 2 * 1.0
    again = subprocess.run([sys.executable, "-m", "coordinator", "resume", str(run), "--budget-cost", "1000",
                            "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "COORD_MLFLOW": "0"})
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["complete"] == 6 and summary["ended_by"] is None, summary
    results = [r for r in RunStore.open(run).trials() if r.result]
    assert sorted(r.number for r in results) == list(range(6))
    for r in results:  # the stopped attempts spent no retry
        assert r.result and [a.kind for a in r.result.attempts][-1] == "ok"
        assert all(a.kind in ("ok", "interrupted") for a in r.result.attempts), r.result.attempts


def test_the_projection_keeps_a_trial_from_overrunning() -> None:
    b = Budget(cost=10.0, currency="EUR")
    done = Usage(attempts=4, machine_s=400.0, cost=8.0)  # 2 EUR a trial
    assert b.would_overrun(Usage(4, 400.0, 0.0, 8.0), done) is None  # 8 + 2 = 10: fits
    why = b.would_overrun(Usage(4, 400.0, 0.0, 8.5), done)
    assert why is not None and "would be overrun by another trial (8.50 EUR used" in why
    assert b.spent(Usage(5, 500.0, 0.0, 10.0)) == "the cost budget of 10.00 EUR is used up (10.00 EUR used)"
    assert Budget(goal=0.2).goal_reached(0.1, False, "loss", 3) == \
        "the goal loss <= 0.2000 is reached (trial 3: 0.1000)"


@pytest.mark.parametrize(("extra", "fragment"), [
    (("--budget-cost", "5"), "--budget-cost: no platform of the registry (<embedded default>) has a price"),
    (("--hard",), "--hard: it stops running trials when a budget or goal is reached; give one"),
])
def test_budget_mistakes_are_one_line_before_anything_runs(tmp_path: Path, script, space_file,
                                                           extra: tuple[str, ...], fragment: str) -> None:
    res = _search(tmp_path, script("print('score=1')\n"), space_file(SPACE), "--trials", "2", *extra)
    assert res.returncode == 2 and fragment in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()
