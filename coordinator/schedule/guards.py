"""What may end a search or close a platform while it runs, checked by the loop each turn:
availability windows (config/windows.py), budgets and the goal (schedule/budget.py), and the
hosts' down events that --notify hears of. A mixin of the Coordinator (loop.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from coordinator.backends.base import Backend
from coordinator.config.registry import Registry
from coordinator.config.windows import open_at
from coordinator.schedule.hostgate import Gate
from coordinator.schedule.plans import Limits, Running, StudyPlan
from coordinator.store.rundir import RunStore
from coordinator.store.usage import Meter
from coordinator.tracking.tracker import Snapshot, Tracker


class Guards:
    store: RunStore
    registry: Registry
    backend: Backend
    tracker: Tracker
    limits: Limits
    plans: list[StudyPlan]
    running: dict[str, Running]
    snap: Snapshot
    meter: Meter
    clock: Callable[[], float]
    start: float
    wall0: float
    closed: set[str]
    gates: dict[str, Gate]
    ended_by: str | None
    hard_stopped: bool
    budget_warned: bool

    if TYPE_CHECKING:  # provided by Coordinator
        def _stop_running(self, why: str) -> None: ...

    def _windows(self) -> None:
        """A platform whose availability window closed, or whose host is not idle or not on
        AC power now (its conditions, schedule/hostgate.py), takes no new trial, and its
        running trials move (checkpoint, exit 75, go on elsewhere; no retry spent); one that
        opened takes trials again. Each change is an event."""
        now = self.wall0 + (self.clock() - self.start)
        why = {k: "window closed" for k, p in self.registry.platforms.items() if not open_at(p.available, now)}
        for k, gate in self._gates().items():
            if not gate.update(self.backend.host_sample(k)):
                why.setdefault(k, gate.why)
        self.snap.gpu = {k: s.gpu_util for k, p in self.registry.platforms.items()
                         if p.specs.gpus and (s := self.backend.host_sample(k)) is not None and s.gpu_util}
        closed = set(why)
        for platform in sorted(closed ^ self.closed):
            self.store.event("window_closed" if platform in closed else "window_opened", platform=platform,
                             **({"reason": why[platform]} if platform in why else {}))
        self.closed = closed
        for r in list(self.running.values()):
            if r.handle.allocation.platform in closed and r.migrating is None:
                r.migrating = "(window closed)"
                self.store.event("migrate", number=r.pending.number, source=r.handle.allocation.platform,
                                 target=None, reason=why[r.handle.allocation.platform], step=r.last_step)
                self.backend.cancel(r.handle, "migrate")

    def _gates(self) -> dict[str, Gate]:
        """One gate per platform with host conditions, made at the first turn."""
        gates: dict[str, Gate] | None = getattr(self, "gates", None)
        if gates is None:
            gates = self.gates = {k: Gate(p.when) for k, p in self.registry.platforms.items() if p.when is not None}
        return gates

    def _host_event(self, name: str, /, **fields: Any) -> None:
        self.store.event(name, **fields)
        if name in ("host_down", "host_quarantined"):  # --notify: a person may want to know
            self.tracker.on_alert("host_down", {"quarantined": name == "host_quarantined", **fields})

    def _check_budget(self) -> None:
        """A budget used up or the goal reached ends the search (with --hard, its running
        trials too); a trial that would overrun a budget is not started."""
        b, now = self.limits.budget, self.clock()
        use = self.meter.now((r.handle.allocation.platform, r.handle.allocation.gpu, now - r.started)
                             for r in self.running.values())
        search = self.plans[0].search
        ended = b.goal_reached(self.snap.best_value, search.directions[0] == "maximize", search.metrics[0],
                               self.snap.best_number) or b.spent(use)
        if not self.budget_warned and (nearly := b.nearly(use)) is not None:
            self.budget_warned = True
            self.tracker.on_alert("budget", {"message": nearly, "used": use.to_json()})
        why = ended or b.would_overrun(use, self.meter.done)
        if why is None:
            return
        self.ended_by = why
        self.store.event("budget_reached", reason=why, hard=b.hard and ended is not None)
        if b.hard and ended is not None and self.running:
            self._stop_running("budget")
            self.hard_stopped = True
