"""``coord rerun --host``: a trial made on this machine trained again on an SSH host (real
sshd on loopback): the data goes over by its hash, the metrics come back bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from tests.ssh.conftest import Cluster


def test_a_local_trial_reruns_exactly_on_an_ssh_host(cluster: Cluster, tmp_path: Path, small_csv: Path) -> None:
    reg = cluster.registry()  # no rule: registry order, the local platform first
    out = run_search(SearchOptions(models=("glm", "xgboost"), data=str(small_csv), target="home_win",
                                   time_col="season", folds=2, trials=1, parallel=1, registry=str(reg),
                                   run_dir=str(tmp_path / "run")))
    res = CliRunner().invoke(main, ["rerun", out["run_dir"], "--all", "--host", "alpha", "--registry", str(reg),
                                    "--json"])
    assert res.exit_code == 0, res.output
    checks = {c["model"]: c for c in json.loads(res.output)}
    assert {c["recorded_on"] for c in checks.values()} == {"local"}
    assert {c["rerun_on"] for c in checks.values()} == {"alpha"}
    assert checks["glm"]["verdict"] == "exact" and checks["glm"]["why_not_exact"] == ""
    xgb = checks["xgboost"]  # 2 threads per slot here, 1 on alpha: exact is not promised, the reason is given
    assert xgb["why_not_exact"] == ("trained with 2 threads, rerun with 1: floating-point sums depend on the "
                                    "thread count")
    assert xgb["verdict"] in ("exact", "differs")
    assert all(m["rerun"] is not None for c in checks.values() for m in c["metrics"])
    # it ran over there, from the uploaded data, in a run folder of its own
    assert list((cluster.hosts["alpha"].work_dir / "data").iterdir())
    assert [p.name for p in (cluster.hosts["alpha"].work_dir / "runs").iterdir()][0].startswith("rerun-run-")
