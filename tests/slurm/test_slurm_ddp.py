"""A trial of two processes (``procs: 2``, torch DDP with gloo) as one job on the real
one-node SLURM cluster: one task with both processes' CPUs, torchrun inside the job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests import slurmcluster
from tests.slurm.test_slurm_search import coord, results


def registry(tmp: Path) -> Path:
    path = tmp / "reg.yaml"
    path.write_text(f"""\
platforms:
  cluster:
    connection: slurm
    python: {sys.executable}
    work_dir: {tmp / 'shared'}
    specs: {{cpu_cores: 2, memory_gb: 4}}
    max_concurrent_jobs: 1
    slurm:
      partition: {slurmcluster.PARTITION}
      time_limit: "00:10:00"
      cpus_per_task: 1
      mem: 900M
task_routing_rules:
  - model_type: NeuralNetwork
    route_to: [cluster]
allow_local_fallback: false
""")
    return path


@pytest.mark.slow
def test_a_two_process_trial_is_one_slurm_job(slurm: slurmcluster.Cluster, small_csv: Path, tmp_path: Path) -> None:
    registry(tmp_path)
    (tmp_path / "space.yaml").write_text("params:\n  lr: {type: float, low: 0.005, high: 0.02}\n"
                                         "fixed: {epochs: 3, hidden_size: 16, batch_size: 64}\nprocs: 2\n")
    plan = coord(tmp_path, "plan", "--model", "mlp", "--space", "space.yaml", "--registry", "reg.yaml")
    assert plan.returncode == 0 and "cluster          slurm  1 slot" in plan.stdout, plan.stdout + plan.stderr
    proc = coord(tmp_path, "search", "--model", "mlp", "--space", "space.yaml", "--data", str(small_csv),
                 "--target", "home_win", "--folds", "2", "--trials", "1", "--registry", "reg.yaml",
                 "--run-dir", "run", "--quiet", "--no-mlflow")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (res,) = results(tmp_path / "run")
    assert res["status"] == "COMPLETE" and res["platform"] == "cluster" and 0.5 < res["metrics"]["auc"] <= 1, res
    local = tmp_path / "run" / "trials" / "0" / "attempt-1"
    script = (local / "job.sh").read_text().splitlines()
    assert "#SBATCH --ntasks=1" in script and "#SBATCH --cpus-per-task=2" in script
    job = json.loads((local / "slurm.json").read_text())["job"]
    shown = slurm.run("scontrol", "show", "job", str(job), check=False).stdout
    assert not shown or "NumCPUs=2" in shown, shown  # what SLURM gave the job (while it still lists it)
    shared = next((tmp_path / "shared" / "runs").glob("run/trials/0/attempt-1"))
    steps = [json.loads(x.split(" ", 1)[1]).get("step") for x in (shared / "stdout").read_text().splitlines()
             if x.startswith("[coord-metric]")]
    assert steps == [1, 2, 3, None]  # rank 0 alone reports
