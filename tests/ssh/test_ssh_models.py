"""Several built-in models on an SSH host with fewer slots than models: the host's warm
workers switch model between trials (issue 8, item 1: this hung after the first trial)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore
from tests.ssh.conftest import Cluster


@pytest.mark.timeout(150)
@pytest.mark.parametrize("parallel", [1])  # 2 slots: tests/test_multimodel.py
def test_three_models_on_one_host_with_fewer_slots(cluster: Cluster, tmp_path: Path, small_csv: Path,
                                                   parallel: int) -> None:
    reg = cluster.registry("task_routing_rules:\n  - model_type: '*'\n    route_to: [alpha]\n"
                           "allow_local_fallback: false\n")
    # the shipped search spaces: small data keeps even 500 boosting rounds quick
    out = run_search(SearchOptions(models=("glm", "xgboost", "random_forest"), data=str(small_csv),
                                   target="home_win", time_col="season", folds=2, trials=2, parallel=parallel,
                                   registry=str(reg), run_dir=str(tmp_path / "run")))
    results = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert out["complete"] == 6, [r and (r["status"], r["error"]) for r in results]
    assert all(r and r["platform"] == "alpha" and r["attempt"] == 1 for r in results)
