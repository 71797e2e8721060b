"""Every sampler drives a real search; multi-objective gives a Pareto front; --timeout
stops asking for new trials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore

BODY = """
x, y = p['x'], p['y']
print('[coord-metric] ' + json.dumps({'loss': (x - 1) ** 2 + (y + 2) ** 2, 'cost': abs(x) + abs(y)}))
"""
XY = "params:\n  x: {type: float, low: -5, high: 5, step: 0.5}\n  y: {type: float, low: -5, high: 5, step: 0.5}\n"


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes", "gp", "qmc"])
def test_each_sampler_runs_a_search(tmp_path: Path, script, space_file, sampler: str) -> None:
    out = run_search(SearchOptions(command=script(BODY), space=space_file(XY), metrics=("loss",), trials=12,
                                   parallel=2, sampler=sampler, seed=5, run_dir=str(tmp_path / sampler)))
    results = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert out["complete"] == 12 and len(results) == 12
    assert len({(r["params"]["x"], r["params"]["y"]) for r in results}) >= 8  # it explores
    assert json.loads(Path(out["files"]["best"]).read_text())["custom"]["value"] == min(r["values"][0] for r in results)


def test_nsga2_multi_objective_reports_the_pareto_front(tmp_path: Path, script, space_file) -> None:
    out = run_search(SearchOptions(command=script(BODY), space=space_file(XY), metrics=("loss", "cost"),
                                   trials=16, parallel=2, sampler="nsga2", run_dir=str(tmp_path / "mo")))
    results = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    front = json.loads(Path(out["files"]["best"]).read_text())["custom"]["pareto_front"]
    points = {(r["metrics"]["loss"], r["metrics"]["cost"]) for r in results}
    for f in front:  # nobody dominates a front member
        lf, cf = f["metrics"]["loss"], f["metrics"]["cost"]
        assert not any(lo <= lf and co <= cf and (lo, co) != (lf, cf) for lo, co in points)
    assert front and all(r["values"] and len(r["values"]) == 2 for r in results)


def test_timeout_stops_new_trials_and_loses_none(tmp_path: Path, script, space_file) -> None:
    t0 = time.monotonic()
    out = run_search(SearchOptions(command=script("time.sleep(0.5)\n" + BODY), space=space_file(XY),
                                   metrics=("loss",), trials=1000, parallel=2, timeout=2.0,
                                   run_dir=str(tmp_path / "t")))
    results = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert 2 <= len(results) < 20 and all(r["status"] == "COMPLETE" for r in results)  # started ones finish
    assert time.monotonic() - t0 < 15
