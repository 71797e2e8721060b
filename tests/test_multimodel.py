"""Searches over several built-in models with fewer slots than models: each slot's warm
worker must switch model between trials (issue 8, item 1: this hung after the first trial)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore

SPACES = {
    "glm": "params:\n  C: {type: float, low: 0.01, high: 10, log: true}\n",
    "xgboost": "params:\n  max_depth: {type: int, low: 2, high: 3}\n  n_estimators: {type: int, low: 10, high: 20}\n",
    "random_forest": "params:\n  n_estimators: {type: int, low: 10, high: 20}\n  max_depth: {type: int, low: 2, high: 4}\n",
}


def _opts(runs: Path, small_csv: Path, models: tuple[str, ...], parallel: int, trials: int,
          name: str = "") -> SearchOptions:
    return SearchOptions(models=models, data=str(small_csv), target="home_win", time_col="season", folds=2,
                         trials=trials, parallel=parallel, seed=2, run_dir=str(runs / (name or "-".join(models))))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("parallel", [1, 2])
def test_several_models_on_fewer_slots_all_complete(runs: Path, small_csv: Path, parallel: int) -> None:
    """Three models, 1 or 2 slots: the workers switch model many times, none hangs."""
    models = ("glm", "xgboost", "random_forest")
    out = run_search(_opts(runs, small_csv, models, parallel, trials=2))
    assert out["complete"] == 6 and out["failed"] == 0
    results = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert sorted(r["model"] for r in results if r) == sorted(models * 2)
    assert all(r and r["attempt"] == 1 for r in results)  # nothing was retried


@pytest.mark.timeout(120)
def test_compare_models_line_of_the_readme_finishes(runs: Path) -> None:
    """The README's compare line, with the trial count cut down, through the CLI and the
    built-in data: glm, xgboost and random_forest on every slot of this machine."""
    res = CliRunner().invoke(main, ["search", "--model", "xgboost", "--model", "glm", "--model", "random_forest",
                                    "--trials", "1", "--parallel", "1", "--runs", str(runs)])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if x.startswith("trial ")]  # the plain progress lines
    assert sorted(x.split()[2] for x in lines) == ["(glm)", "(random_forest)", "(xgboost)"], lines
    run_dir = next(runs.iterdir())
    results = [r.result and r.result.to_json() for r in RunStore.open(run_dir).trials()]
    assert len(results) == 3 and all(r and r["status"] == "COMPLETE" for r in results)


@pytest.mark.timeout(120)
def test_stale_worker_of_another_model_does_not_swallow_the_job(runs: Path, small_csv: Path) -> None:
    """A slot whose worker was killed (an unreaped zombie here: the container's init does not
    reap) must get a fresh worker, never a write into a pipe nobody reads."""
    first = run_search(_opts(runs, small_csv, ("glm",), 1, trials=1, name="a"))
    assert first["complete"] == 1
    again = run_search(_opts(runs, small_csv, ("glm", "xgboost"), 1, trials=1, name="b"))
    assert again["complete"] == 2


def test_no_warm_worker_outlives_the_run(runs: Path, small_csv: Path) -> None:
    out = run_search(_opts(runs, small_csv, ("glm", "xgboost"), 1, trials=1))
    assert out["complete"] == 2
    ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
    alive = [ln for ln in ps.splitlines() if out["run_dir"] in ln and not ln.startswith("Z")]
    assert not alive, alive
