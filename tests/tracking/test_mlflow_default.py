"""`coord search --model xgboost --trials 4` with no other flag, as a user types it: one
parent and 4 child runs in runs/mlflow.db, the best model registered and predicting, the
MLflow UI showing it, and every other command docs/tracking.md shows, run as shown."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from coordinator.store.rundir import RunStore
from coordinator.tracking import settings

from . import docs
from .helpers import coord_runs, split
from .server import QUIET_ENV, free_port, kill_group, wait_ready

NOISE = ("alembic", "INFO", "WARNING", "Traceback", "mlflow.store", "Creating initial", "Successfully registered")


def test_every_command_the_tracking_page_shows_is_run_by_a_test() -> None:
    assert sorted(docs.shown_commands()) == sorted(docs.ALL)
    assert len(docs.python_blocks()) == 1


def _validation_rows(run: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The rows the walk-forward folds validated on (the last 3 seasons), features as the trials saw them."""
    frame = pd.read_csv(run / "data" / "team_features.csv")
    rows = frame[frame["season"].isin(sorted(frame["season"].unique())[-3:])]
    return rows.drop(columns=["home_win", "season"]).astype("float64"), rows["home_win"]


@pytest.mark.slow
def test_the_default_search_is_tracked_to_runs_mlflow_db(tmp_path: Path) -> None:
    proc = docs.run_shown(docs.DEFAULT_SEARCH, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for word in NOISE:  # MLflow's and alembic's start-up logging never reaches the terminal
        assert word not in proc.stdout + proc.stderr, (word, proc.stdout + proc.stderr)
    assert "registered xgboost v1)" in proc.stdout.splitlines()[-1], proc.stdout
    (run,) = (tmp_path / "runs").glob("xgboost-*")
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    parents, children = split(coord_runs(uri, settings.run_key(run)))
    assert len(parents) == 1 and sorted(children) == list(range(4))
    client = MlflowClient(uri)
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["model"] == "xgboost"
    config = RunStore.open(run).config
    sha = json.loads((run / "trials" / "0" / "attempt-1" / "spec.json").read_text())["data"]["sha256"]
    results = {r.number: r.result.to_json() for r in RunStore.open(run).trials() if r.result}
    for number, child in children.items():
        result = results[number]
        tags = child.data.tags
        assert child.info.status == "FINISHED" and tags["coord.status"] == "COMPLETE"
        assert tags["mlflow.parentRunId"] == parent.info.run_id and tags["coord.trial"] == str(number)
        assert tags["coord.platform"] == "local" and tags["coord.seed"] == str(result["seed"])
        assert tags["coord.data_sha256"] == sha == parent.data.tags["coord.data_sha256"]
        assert tags["coord.version"] and tags["host.xgboost"]
        assert child.data.params == {k: str(v) for k, v in result["params"].items()}
        stdout = (run / "trials" / str(number) / "attempt-1" / "stdout").read_text().splitlines()
        steps = [json.loads(s.split(" ", 1)[1]) for s in stdout if s.startswith("[coord-metric]") and '"step"' in s]
        assert len(steps) >= 2, stdout  # XGBoost reports every 25 rounds
        history = client.get_metric_history(child.info.run_id, "auc")
        assert [(m.step, m.value) for m in history][:len(steps)] == [(int(s["step"]), s["auc"]) for s in steps]
        assert len(history) in (len(steps), len(steps) + 1)  # then the final value, unless it is the last report's
        assert history[-1].value == pytest.approx(result["values"][0])
        assert child.data.metrics["auc"] == pytest.approx(result["values"][0])
        # what the trial used (every attempt); no price in the embedded registry: no cost
        hours = sum(a["duration_s"] for a in result["attempts"]) / 3600
        assert child.data.metrics["coord_machine_hours"] == pytest.approx(hours) and hours > 0
        assert "coord_cost" not in child.data.metrics
    best = max(results, key=lambda n: (results[n]["values"][0], -n))
    assert parent.data.tags["coord.best_trial"] == str(best)
    assert parent.data.metrics["best_auc"] == pytest.approx(results[best]["values"][0])
    assert parent.data.metrics["coord_attempts"] == sum(len(r["attempts"]) for r in results.values())
    (version,) = client.search_model_versions("name='xgboost'")
    assert version.run_id == children[best].info.run_id and version.tags["coord.trial"] == str(best)
    assert version.status == "READY" and str(version.version) == "1"
    assert version.tags["coord.run_id"] == settings.run_key(run) and config["name"] == "xgboost"

    # the page's Python: load the registered model and predict on the validation rows
    X, y = _validation_rows(run)
    (block,) = docs.python_blocks()
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {"X": X}
        exec(compile(block, str(docs.PAGE), "exec"), namespace)
    finally:
        os.chdir(here)
    pred = namespace["model"].predict(X)
    assert pred.shape == (len(X),) and ((pred > 0) & (pred < 1)).all()
    assert roc_auc_score(y, pred) > 0.6

    # the UI, as the page starts it, lists the experiment and its 5 runs
    port = free_port()
    with open(tmp_path / "ui.log", "wb") as log:
        ui = subprocess.Popen(["bash", "-c", f"exec {docs.UI}"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              env={**docs.shell_env(tmp_path), **QUIET_ENV, "MLFLOW_PORT": str(port)},
                              start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, ui, tmp_path / "ui.log")
        found = _post(f"{url}/api/2.0/mlflow/experiments/search", {"max_results": 100})
        (exp,) = [e for e in found["experiments"] if e["name"] == "xgboost"]
        listed = _post(f"{url}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})
        assert len(listed["runs"]) == 5
    finally:
        kill_group(ui)

    # sync after a search that tracked live: nothing new
    before = len(coord_runs(uri))
    proc = docs.run_shown(docs.SYNC, tmp_path)
    assert proc.returncode == 0 and "4 trials" in proc.stdout and " 0 new" in proc.stdout, proc.stdout + proc.stderr
    assert len(coord_runs(uri)) == before

    # --register-as, and a GLM's scikit-learn model
    proc = docs.run_shown(docs.REGISTER_AS, tmp_path)
    assert proc.returncode == 0 and "registered home-win v1)" in proc.stdout, proc.stdout + proc.stderr
    import mlflow

    mlflow.set_tracking_uri(uri)
    glm = mlflow.pyfunc.load_model("models:/home-win/1")
    assert "sklearn" in glm.metadata.flavors
    assert glm.predict(X).shape == (len(X), 2)
    after = len(coord_runs(uri))
    assert after == before + 5

    # --no-mlflow: nothing more
    proc = docs.run_shown(docs.OFF, tmp_path)
    assert proc.returncode == 0 and "mlflow" not in proc.stdout, proc.stdout + proc.stderr
    assert len(coord_runs(uri)) == after
    assert len([p for p in (tmp_path / "runs").glob("glm-*") if not (p / "mlflow.json").exists()]) == 1


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
