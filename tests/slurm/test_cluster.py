"""The test cluster itself: a job runs, and a GRES GPU job sees its fake GPU."""

from __future__ import annotations

import time
from pathlib import Path

from tests import slurmcluster


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"{path} never written")


def test_sbatch_wrap_runs(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    out = tmp_path / "hi.out"
    job = slurm.run("sbatch", "--parsable", "-o", str(out), "--wrap", "echo hi").stdout.strip()
    assert job.isdigit()
    assert _wait_file(out).strip() == "hi"


def test_gres_gpu_sets_cuda_visible_devices(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    out = tmp_path / "gpu.out"
    slurm.run("sbatch", "--parsable", "--gres=gpu:1", "-o", str(out), "--wrap", "echo CVD=$CUDA_VISIBLE_DEVICES")
    assert _wait_file(out).strip() in ("CVD=0", "CVD=1")
