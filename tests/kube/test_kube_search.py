"""Searches end to end through the Kubernetes backend and the in-process fake API
(tests/kubefake.py): a --command script and a built-in model, each trial a Job whose pod runs
it for real; a spot eviction mid-trial resumes from the checkpoint without spending a retry;
the run's objects are gone afterwards. And coord without the client: one clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.backends.kubejob import RUN_LABEL
from coordinator.config import datasets
from coordinator.config.experiment import SearchOptions
from coordinator.errors import RegistryError
from coordinator.store.rundir import RunStore
from tests import kubefake
from tests.kube.conftest import registry_text
from tests.kube.test_kube_states import CHECKPOINTING

ROOT = Path(__file__).resolve().parents[2]


def results(run: Path) -> list[dict]:
    return [r.result.to_json() for r in RunStore.open(run).trials() if r.result]


def setup(tmp_path: Path, body: str = CHECKPOINTING) -> tuple[Path, Path, Path]:
    reg = tmp_path / "reg.yaml"
    reg.write_text(registry_text(tmp_path))
    (tmp_path / "trial.py").write_text(body)
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 6}\n")
    return reg, tmp_path / "trial.py", tmp_path / "space.yaml"


def command_search(tmp_path: Path, trials: int, **kw: object) -> dict:
    reg, trial, space = setup(tmp_path)
    opts = dict(command=f"{sys.executable} {trial}", space=str(space), metrics=("loss",), trials=trials,
                parallel=2, sampler="random", seed=1, registry=str(reg), run_dir=str(tmp_path / "run"))
    return run_search(SearchOptions(**{**opts, **kw}))  # type: ignore[arg-type]


def test_a_command_search_runs_each_trial_as_a_job_and_cleans_up(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    os.environ["TRIAL_STEPS"] = "3"
    try:
        out = command_search(tmp_path, 4)
    finally:
        del os.environ["TRIAL_STEPS"]
    rs = results(tmp_path / "run")
    assert out["complete"] == 4 and all(r["status"] == "COMPLETE" and r["platform"] == "kube" for r in rs)
    assert all(r["values"][0] == (r["params"]["x"] - 3) ** 2 for r in rs)  # the pods' real metric lines
    assert cluster.calls["create_namespaced_job"] == 4 and cluster.calls.get("watch_namespaced_job", 0) >= 1
    # watched, not polled: the namespace check and one list of Jobs, one list of Pods, for the whole run
    assert cluster.calls["list_namespaced_job"] == 2 and cluster.calls["list_namespaced_pod"] == 1
    record = json.loads((tmp_path / "run/trials/0/attempt-1/kube.json").read_text())
    assert record["uid"] and record["namespace"] == "coord-test"
    kubefake.wait(lambda: not [o for objs in cluster.store.values() for o in objs.values()
                               if (o["metadata"].get("labels") or {}).get(RUN_LABEL)], what="every object deleted")


def test_a_spot_eviction_resumes_from_the_checkpoint_without_spending_a_retry(
        tmp_path: Path, cluster: kubefake.Cluster) -> None:
    def evict_once() -> None:
        def running_at_step() -> str | None:
            for p in cluster.pods():
                log = cluster.root / "pods" / p["metadata"]["name"] / "log"
                if p["status"].get("phase") == "Running" and log.exists() and '"step": 3' in log.read_text():
                    return str(p["metadata"]["name"])
            return None
        cluster.evict(kubefake.wait(running_at_step, 60, "a trial at step 3"), "EvictionByEvictionAPI")

    evictor = threading.Thread(target=evict_once, daemon=True)
    evictor.start()
    out = command_search(tmp_path, 1, parallel=1, max_retries=0)  # no retry to spend
    evictor.join(5)
    (r,) = results(tmp_path / "run")
    assert out["complete"] == 1 and r["status"] == "COMPLETE", r
    assert [a["kind"] for a in r["attempts"]] == ["preempted", "ok"]
    second = (tmp_path / "run/trials/0/attempt-2/stdout").read_text()
    resumed = json.loads(second.splitlines()[0].split(" ", 1)[1])["resumed_from"]
    assert resumed >= 3  # the successor started from the checkpoint on the volume


def test_a_builtin_model_trains_in_the_pod_on_the_volume_s_data(
        tmp_path: Path, cluster: kubefake.Cluster, small_csv: Path) -> None:
    reg, _, _ = setup(tmp_path)
    data = tmp_path / "volume" / "data" / f"{datasets.sha256(small_csv)}.csv"  # staged by the user (docs)
    data.parent.mkdir(parents=True)
    shutil.copyfile(small_csv, data)
    out = run_search(SearchOptions(models=("glm",), data=str(small_csv), target="home_win", trials=2, parallel=2,
                                   seed=3, registry=str(reg), run_dir=str(tmp_path / "run")))
    rs = results(tmp_path / "run")
    assert out["complete"] == 2 and all(r["status"] == "COMPLETE" and r["platform"] == "kube" for r in rs), rs
    assert all(0.0 < r["values"][0] <= 1.0 for r in rs)
    spec = json.loads(next((tmp_path / "fake/pods").glob("*/attempt/spec.json")).read_text())
    assert spec["data"]["path"].endswith(f"/volume/data/{datasets.sha256(small_csv)}.csv")  # the claim's path


def test_without_the_client_one_clear_error_names_what_to_install(tmp_path: Path) -> None:
    reg, trial, space = setup(tmp_path)
    code = ("import sys; sys.modules['kubernetes'] = None\n"  # as on a machine without the client
            "from coordinator.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code, "search", "--command", f"{sys.executable} {trial}",
                           "--space", str(space), "--metric", "loss", "--trials", "1", "--registry", str(reg),
                           "--run-dir", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "pip install 'coord[kubernetes]'" in done.stderr and "platforms.kube.kubernetes" in done.stderr


def test_without_the_client_run_search_raises_the_registry_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(RegistryError, match="needs the Kubernetes client"):
        command_search(tmp_path, 1)


@pytest.mark.slow
def test_a_builtin_model_evicted_mid_training_resumes_from_its_own_checkpoint(
        tmp_path: Path, cluster: kubefake.Cluster, small_csv: Path) -> None:
    """The real runner (mlp): SIGTERM from the eviction, it checkpoints on the volume and
    exits 75; the next attempt loads that checkpoint (its first step is past 0)."""
    reg, _, _ = setup(tmp_path)
    data = tmp_path / "volume" / "data" / f"{datasets.sha256(small_csv)}.csv"
    data.parent.mkdir(parents=True)
    shutil.copyfile(small_csv, data)
    (tmp_path / "mlp.yaml").write_text("model: mlp\nparams:\n  hidden_size: {type: int, low: 16, high: 16}\n"
                                       "  n_layers: {type: int, low: 1, high: 1}\n  epochs: {type: int, low: 8, high: 8}\n")

    def evict_once() -> None:
        def training() -> str | None:
            for p in cluster.pods():
                log = cluster.root / "pods" / p["metadata"]["name"] / "log"
                if p["status"].get("phase") == "Running" and log.exists() and log.read_text().count('"step"') >= 3:
                    return str(p["metadata"]["name"])
            return None
        cluster.evict(kubefake.wait(training, 120, "the mlp at its third step"), "TerminationByKubelet")

    evictor = threading.Thread(target=evict_once, daemon=True)
    evictor.start()
    out = run_search(SearchOptions(models=("mlp",), data=str(small_csv), target="home_win", trials=1, parallel=1,
                                   space=str(tmp_path / "mlp.yaml"), cv="holdout", seed=3, max_retries=0, checkpoint_every=0.0, registry=str(reg),
                                   run_dir=str(tmp_path / "run")))
    evictor.join(5)
    (r,) = results(tmp_path / "run")
    assert out["complete"] == 1 and [a["kind"] for a in r["attempts"]] == ["preempted", "ok"], r
    steps = [json.loads(ln.split(" ", 1)[1]).get("step") for ln in
             (tmp_path / "run/trials/0/attempt-2/stdout").read_text().splitlines() if ln.startswith("[coord-metric]")]
    assert [s for s in steps if s is not None][0] > 0  # resumed, not restarted
