"""Against a real ``mlflow server`` on 127.0.0.1 (started here, its own database and
artefact folder): live tracking with the model uploaded through the server, and the server
killed mid-search: the search finishes, then ``coord sync`` completes the record with no
duplicates, and a second sync changes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore
from coordinator.tracking import follower, settings
from coordinator.tracking.settings import TrackingOptions

from . import docs
from .helpers import coord_runs, split
from .server import MlflowServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-server")]  # module fixtures built once; each server start takes seconds (tens on two busy cores)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield srv
    srv.kill()


def _alive(server: MlflowServer) -> MlflowServer:
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    return server


def test_live_tracking_to_a_server_and_its_model(server: MlflowServer, tmp_path: Path) -> None:
    url = _alive(server).url
    proc = docs.run_shown(docs.SERVER_SEARCH, tmp_path, port=str(server.port))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{url} (experiment glm; registered glm v" in proc.stdout, proc.stdout
    (run,) = (tmp_path / "runs").glob("glm-*")
    key = settings.run_key(run)
    parents, children = split(coord_runs(url, key))
    assert len(parents) == 1 and sorted(children) == [0, 1, 2, 3] and parents[0].info.status == "FINISHED"
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing went to the default store
    client = MlflowClient(url)
    (version,) = [v for v in client.search_model_versions("name='glm'") if v.tags.get("coord.run_id") == key]
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(url)
    model = mlflow.pyfunc.load_model(f"models:/glm/{version.version}")  # the artefacts, through the server
    X = pd.read_csv(run / "data" / "team_features.csv").drop(columns=["home_win", "season"]).astype("float64")
    assert model.predict(X.head(50)).shape == (50, 2)
    assert [a.path for a in client.list_artifacts(children[0].info.run_id)] == ["attempt-1.log", "spec.json"]

    proc = docs.run_shown(docs.SERVER_SYNC, tmp_path, port=str(server.port))
    assert proc.returncode == 0 and "4 trials" in proc.stdout and " 0 new" in proc.stdout, proc.stdout + proc.stderr
    assert len(coord_runs(url, key)) == 5


GATED = """
gate = os.path.join(spec['attempt_dir'], '..', '..', '..', 'gate')
deadline = time.time() + 300
while spec['number'] != 0 and not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.05)
print(f"[coord-metric] {json.dumps({'loss': p['x'] ** 2})}")
"""


def _wait_for(what: str, condition, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.mark.timeout(900)
def test_the_server_killed_mid_search_then_sync_completes_it(server: MlflowServer, tmp_path: Path, script,
                                                            space_file, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic, whatever the load: every trial but trial 0 waits for a gate file; the
    server is killed once trial 0's child run is complete in it, then the gate opens, so the
    other 13 trials all end while the server is down (the tracking process, however slow to
    start, cannot have logged them), and the search must not notice."""
    monkeypatch.setattr(follower, "FINAL_RETRY_S", 2.0)
    monkeypatch.chdir(tmp_path)
    url = _alive(server).url
    run_dir = tmp_path / "run"
    killed: dict[str, object] = {}

    def trial_0_logged() -> bool:
        if not (run_dir / "run.json").exists():
            return False
        try:
            first = split(coord_runs(url, settings.run_key(run_dir)))[1].get(0)
        except Exception:  # the run's experiment not made yet
            return False
        return first is not None and first.data.tags.get("coord.synced") == "1"

    def kill_once_trial_0_is_logged() -> None:
        try:
            _wait_for("trial 0's complete child run in the server", trial_0_logged)
            server.kill()
            killed["committed"] = sorted(int(r.parent.name) for r in run_dir.glob("trials/*/result.json"))
        finally:
            (run_dir / "gate").write_text("")  # never leave the trials waiting

    watcher = threading.Thread(target=kill_once_trial_0_is_logged, daemon=True)
    watcher.start()
    out = run_search(SearchOptions(command=script(GATED), space=space_file("params:\n  x: {type: float, low: -1, high: 1}\n"),
                                   metrics=("loss",), trials=14, parallel=2, sampler="random", seed=1,
                                   run_dir=str(run_dir)), tracking=TrackingOptions(uri=url))
    watcher.join(30)
    assert killed.get("committed") == [0], killed  # killed with only trial 0 ended: mid-search
    assert out["complete"] == 14 and out["failed"] == 0  # the search did not notice
    assert out["tracking"]["complete"] is False

    server.start()  # the same database, the same port
    key = settings.run_key(run_dir)
    parents, partial = split(coord_runs(url, key))
    assert len(parents) == 1 and sorted(partial) == [0] and parents[0].info.status == "RUNNING"
    res = CliRunner().invoke(main, ["sync", str(run_dir), "--mlflow-uri", url])
    assert res.exit_code == 0 and "14 trials" in res.output and " 13 new" in res.output, res.output
    parents, children = split(coord_runs(url, key))  # split() fails on a trial logged twice
    assert len(parents) == 1 and sorted(children) == list(range(14)) and parents[0].info.status == "FINISHED"
    assert children[0].info.run_id == partial[0].info.run_id  # the same run, not made again
    assert all(c.info.status == "FINISHED" and c.data.tags["coord.synced"] == "1" for c in children.values())
    client = MlflowClient(url)
    results = {r.number: r.result for r in RunStore.open(run_dir).trials() if r.result}
    for number, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        history = client.get_metric_history(child.info.run_id, "loss")
        assert [m.value for m in history] == [pytest.approx(results[number].values[0])]  # one point, not two
    again = CliRunner().invoke(main, ["sync", str(run_dir), "--mlflow-uri", url])
    assert again.exit_code == 0 and " 0 new" in again.output, again.output
    assert len(coord_runs(url, key)) == 15
