"""A trial of two processes (``procs: 2``, torch DDP with gloo) on a real SSH host on
loopback: it runs there under torchrun, rank 0 alone reports, and a trial stopped at its
time limit takes every rank with it (the fixture fails the test if any process of the
host's work directory outlives it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.errors import SearchFailed
from coordinator.store.rundir import RunStore
from tests.ssh.conftest import Cluster

RULE = "task_routing_rules:\n  - model_type: NeuralNetwork\n    route_to: [alpha]\nallow_local_fallback: false\n"


def space(tmp_path: Path, epochs: int) -> str:
    path = tmp_path / f"ddp-{epochs}.yaml"
    path.write_text("params:\n  lr: {type: float, low: 0.005, high: 0.02}\n"
                    f"fixed: {{epochs: {epochs}, hidden_size: 16, batch_size: 64}}\nprocs: 2\n")
    return str(path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_process_trial_on_an_ssh_host(cluster: Cluster, tmp_path: Path, small_csv: Path) -> None:
    reg = str(cluster.registry(RULE))
    data = {"data": str(small_csv), "target": "home_win", "folds": 2, "registry": reg}
    out = run_search(SearchOptions(models=("mlp",), space=space(tmp_path, 3), trials=1,
                                   run_dir=str(tmp_path / "run"), **data))
    (trial,) = RunStore.open(Path(out["run_dir"])).trials()
    assert trial.result is not None and trial.result.status.value == "COMPLETE", trial.result
    assert trial.result.platform == "alpha" and 0.5 < trial.result.metrics["auc"] <= 1.0
    adir = Path(out["run_dir"]) / "trials" / "0" / "attempt-1"
    alloc = json.loads((adir / "allocation.json").read_text())
    assert alloc["slots"] == [0, 1]
    plan = json.loads((adir / "plan.json").read_text())  # what ran on the host
    assert plan["launch"]["argv"][1].endswith("/ddp_launch.py") and plan["warm"] is None
    assert plan["spec"]["procs"] == 2
    steps = [json.loads(x.split(" ", 1)[1]).get("step") for x in (adir / "stdout").read_text().splitlines()
             if x.startswith("[coord-metric]")]
    assert steps == [1, 2, 3, None]  # from rank 0 alone

    with pytest.raises(SearchFailed, match="timed out"):  # the host stops it at its limit: all ranks
        run_search(SearchOptions(models=("mlp",), space=space(tmp_path, 100000), trials=1, trial_timeout=12.0,
                                 max_retries=0, run_dir=str(tmp_path / "timeout"), **data))
