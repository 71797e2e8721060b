"""Hosts shared with other searches (slot leases, backends/leasing.py and runners/leases.py),
as the loop sees them each turn: what the other searches hold goes into the router's ledger,
how many trials this search waits to place goes to each host's agent, and the trials a
preempting higher-priority search needs are stopped (checkpoint, requeue, no retry spent).
A mixin of the Coordinator (loop.py)."""

from __future__ import annotations

from collections.abc import Callable

from coordinator.backends.base import Backend
from coordinator.config.registry import Registry
from coordinator.schedule.plans import Limits, Pending, Running, StudyPlan
from coordinator.schedule.routing import Ledger
from coordinator.store.rundir import RunStore
from coordinator.tracking.tracker import Snapshot

PREEMPTED = "(preempted by a higher-priority search)"  # Running.migrating of a trial stopped for one


class SharedHosts:
    store: RunStore
    registry: Registry
    backend: Backend
    limits: Limits
    plans: list[StudyPlan]
    running: dict[str, Running]
    retry_queue: list[Pending]
    ledger: Ledger
    snap: Snapshot
    clock: Callable[[], float]
    stopping: bool
    ended_by: str | None

    def _share(self) -> None:
        """Take in what each shared host's agent last said; stop trials a preemption needs."""
        for platform, share in self.backend.shares().items():
            self.ledger.shared[platform] = share.others
            self.ledger.lease_gpus[platform] = share.gpus
            if share.yield_n <= 0:
                continue
            here = [r for r in self.running.values() if r.handle.allocation.platform == platform]
            owed = share.yield_n - sum(r.migrating == PREEMPTED for r in here)
            # the youngest first: the least work is set back (built-in trials resume from a checkpoint)
            for r in sorted((r for r in here if r.migrating is None), key=lambda r: -r.started)[:max(0, owed)]:
                r.migrating = PREEMPTED
                self.store.event("preempt", number=r.pending.number, attempt=r.pending.attempt, platform=platform,
                                 reason="a higher-priority search needs the slot")
                self.backend.cancel(r.handle, "migrate")

    def _publish_waiting(self) -> None:
        """How many trials this search could start now but has no slot for, told to the
        agents of the hosts its models may run on: their claims on slots that free up."""
        free_slots = max(0, self.limits.parallel - len(self.running))
        work = len(self.retry_queue) + (0 if self.stopping or self.ended_by is not None else
                                        sum(max(0, p.search.n_trials - p.asked) for p in self.plans))
        wanted = min(free_slots, work) if self.snap.waiting_reason else 0
        hosts: set[str] = set()
        for plan in self.plans:
            hosts.update(c.platform for c in self.registry.candidates(plan.needs.model_type))
        self.backend.want({h: wanted for h in sorted(hosts)})
