"""GPU slots: each trial gets its own CUDA_VISIBLE_DEVICES; GPUs busy with another user's
compute processes are skipped unless the registry allows sharing. This machine has no GPU,
so a stand-in nvidia-smi on PATH plays the driver (the parsing and the policy are what is
tested; the real GPU paths are checked on a GPU host when one is lent)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore

FAKE_SMI = """#!/bin/sh
case "$*" in
  *query-compute-apps*) echo "GPU-aaaa, 4242" ;;
  *query-gpu=index,uuid*) printf '0, GPU-aaaa, RTX 4090, 24564, 1000, 97\\n1, GPU-bbbb, RTX 4090, 24564, 24000, 0\\n' ;;
  *query-gpu=index,name*) printf '0, RTX 4090, 24564\\n1, RTX 4090, 24564\\n' ;;
esac
"""


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def _search(tmp_path: Path, script, space_file, shared: bool) -> list[dict]:
    reg = tmp_path / f"reg-{shared}.yaml"
    reg.write_text("platforms:\n  box:\n    specs:\n      cpu_cores: 4\n      memory_gb: 16\n      gpus:\n"
                   "        - {index: 0, model: RTX 4090, memory_gb: 24}\n        - {index: 1, model: RTX 4090, memory_gb: 24}\n"
                   f"    max_concurrent_jobs: 2\n    allow_shared_gpus: {str(shared).lower()}\n"
                   "task_routing_rules:\n  - model_type: NN\n    route_to: box\n")
    body = "print('[coord-metric] {\"gpu\": %s}' % (os.environ['CUDA_VISIBLE_DEVICES'] or -1))\ntime.sleep(0.3)\n"
    out = run_search(SearchOptions(command=script(body), model_type="NN", space=space_file("params:\n  x: {type: int, low: 0, high: 9}\n"),
                                   metrics=("gpu",), direction="maximize", trials=4, registry=str(reg),
                                   run_dir=str(tmp_path / f"run-{shared}")))
    return [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]


def test_busy_gpu_is_skipped(tmp_path: Path, fake_smi: None, script, space_file) -> None:
    results = _search(tmp_path, script, space_file, shared=False)
    assert {r["metrics"]["gpu"] for r in results} == {1.0}  # GPU 0 runs someone else's job
    assert {r["attempts"][0]["gpu"] for r in results} == {1}


def test_shared_gpus_allowed_by_the_registry(tmp_path: Path, fake_smi: None, script, space_file) -> None:
    results = _search(tmp_path, script, space_file, shared=True)
    assert {r["metrics"]["gpu"] for r in results} == {0.0, 1.0}
