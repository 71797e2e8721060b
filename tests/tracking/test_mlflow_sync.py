"""MLflow from the run directory, against a real SQLite store: what a trial's child run
holds, replay without duplicates, failures that never reach the search, no secrets."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from coordinator.errors import TrackingError
from coordinator.store.rundir import RunStore
from coordinator.tracking import follower, settings
from coordinator.tracking.follower import sync_run
from coordinator.tracking.runview import redacted_config
from coordinator.tracking.settings import TrackingOptions

from .helpers import coord_runs, split
from .server import free_port

STEPS = """
    x = p['x']
    if x > 4:
        print('bad x', file=sys.stderr)
        sys.exit(78)
    for step in (1, 2, 3):
        print(f"[coord-metric] {json.dumps({'step': step, 'loss': (x - 1) ** 2 + 1 / step})}")
    print(f"[coord-metric] {json.dumps({'loss': (x - 1) ** 2, 'width': abs(x)})}")
"""
SPACE = "params:\n  x: {type: float, low: -5, high: 5}\n  kind: {type: categorical, choices: [a, b]}\n"


def _search(runs: Path, script, space_file, tracking: TrackingOptions | None, trials: int = 6, **kw) -> dict:
    return run_search(SearchOptions(command=script(STEPS), space=space_file(SPACE), metrics=("loss",),
                                    trials=trials, parallel=2, sampler="random", seed=5, runs_root=str(runs), **kw),
                      tracking=tracking)


def _key(run_dir: str) -> str:
    return settings.run_key(Path(run_dir))


def test_a_live_search_leaves_a_parent_and_a_child_per_trial(runs: Path, script, space_file) -> None:
    uri = f"sqlite:///{runs.parent / 'track.db'}"
    out = _search(runs, script, space_file, TrackingOptions(uri=uri), trials=8)
    assert out["tracking"]["complete"] and out["tracking"]["models"] == []  # a script's model: not coord's to rebuild
    parents, children = split(coord_runs(uri, _key(out["run_dir"])))
    assert len(parents) == 1 and sorted(children) == list(range(8))
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["sampler"] == "random"
    assert parent.data.params["metrics"] == "loss" and parent.data.tags["coord.version"]
    client = MlflowClient(uri)
    store = RunStore.open(Path(out["run_dir"]))
    statuses = set()
    for rec in store.trials():
        child, result = children[rec.number], rec.result.to_json()
        statuses.add(result["status"])
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["coord.status"] == result["status"]
        assert child.info.status == {"COMPLETE": "FINISHED", "FAILED": "FAILED"}[result["status"]]
        assert child.data.params == {"x": str(result["params"]["x"]), "kind": result["params"]["kind"]}
        assert child.data.tags["coord.platform"] == result["platform"] == "local"
        assert child.data.tags["coord.seed"] == str(result["seed"]) and child.data.tags["coord.attempts"] == "1"
        logs = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert logs == ["attempt-1.log", "spec.json"]
        text = (Path(client.download_artifacts(child.info.run_id, "attempt-1.log", str(runs.parent)))).read_text()
        if result["status"] == "FAILED":
            assert "bad x" in text and "coord.error" in child.data.tags
            continue
        x = result["params"]["x"]
        history = client.get_metric_history(child.info.run_id, "loss")
        # the three step reports, then the final value (after the last report, at its step)
        assert [(m.step, m.value) for m in history] == [(1, pytest.approx((x - 1) ** 2 + 1)),
                                                        (2, pytest.approx((x - 1) ** 2 + 0.5)),
                                                        (3, pytest.approx((x - 1) ** 2 + 1 / 3)),
                                                        (3, pytest.approx((x - 1) ** 2))]
        assert child.data.metrics["loss"] == pytest.approx(result["values"][0])  # the latest: the result
        assert child.data.metrics["width"] == pytest.approx(abs(x))
        assert "[coord-metric]" in text
    assert statuses == {"COMPLETE", "FAILED"}, "the seed gives both kinds of trial"
    assert json.loads((Path(out["run_dir"]) / "mlflow.json").read_text())["uri"] == uri


def test_sync_twice_creates_nothing_twice_and_fills_in_what_is_missing(runs: Path, script, space_file) -> None:
    out = _search(runs, script, space_file, None)  # tracking off: nothing in MLflow yet
    run = Path(out["run_dir"])
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    assert not (runs / "mlflow.db").exists()
    first = sync_run(run)
    assert first["uri"] == uri and first["created"] == 6 and first["trials"] == 6
    second = sync_run(run)
    assert second["created"] == 0 and second["trials"] == 6
    parents, children = split(coord_runs(uri, _key(str(run))))
    assert len(parents) == 1 and len(children) == 6
    client = MlflowClient(uri)
    points = {n: len(client.get_metric_history(r.info.run_id, "loss")) for n, r in children.items()}
    # a pass that was cut short: one trial's run lacks its completion tag, another was deleted
    client.delete_tag(children[1].info.run_id, "coord.synced")
    client.delete_run(children[2].info.run_id)
    third = sync_run(run)
    assert third["created"] == 1  # the deleted one again; the incomplete one filled in, same run
    parents, after = split(coord_runs(uri, _key(str(run))))
    assert len(parents) == 1 and sorted(after) == list(range(6))
    assert after[1].info.run_id == children[1].info.run_id and after[1].data.tags["coord.synced"] == "1"
    assert {n: len(client.get_metric_history(r.info.run_id, "loss")) for n, r in after.items()} == points


def test_sync_through_the_cli_and_its_mistakes(runs: Path, script, space_file) -> None:
    out = _search(runs, script, space_file, None, trials=2)
    res = CliRunner().invoke(main, ["sync", out["run_dir"]])
    assert res.exit_code == 0 and "2 trials in sqlite:///" in res.output and "2 new" in res.output, res.output
    res = CliRunner().invoke(main, ["sync", out["run_dir"], "--json"])
    assert json.loads(res.output)["created"] == 0
    res = CliRunner().invoke(main, ["sync", str(runs.parent)])
    assert res.exit_code == 2 and "is not a coord run directory" in res.output and "Traceback" not in res.output
    dead = f"http://127.0.0.1:{free_port()}"
    res = CliRunner().invoke(main, ["sync", out["run_dir"], "--mlflow-uri", dead])
    assert res.exit_code == 69 and res.output.startswith(f"coord: error: MLflow at {dead}: "), res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["sync", out["run_dir"], "--mlflow-uri", "ftp://x"])
    assert res.exit_code == 2 and res.output.startswith("coord: error: --mlflow-uri: "), res.output
    assert "'ftp'" in res.output and "sqlite" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_uri_no_mlflow_store_takes_is_one_error_before_the_search(runs: Path, script, space_file, where: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["search", "--command", script(STEPS), "--space", space_file(SPACE), "--metric", "loss", "--trials", "1",
            "--runs", str(runs)]
    if where == "flag":
        args += ["--mlflow-uri", "ftp://user:secret@x/y"]
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://user:secret@x/y")
    res = CliRunner().invoke(main, args)
    source = "--mlflow-uri" if where == "flag" else "MLFLOW_TRACKING_URI"
    assert res.exit_code == 2 and res.output.startswith(f"coord: error: {source}: "), res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line and "secret" not in line
    for valid in ("http", "https", "sqlite", "postgresql", "file"):
        assert valid in line.split("(valid: ")[1], line
    assert not runs.exists()  # before anything was written
    assert CliRunner().invoke(main, [*args, "--no-mlflow"]).exit_code == 0  # tracking off: the URI is not used
    (run,) = runs.iterdir()
    res = CliRunner().invoke(main, ["resume", str(run), "--mlflow-uri", "ftp://x"])
    assert res.exit_code == 2 and res.output.startswith("coord: error: --mlflow-uri: "), res.output
    for good in ("sqlite:///a/b.db", "postgresql+psycopg2://u@h/db", "http://h:5000", "/a/path", "file:///a"):
        settings.check_uri(good)


def test_a_live_run_is_not_synced_by_a_second_writer(runs: Path, script, space_file) -> None:
    out = _search(runs, script, space_file, None, trials=1)
    store = RunStore.open(Path(out["run_dir"]))
    store.lock()  # as its coordinator holds it
    try:
        with pytest.raises(TrackingError, match="is live .* tracks itself"):
            sync_run(Path(out["run_dir"]))
    finally:
        store.close()


def test_an_unreachable_server_never_fails_the_search(runs: Path, script, space_file, caplog,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follower, "FINAL_RETRY_S", 1.0)
    dead = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="coordinator"):
        out = _search(runs, script, space_file, TrackingOptions(uri=dead), trials=4)
    assert out["complete"] + out["failed"] == 4 and not out["tracking"]["complete"]
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("MLflow tracking to")]
    assert len(failed) == 1 and dead in failed[0], failed  # said once, not once a second
    assert not [r for r in caplog.records if not r.name.startswith("coordinator")]  # no urllib3 retry noise
    assert any(f"coord sync {out['run_dir']}" in r.getMessage() for r in caplog.records)


def test_no_secret_reaches_mlflow(runs: Path, script, space_file, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hunter2-7f3a9c"
    monkeypatch.setenv("COORD_TEST_API_TOKEN", secret)  # in the environment of coord and every trial
    uri = f"http://user:{secret}@127.0.0.1:{free_port()}"
    assert secret not in settings.redact(uri) and settings.redact(uri).startswith("http://user:***@")
    config = {"options": {"storage": f"postgresql://coord:{secret}@db.example/optuna"}}
    assert secret not in redacted_config(config) and "postgresql://coord:***@db.example/optuna" in redacted_config(config)
    out = _search(runs, script, space_file, TrackingOptions(), trials=2)
    assert out["tracking"]["complete"]
    for path in [runs / "mlflow.db", *(p for p in (runs / "mlartifacts").rglob("*") if p.is_file()),
                 Path(out["run_dir"]) / "mlflow.json"]:
        assert secret.encode() not in path.read_bytes(), path


def test_where_tracking_goes(runs: Path, script, space_file, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _search(runs, script, space_file, None, trials=1)
    run = Path(out["run_dir"])
    assert settings.resolve_uri(run, None) == f"sqlite:///{runs.absolute() / 'mlflow.db'}"  # the runs root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert settings.resolve_uri(run, None) == "http://127.0.0.1:1"
    assert settings.resolve_uri(run, "sqlite:////elsewhere.db") == "sqlite:////elsewhere.db"  # the flag wins
    assert settings.artifact_root(f"sqlite:///{runs}/mlflow.db") == (runs / "mlartifacts").as_uri()


def test_the_git_commit_and_dirty_flag_are_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script,
                                                space_file) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.txt").write_text("v1\n")
    subprocess.run([*git, "add", "train.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (repo / "train.txt").write_text("v2\n")  # uncommitted change: dirty
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    out = _search(repo / "runs", script, space_file, TrackingOptions(), trials=1)
    runs = coord_runs(f"sqlite:///{repo / 'runs' / 'mlflow.db'}", _key(out["run_dir"]))
    assert len(runs) == 2
    for r in runs:
        assert r.data.tags["mlflow.source.git.commit"] == head and r.data.tags["coord.git_dirty"] == "true"


def test_coord_starts_without_importing_mlflow() -> None:
    """MLflow loads on the follower's thread, never on the way to the first trial."""
    code = "import sys, coordinator.cli, coordinator.app; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.stdout.strip() == "False"


OPEN_STORE = """import os, sys, time
sys.path.insert(0, sys.argv[3])
from coordinator.tracking import settings, worker
settings.prepare_environment()
import mlflow  # imported before the barrier: only the store's opening is raced
open(sys.argv[2] + ".ready", "w").close()
while not os.path.exists(os.path.join(os.path.dirname(sys.argv[2]), "go")):
    time.sleep(0.005)
try:
    worker.client(sys.argv[1]).search_experiments()
    print("ok")
except Exception as exc:
    print("ERR", type(exc).__name__, str(exc).splitlines()[0][:200])
"""


def test_trackers_opening_a_new_sqlite_store_at_once_leave_it_working(tmp_path: Path) -> None:
    """Three tracking processes (three searches started together under one runs folder) open
    the same new runs/mlflow.db at the same moment: without coord's lock, MLflow's table
    creation and migrations race and most fail, some leaving the store broken for good."""
    (tmp_path / "open.py").write_text(OPEN_STORE)
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    root = str(Path(__file__).resolve().parents[2])
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "open.py"), uri, str(tmp_path / f"p{i}"), root],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for i in range(3)]
    deadline = time.monotonic() + 240
    while len(list(tmp_path.glob("p*.ready"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    (tmp_path / "go").write_text("")
    outs = [p.communicate(timeout=240)[0].strip() for p in procs]
    assert outs == ["ok"] * 3, outs
    assert coord_runs(uri) == []  # and it opens afterwards
