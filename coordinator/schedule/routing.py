"""The Router decides *where* a trial runs. It is pure: given the registry, what is busy
and which hosts are down, it returns a decision value; only the loop acts on it.

It tells the two ways of not placing a trial apart: ``Infeasible`` (no candidate could
ever run it: fail fast and say why) and ``Busy`` (they could, but not now: wait).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from coordinator.config.registry import Platform, Registry, never_fits
from coordinator.records import Allocation, Needs
from coordinator.reporting.fmt import plural
from coordinator.schedule.speed import Estimate


@dataclass(frozen=True)
class Busy:
    reason: str


@dataclass(frozen=True)
class Infeasible:
    reasons: dict[str, str]


Decision = Allocation | Busy | Infeasible
WAIT_MARGIN = 0.2  # a busy host must promise to finish this much sooner than a free one


@dataclass
class Ledger:
    """Which slots are taken, and how much memory each platform has promised away."""

    slots: dict[str, dict[int, int]] = field(default_factory=dict)  # platform -> slot -> trial number
    memory: dict[str, float] = field(default_factory=dict)
    foreign_gpus: dict[str, set[int]] = field(default_factory=dict)  # GPUs other users' jobs occupy
    # slot leases (backends/leasing.py): slots and GPUs other searches hold (or are owed) per platform
    shared: dict[str, int] = field(default_factory=dict)
    lease_gpus: dict[str, frozenset[int]] = field(default_factory=dict)

    def take(self, alloc: Allocation, number: int, memory_gb: float) -> None:
        taken = self.slots.setdefault(alloc.platform, {})
        for slot in alloc.slots:  # a trial of several processes holds one slot per process
            if slot in taken:
                raise RuntimeError(f"slot {alloc.platform}/{slot} already holds trial {taken[slot]}")
        for slot in alloc.slots:
            taken[slot] = number
        self.memory[alloc.platform] = self.memory.get(alloc.platform, 0.0) + memory_gb

    def release(self, alloc: Allocation, memory_gb: float) -> None:
        for slot in alloc.slots:
            self.slots.get(alloc.platform, {}).pop(slot, None)
        self.memory[alloc.platform] = max(0.0, self.memory.get(alloc.platform, 0.0) - memory_gb)

    def busy(self, platform: str) -> int:
        return len(self.slots.get(platform, {}))

    def gpus_elsewhere(self, platform: str) -> set[int]:
        """GPUs no trial of this run may take: other users' processes, other searches' trials."""
        return self.foreign_gpus.get(platform, set()) | self.lease_gpus.get(platform, frozenset())


def _free_slots(p: Platform, needs: Needs, ledger: Ledger) -> list[int] | None:
    """The slots a trial takes: one, or (``procs``) one per process, each on a GPU of its
    own when it asks for GPUs, else CPU slots only (a GPU slot's GPU would sit idle).
    A SLURM job is one slot whatever it holds (its job script asks for every process)."""
    if needs.procs <= 1 or p.slurm is not None:
        slot = _free_slot(p, needs, ledger)
        return None if slot is None else [slot]
    taken = ledger.slots.get(p.key, {})
    if needs.gpus_per_proc == 0:
        free = [s for s in range(p.gpu_slots, p.max_concurrent_jobs) if s not in taken]
        return free[:needs.procs] if len(free) >= needs.procs else None
    foreign = ledger.gpus_elsewhere(p.key)
    busy_gpus = {g.index for s in taken if (g := p.slot_gpu(s)) is not None}
    chosen: dict[int, int] = {}  # GPU -> slot: processes never share a GPU, nor with another trial
    for s in range(p.gpu_slots):
        gpu = p.slot_gpu(s)
        if s not in taken and gpu is not None and gpu.index not in foreign | busy_gpus:
            chosen.setdefault(gpu.index, s)
    slots = list(chosen.values())
    return slots[:needs.procs] if len(slots) >= needs.procs else None


def _allocation(p: Platform, needs: Needs, slots: list[int], reason: str, fallback: bool) -> Allocation:
    cpu_only = needs.procs > 1 and needs.gpus_per_proc == 0  # gloo on the CPU, also on a GPU job
    gpus = [] if cpu_only else [g.index for s in slots if (g := p.slot_gpu(s)) is not None]
    return Allocation(p.key, slots[0], gpus[0] if gpus else None, reason, fallback,
                      tuple(slots[1:]), tuple(gpus[1:]) if p.slurm is None else ())


def _free_slot(p: Platform, needs: Needs, ledger: Ledger) -> int | None:
    taken = ledger.slots.get(p.key, {})
    foreign = ledger.gpus_elsewhere(p.key)
    gpu_slots = [s for s in range(p.gpu_slots) if s not in taken
                 and (gpu := p.slot_gpu(s)) is not None and gpu.index not in foreign]
    cpu_slots = [s for s in range(p.gpu_slots, p.max_concurrent_jobs) if s not in taken]
    if needs.gpu == "required":
        order = gpu_slots
    elif needs.gpu == "preferred":
        order = gpu_slots + cpu_slots
    else:  # keep GPU slots for the models that use them while a CPU slot is free
        order = cpu_slots + gpu_slots
    return order[0] if order else None


def route(needs: Needs, registry: Registry, ledger: Ledger, down: Collection[str] = (),
          runnable: Collection[str] | None = None, avoid: Collection[str] = (),
          quarantined: Mapping[str, str] | None = None, estimates: Mapping[str, Estimate] | None = None) -> Decision:
    """Choose a slot for a trial.

    Candidates come from the model type's rule, in order; when the registry allows it, any
    other local platform is a last fallback. ``avoid`` (e.g. the host a failed attempt ran
    on) moves those platforms to the end rather than excluding them. ``runnable`` limits
    platforms to connections a backend exists for. ``quarantined`` platforms (a bad host
    key, refused authentication: a person must act) count as infeasible, with the reason.
    """
    options = registry.candidates(needs.model_type)
    names = [c.platform for c in options]
    reasons = {c.platform: c.reason for c in options}
    preferred = names[0] if names else None
    names = [n for n in names if n not in avoid] + [n for n in names if n in avoid]
    infeasible: dict[str, str] = {}
    waiting: list[str] = []
    free: list[Allocation] = []
    usable: list[str] = []
    for name in names:
        p = registry.platforms[name]
        why = never_fits(p, needs)
        if why is None and runnable is not None and p.connection not in runnable:
            why = f"connection {p.connection!r} is not supported by this version"
        if why is None and quarantined and name in quarantined:
            why = quarantined[name]
        if why:
            infeasible[name] = why
            continue
        if name in down:
            waiting.append(f"{name} is down")
            continue
        usable.append(name)
        if ledger.memory.get(name, 0.0) + needs.memory_gb > p.specs.memory_gb:
            waiting.append(f"{name} has no free memory")
            continue
        slots = _free_slots(p, needs, ledger)
        others = ledger.shared.get(name, 0)
        if slots is not None and others and ledger.busy(name) + others + len(slots) > p.max_concurrent_jobs:
            waiting.append(f"{name} is full ({plural(p.max_concurrent_jobs, 'slot')}, "
                           f"{others} held by other searches)")
            continue
        if slots is None:
            room = f"has too few free slots for {needs.procs} processes" if needs.procs > 1 else "is full"
            waiting.append(f"{name} {room} ({plural(p.max_concurrent_jobs, 'slot')})")
            continue
        free.append(_allocation(p, needs, slots, reasons[name], fallback=name != preferred))
    if free and (not estimates or any(n not in estimates for n in usable)):
        return free[0]  # static order (also while speeds are still being learned)
    if free and estimates is not None:
        candidates = [n for n in usable if n in estimates and n not in avoid] or \
            [n for n in usable if n in estimates]
        order = sorted(candidates, key=lambda n: (estimates[n].finish_s, names.index(n)))
        free_by_name = {a.platform: a for a in free}
        best_free = next((n for n in order if n in free_by_name), None)
        best = order[0]
        # wait for a busy host only when it is clearly better: noise between equal hosts
        # must never leave a free slot idle
        if best_free is not None and (best == best_free or estimates[best].finish_s >
                                      (1 - WAIT_MARGIN) * estimates[best_free].finish_s):
            chosen = free_by_name[best_free]
            return Allocation(chosen.platform, chosen.slot, chosen.gpu,
                              f"{chosen.reason}; expected to finish first ({estimates[best_free].finish_s:.1f}s)",
                              chosen.fallback, chosen.extra_slots, chosen.extra_gpus)
        return Busy(f"waiting for {best}: expected to finish sooner there "
                    f"({estimates[best].finish_s:.1f}s) than on a free slot elsewhere")
    if not waiting:
        return Infeasible(infeasible)
    return Busy("; ".join(waiting))


def plan_lines(registry: Registry, needs: Needs) -> list[str]:
    """Human-readable plan for one model type: candidates, slots and why."""
    lines = []
    # columns as wide as the longest name and connection (kubernetes, slurm): they line up
    wn, wc = (max([n, *(len(x) for x in xs)]) for n, xs in (
        (16, registry.platforms), (6, (p.connection for p in registry.platforms.values()))))
    for i, c in enumerate(registry.candidates(needs.model_type)):
        name, reason, p = c.platform, c.reason, registry.platforms[c.platform]
        role = "preferred" if i == 0 else f"fallback {i}"
        why = never_fits(p, needs)
        state = f"never: {why}" if why else (
            plural(p.max_concurrent_jobs, "slot") + (f" ({p.gpu_slots} with GPU)" if p.gpu_slots else ""))
        lines.append(f"  {role:<11} {name:<{wn}} {p.connection:<{wc}} {state}  -- {reason}")
    return lines
