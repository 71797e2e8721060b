"""A search stopped with Ctrl-C, then ``coord resume``: the resumed coordinator tracks into
the same MLflow parent run, and every trial has exactly one child run (an interrupted
trial, finished by the resume, is logged once, complete)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from coordinator.store.rundir import RunStore
from coordinator.tracking import settings

from .helpers import coord_runs, split

pytestmark = pytest.mark.slow

# trials 0-2 end at once; the others wait for a gate file the first search never sees, so
# Ctrl-C always lands with 3 trials committed and 2 running, whatever the machine's load
TRIAL = """import json, os, time
spec = json.load(open(os.environ["COORD_SPEC"]))
gate = os.path.join(spec["attempt_dir"], "..", "..", "..", "gate")
deadline = time.time() + 300
while spec["number"] > 2 and not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.05)
for step in (1, 2):
    print('[coord-metric] ' + json.dumps({"step": step, "loss": spec["params"]["x"] ** 2 + 1.0 / step}), flush=True)
print('[coord-metric] ' + json.dumps({"loss": spec["params"]["x"] ** 2}))
"""
SPACE = "params:\n  x: {type: float, low: -1, high: 1}\n"


def _wait_for(what: str, condition, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _children(uri: str, run: Path) -> dict[int, object]:
    if not Path(uri[len("sqlite:///"):]).exists():  # made by the tracking process, not by this query
        return {}
    try:
        return split(coord_runs(uri, settings.run_key(run)))[1]
    except Exception:  # the experiment not made yet
        return {}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("group", [False, True], ids=["sigint-to-coord", "ctrl-c-to-the-process-group"])
def test_an_interrupted_search_resumes_into_the_same_mlflow_runs(tmp_path: Path, group: bool) -> None:
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text(SPACE)
    run, db = tmp_path / "run", tmp_path / "runs" / "mlflow.db"  # the default store: under the runs folder
    uri = f"sqlite:///{db}"
    env = {k: v for k, v in os.environ.items() if k not in ("COORD_MLFLOW", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    cmd = [sys.executable, "-m", "coordinator", "search", "--command", f"{sys.executable} trial.py", "--space",
           "space.yaml", "--metric", "loss", "--trials", "8", "--parallel", "2", "--sampler", "random",
           "--seed", "3", "--run-dir", str(run), "--quiet"]
    # a terminal's Ctrl-C reaches the whole foreground process group: the tracking process too
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=group)
    try:
        _wait_for("trials 0-2 logged, 3 and 4 running", lambda: sorted(
            n for n, c in _children(uri, run).items() if c.data.tags.get("coord.synced") == "1") == [0, 1, 2]
            and len(list(run.glob("trials/*/attempt-1/spec.json"))) == 5)
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err and "coord resume" in out, out + err
    assert sorted(int(p.parent.name) for p in run.glob("trials/*/result.json")) == [0, 1, 2]
    parents, before = split(coord_runs(uri, settings.run_key(run)))
    assert len(parents) == 1 and sorted(before) == [0, 1, 2]  # nothing for the trials Ctrl-C stopped
    assert parents[0].info.status == "KILLED"  # the tracking process lived on to log the interrupted end
    assert "mlflow" in out and "incomplete" not in out, out
    parent_id = parents[0].info.run_id

    (run / "gate").write_text("")
    done = subprocess.run([sys.executable, "-m", "coordinator", "resume", str(run), "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    parents, children = split(coord_runs(uri, settings.run_key(run)))  # split() fails on a trial logged twice
    assert [p.info.run_id for p in parents] == [parent_id] and parents[0].info.status == "FINISHED"
    assert sorted(children) == list(range(8))
    assert all(children[n].info.run_id == before[n].info.run_id for n in before)  # the same runs, not new ones
    client = MlflowClient(uri)
    assert len(client.search_runs([parents[0].info.experiment_id], max_results=100)) == 9  # nothing else at all
    results = {r.number: r.result.to_json() for r in RunStore.open(run).trials() if r.result}
    for number, child in children.items():
        result = results[number]
        assert result["status"] == "COMPLETE"
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent_id and tags["coord.synced"] == "1"
        assert child.info.status == "FINISHED" and tags["coord.status"] == "COMPLETE"
        assert tags["coord.attempts"] == str(len(result["attempts"]))
        x = result["params"]["x"]
        history = [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, "loss")]
        assert history == [(1, pytest.approx(x ** 2 + 1.0)), (2, pytest.approx(x ** 2 + 0.5)),
                           (2, pytest.approx(x ** 2))], (number, history)
    interrupted = [n for n, r in results.items() if r["attempts"][0]["kind"] == "interrupted"]
    assert sorted(interrupted) == [3, 4], {n: r["attempts"] for n, r in results.items()}
    assert json.loads((run / "mlflow.json").read_text())["uri"] == uri
