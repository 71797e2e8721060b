"""The SLURM job script, as text, and the parsing of squeue (no cluster needed)."""

from __future__ import annotations

import subprocess

from coordinator.backends.plan import HostLayout, build
from coordinator.backends.slurmjob import job_script, parse_exit, parse_squeue
from coordinator.config.slurmcfg import SlurmOptions
from coordinator.records import Allocation, Recipe

RECIPE = Recipe(number=3, study="s", params={"lr": "0.1; rm -rf /"}, seed=1, model=None,
                command=("python3", "train.py", "--flag"), data=None, metrics=("loss",))
OPTS = SlurmOptions(partition="gpu", account="lab", qos="normal", time_limit="01:00:00", cpus_per_task=4,
                    mem="8G", gpus=2, extra=("--constraint=a100",), signal_s=90)


def _script(gpu: int | None = 0) -> str:
    host = HostLayout("/shared/coord/runs/r1", "/shared/coord/runners/abc", "/env/bin/python", "/shared/coord", 4)
    plan = build(RECIPE, 2, Allocation("cluster", 0, gpu, "rule"), host)
    return job_script(plan, OPTS, "coord-r1-3-a2")


def test_the_job_script_carries_every_registry_key_and_no_parameter() -> None:
    text = _script()
    adir = "/shared/coord/runs/r1/trials/3/attempt-2"
    for line in ("#SBATCH --job-name=coord-r1-3-a2", f"#SBATCH --output={adir}/stdout", "#SBATCH --partition=gpu",
                 "#SBATCH --account=lab", "#SBATCH --qos=normal", "#SBATCH --time=01:00:00",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G", "#SBATCH --gres=gpu:2",
                 "#SBATCH --signal=B:TERM@90", "#SBATCH --requeue", "#SBATCH --constraint=a100",
                 f"export COORD_SPEC={adir}/spec.json", "export OMP_NUM_THREADS=4", "python3 train.py --flag &"):
        assert line in text.splitlines(), line
    assert "rm -rf" not in text and "0.1" not in text  # parameters only in spec.json
    assert "CUDA_VISIBLE_DEVICES" not in text  # SLURM sets it for the GPUs it gave the job
    assert text.index("#SBATCH --constraint=a100") < text.index("export ")  # sbatch reads options up to the first command


def test_the_job_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n"], input=_script(), text=True).returncode == 0


def test_squeue_and_exit_records_parse() -> None:
    states = parse_squeue("12|RUNNING|0|None\n13|PENDING|1|BeginTime\n14|CANCELLED by 0|0|None\n\n")
    assert states["12"].state == "RUNNING" and not states["12"].finished
    assert states["13"].restarts == 1 and not states["13"].finished
    assert states["14"].state == "CANCELLED" and states["14"].finished
    assert parse_exit('{"exit": 75, "signalled": 1, "restart": 0, "job": "12"}\n') == \
        {"exit": 75, "signalled": 1, "restart": 0, "job": "12"}
    assert parse_exit('{"exit": 7') is None and parse_exit(None) is None


def test_a_trial_of_several_processes_is_one_task_with_their_cpus_and_gpus() -> None:
    """procs: 2 is one job, one task (torchrun starts the ranks inside it), with twice a
    one-process trial's CPUs and GPUs; the script starts the launcher, not run_trial.py."""
    recipe = Recipe(number=3, study="mlp", params={"lr": 0.01}, seed=1, model="mlp", command=None, data=None,
                    metrics=("auc",), procs=2)
    host = HostLayout("/shared/coord/runs/r1", "/shared/coord/runners/abc", "/env/bin/python", "/shared/coord", 4)
    text = job_script(build(recipe, 1, Allocation("cluster", 0, 0, "rule"), host), OPTS, "coord-r1-3-a1")
    lines = text.splitlines()
    for line in ("#SBATCH --ntasks=1", "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:4",
                 "/env/bin/python /shared/coord/runners/abc/ddp_launch.py 2 &"):
        assert line in lines, line
    assert "#SBATCH --cpus-per-task=4" not in lines and "srun" not in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
