"""Routing a trial of several processes (``procs``): one slot per process on one platform,
a GPU of its own per process with ``gpus_per_proc: 1``, the reasons a platform can never
hold it, the ledger's bookkeeping, allocation.json's round trip and the launch plan."""

from __future__ import annotations

from coordinator.backends.plan import HostLayout, build
from coordinator.config.models import BUILTIN, needs_of
from coordinator.config.registry import Gpu, Platform, Registry, Specs, never_fits
from coordinator.config.slurmcfg import SlurmOptions
from coordinator.records import Allocation, Recipe
from coordinator.schedule.routing import Busy, Infeasible, Ledger, route

MLP = BUILTIN["mlp"]
CPU2 = needs_of(MLP, 2)
GPU2 = needs_of(MLP, 2, 1)


def box(cores: int = 4, slots: int = 4, gpus: int = 0, per_gpu: int = 1) -> Platform:
    return Platform("box", "Box", "local", Specs(cores, 64, tuple(Gpu(i) for i in range(gpus))), slots,
                    max_trials_per_gpu=per_gpu)


def test_needs_scale_with_the_processes() -> None:
    assert (CPU2.procs, CPU2.gpu, CPU2.memory_gb) == (2, "none", 2 * MLP.memory_gb)
    assert (GPU2.gpu, GPU2.gpus_per_proc) == ("required", 1)
    assert needs_of(MLP) == needs_of(MLP, 1, 0) and needs_of(MLP).gpu == "preferred"


def test_cpu_processes_take_cpu_slots_and_wait_for_enough_of_them() -> None:
    reg, ledger = Registry({"box": box(gpus=1)}), Ledger()  # slot 0 is the GPU's
    first = route(CPU2, reg, ledger)
    assert isinstance(first, Allocation) and first.slots == (1, 2) and first.gpus == ()
    ledger.take(first, 0, CPU2.memory_gb)
    assert ledger.busy("box") == 2
    wait = route(CPU2, reg, ledger)  # one CPU slot left
    assert isinstance(wait, Busy) and "too few free slots for 2 processes" in wait.reason
    ledger.release(first, CPU2.memory_gb)
    assert ledger.busy("box") == 0


def test_gpu_processes_get_a_gpu_each_never_a_shared_one() -> None:
    reg, ledger = Registry({"box": box(slots=4, gpus=2, per_gpu=2)}), Ledger()  # slots 0-3 on GPUs 0,1,0,1
    a = route(GPU2, reg, ledger)
    assert isinstance(a, Allocation) and sorted(a.gpus) == [0, 1] and len(set(a.slots)) == 2
    ledger.take(a, 0, GPU2.memory_gb)
    assert isinstance(route(GPU2, reg, ledger), Busy)  # two slots free, but on GPUs in use


def test_platforms_that_never_fit_say_why() -> None:
    assert never_fits(box(slots=1), CPU2) == ("needs 2 CPU slots (procs: 2), platform has 1 "
                                              "(max_concurrent_jobs 1, 0 with GPU)")
    assert never_fits(box(cores=1, slots=2), CPU2) == "needs 2 cores (procs: 2), platform has 1"
    assert never_fits(box(gpus=1, per_gpu=4), GPU2) == "needs 2 GPUs (procs: 2, one per process), platform has 1"
    slurm = Platform("hpc", "HPC", "slurm", Specs(4, 64), 8, slurm=SlurmOptions(cpus_per_task=3))
    assert never_fits(slurm, CPU2) == ("needs 6 CPUs in one job (procs: 2 x cpus_per_task 3), a node has 4 "
                                       "(specs.cpu_cores)")
    assert never_fits(slurm, GPU2) == "needs a GPU, platform has none"  # its jobs ask for no slurm.gpus
    d = route(CPU2, Registry({"box": box(slots=1)}), Ledger())
    assert isinstance(d, Infeasible) and d.reasons["box"].startswith("needs 2 CPU slots")


def test_a_slurm_job_is_one_slot_whatever_it_holds() -> None:
    slurm = Platform("hpc", "HPC", "slurm", Specs(8, 64), 2, slurm=SlurmOptions(cpus_per_task=2))
    d = route(CPU2, Registry({"hpc": slurm}), Ledger())
    assert isinstance(d, Allocation) and d.slots == (0,)


def test_allocation_json_round_trips_and_stays_as_it_was_for_one_process() -> None:
    many = Allocation("box", 1, 0, "rule", extra_slots=(3,), extra_gpus=(1,))
    assert many.to_json() == {"platform": "box", "slot": 1, "gpu": 0, "reason": "rule", "slots": [1, 3], "gpus": [0, 1]}
    assert Allocation.from_json(many.to_json()) == many
    assert Allocation("box", 2, None, "r").to_json() == {"platform": "box", "slot": 2, "gpu": None, "reason": "r"}


def test_the_plan_starts_the_launcher_with_every_gpu_and_no_warm_worker() -> None:
    recipe = Recipe(number=4, study="mlp", params={"lr": 0.01}, seed=3, model="mlp", command=None, data=None,
                    metrics=("auc",), procs=2)
    host = HostLayout("/srv/r", "/srv/runners", "/py", "/srv", 2)
    plan = build(recipe, 1, Allocation("box", 0, 0, "rule", extra_slots=(1,), extra_gpus=(1,)), host)
    assert plan.argv == ("/py", "/srv/runners/ddp_launch.py", "2") and plan.warm is None
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0,1" and plan.spec["device"] == "cuda"
    assert plan.spec["procs"] == 2 and plan.spec["threads"] == 2  # each rank: one slot's threads
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert "procs" not in Recipe.from_json({**recipe.to_json(), "procs": 1}).to_json()  # one process: as before
