"""coord compare on SSH hosts: the jobs are routed by the registry's rules like trials, and
each fold's checkpoint comes home as it is written, so the comparison is built from the run
directory alone (the predictions file itself stays on the host)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from coordinator.app import run_compare
from coordinator.config.compare import CompareRequest
from tests.compare_data import odds_csv
from tests.ssh.conftest import Cluster


@pytest.mark.timeout(200)
def test_a_comparison_on_ssh_hosts_is_built_from_the_checkpoints_it_carried_home(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    data = odds_csv(tmp_path / "odds.csv")
    reg = cluster.registry("task_routing_rules:\n  - model_type: '*'\n    route_to: [alpha, beta]\n"
                           "allow_local_fallback: false\n")
    out = run_compare(CompareRequest(models=("glm",), calibrations=("none", "platt"), seeds=2, data=str(data),
                                     target="home_win", time_col="season", folds=2, odds_col="odds_home",
                                     registry=str(reg), run_dir=str(tmp_path / "run"), resamples=100))
    run = Path(out["run_dir"])
    assert out["complete"] == 2, out
    for trial in sorted(run.glob("trials/*")):
        result = json.loads((trial / "result.json").read_text())
        assert result["platform"] in ("alpha", "beta") and result["status"] == "COMPLETE"
        plan = json.loads((trial / "attempt-1" / "plan.json").read_text())  # what the host ran
        assert plan["spec"]["compare"] == {"calibration": ["none", "platt"], "name": "glm", "odds_col": "odds_home"}
        assert sorted(p.name for p in (trial / "checkpoint").iterdir()) == ["step-00000002.ckpt"]
    preds = pd.read_csv(run / "compare" / "glm" / "predictions.csv")
    assert len(preds) == 2 * 2 * 240 and sorted(preds["seed"].unique()) == [0, 1]
    assert (run / "compare" / "report.html").is_file()
