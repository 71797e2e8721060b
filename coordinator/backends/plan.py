"""The launch plan: what a host runs for one attempt, built from the trial's location-free
recipe, its allocation and the host's layout. Pure (no I/O), so it is tested as text, the
way dask-jobqueue tests its generated job scripts; the agent runs it, an exact rerun
replays it, and a SLURM or Kubernetes job script is made from the same plan.

The plan holds the trial's ``spec.json`` (the recipe, placed: attempt and checkpoint
directories, the data file's path on that host, threads and device), its argv, its
environment (parameters never in either: they are in the spec file), its working
directory, and, for a built-in model, how the slot's warm worker is started. A trial of
several processes (``procs``) runs ``ddp_launch.py``, which starts torchrun, in a fresh
process: ranks cannot share a slot's warm worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coordinator import protocol
from coordinator.records import Allocation, Recipe


@dataclass(frozen=True)
class HostLayout:
    """Where one host keeps a run: ``base`` is the run's directory there (the run directory
    itself on this machine), ``runners`` the runner scripts, ``cwd`` where trials start."""

    base: str
    runners: str
    python: str
    cwd: str
    threads_per_slot: int = 1

    def trial_dir(self, number: int) -> str:
        return f"{self.base}/trials/{number}"

    def attempt_dir(self, number: int, attempt: int) -> str:
        return f"{self.trial_dir(number)}/attempt-{attempt}"

    def checkpoint_dir(self, number: int) -> str:
        return f"{self.trial_dir(number)}/checkpoint"

    def slot_dir(self, slot: int) -> str:
        return f"{self.base}/slots/{slot}"

    @property
    def slots_dir(self) -> str:
        return f"{self.base}/slots"


@dataclass(frozen=True)
class LaunchPlan:
    """One attempt on one host, as text: see the module docstring."""

    number: int
    attempt: int
    attempt_dir: str
    checkpoint_dir: str
    spec: dict[str, Any]
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    timeout_s: float | None
    warm: dict[str, Any] | None  # a built-in model: the slot's warm worker runs it

    @property
    def spec_text(self) -> str:
        return json.dumps(self.spec, indent=2, sort_keys=True)

    @property
    def launch(self) -> dict[str, Any]:
        """launch.json: what the host's agent starts (runners/remote.py)."""
        return {"argv": list(self.argv), "env": self.env, "cwd": self.cwd, "attempt": self.attempt,
                "timeout_s": self.timeout_s}

    @property
    def record(self) -> dict[str, Any]:
        """plan.json, the run directory's record of an attempt placed on another host."""
        return {"spec": self.spec, "launch": self.launch, "warm": self.warm}

    def request(self, tag: str) -> dict[str, Any]:
        """The agent's ``run`` request (one JSON line; docs/architecture.md, the agent protocol)."""
        req: dict[str, Any] = {"op": "run", "tag": tag, "adir": self.attempt_dir, "dirs": [self.checkpoint_dir],
                               "files": {"spec.json": self.spec_text, "launch.json": json.dumps(self.launch)}}
        if self.warm is not None:
            req["warm"] = self.warm
        return req


def build(recipe: Recipe, attempt: int, allocation: Allocation, host: HostLayout,
          data_path: str | None = None) -> LaunchPlan:
    """The plan of attempt ``attempt`` of ``recipe`` on ``allocation``'s slot of ``host``.
    ``data_path``: where the data file lies on that host (default: the recipe's own path)."""
    adir, ckpt = host.attempt_dir(recipe.number, attempt), host.checkpoint_dir(recipe.number)
    threads = str(host.threads_per_slot)
    data = recipe.data if recipe.data is None or data_path is None else {**recipe.data, "path": data_path}
    spec = {**recipe.to_json(), "data": data, "attempt": attempt, "attempt_dir": adir, "checkpoint_dir": ckpt,
            "threads": host.threads_per_slot, "device": "cuda" if allocation.gpu is not None else "cpu"}
    env = {protocol.ENV_SPEC: f"{adir}/spec.json", protocol.ENV_TRIAL_NUMBER: str(recipe.number),
           protocol.ENV_ATTEMPT: str(attempt), protocol.ENV_CHECKPOINT_DIR: ckpt,
           protocol.ENV_CUDA: ",".join(str(g) for g in allocation.gpus),
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "PYTHONUNBUFFERED": "1"}
    argv = tuple(recipe.command) if recipe.command else (host.python, f"{host.runners}/run_trial.py")
    if recipe.procs > 1:  # torchrun's ranks, each with one slot's threads (and GPU): never a warm worker
        argv = (host.python, f"{host.runners}/ddp_launch.py", str(recipe.procs))
    warm = None
    if recipe.model is not None and recipe.procs == 1:  # the worker serves many attempts: no attempt's own variables
        warm = {"slot_dir": host.slot_dir(allocation.slot), "model": recipe.model,
                "argv": [host.python, f"{host.runners}/worker.py"],
                "env": {k: v for k, v in env.items() if not k.startswith("COORD_")}}
    return LaunchPlan(recipe.number, attempt, adir, ckpt, spec, argv, env, host.cwd, recipe.timeout_s, warm)
