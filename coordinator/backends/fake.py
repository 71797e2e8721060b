"""An in-memory backend on a virtual clock: scripted durations and outcomes, no processes.

For simulations at scales this machine cannot run (routing, retries, budgets) and for
unit tests of the loop that must not sleep. Time passes only when ``poll`` waits: it jumps
to the next scheduled end. Never the only proof that a feature works with real trials.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent
from coordinator.backends.hostwatch import HostSample
from coordinator.records import Allocation, Outcome, Recipe


class VirtualClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance_to(self, t: float) -> None:
        self.now = max(self.now, t)


@dataclass(frozen=True)
class Script:
    """What one attempt does: how long it runs, how it exits, what it reports."""

    duration_s: float
    exit_code: int | None = 0
    metrics: dict[str, float] | None = None
    steps: tuple[tuple[float, dict[str, float]], ...] = ()  # (seconds after the start, report)
    timed_out: bool = False  # stopped at the trial's time limit


class FakeBackend(Backend):
    """Runs nothing; each attempt ends after ``script(recipe, attempt, allocation).duration_s`` of
    virtual time with that script's exit code and metrics."""

    def __init__(self, clock: VirtualClock, script: Callable[[Recipe, int, Allocation], Script]) -> None:
        self.clock = clock
        self.script = script
        self.heap: list[tuple[float, int, Handle, Script, float]] = []
        self.seq = itertools.count()
        self.cancelled: dict[str, str] = {}
        self.launched: list[tuple[float, Recipe, int, Allocation]] = []
        self.reports: list[tuple[float, int, str, Handle, dict[str, float]]] = []
        # what each host "says" at a virtual time (load, GPUs, power), for host conditions
        self.samples: Callable[[str, float], HostSample | None] = lambda platform, t: None

    def host_sample(self, platform: str) -> HostSample | None:
        return self.samples(platform, self.clock())

    def prepare(self, platform: str) -> None:
        """Nothing to connect to."""

    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle:
        handle = Handle(recipe.number, attempt, allocation)
        s = self.script(recipe, attempt, allocation)
        if recipe.timeout_s is not None and s.duration_s > recipe.timeout_s:  # the host stops it at its limit
            s = Script(recipe.timeout_s, None, None, tuple(st for st in s.steps if st[0] < recipe.timeout_s), True)
        self.launched.append((self.clock(), recipe, attempt, allocation))
        heapq.heappush(self.heap, (self.clock() + s.duration_s, next(self.seq), handle, s, self.clock()))
        for offset, values in s.steps:
            heapq.heappush(self.reports, (self.clock() + offset, next(self.seq), handle.key, handle, values))
        return handle

    def poll(self, timeout: float) -> list[Event]:
        t = min([q[0][0] for q in (self.heap, self.reports) if q], default=None)
        if t is None or t > self.clock() + timeout:
            self.clock.advance_to(self.clock() + timeout)
            return []
        self.clock.advance_to(t)
        out: list[Event] = []
        while self.reports and self.reports[0][0] <= t:
            _, _, _, handle, values = heapq.heappop(self.reports)
            out.append(MetricEvent(handle, dict(values)))
        while self.heap and self.heap[0][0] <= t:
            _, _, handle, s, started = heapq.heappop(self.heap)
            reason = self.cancelled.pop(handle.key, None)
            if s.metrics and reason is None:
                out.append(MetricEvent(handle, dict(s.metrics)))
            # a trial asked to move checkpoints and exits 75, as the built-in runners do
            code = s.exit_code if reason is None else 75 if reason == "migrate" else None
            out.append(EndEvent(handle, Outcome(exit_code=code, signal=None if code is not None else 9,
                                                cancelled=reason == "cancelled",
                                                timed_out=reason == "timeout" or (s.timed_out and reason is None),
                                                duration_s=t - started), t))
        return out

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        for i, (_, seq, h, s, started) in enumerate(self.heap):
            if h.key == handle.key:
                self.cancelled[handle.key] = reason
                self.reports = [r for r in self.reports if r[2] != handle.key]
                heapq.heapify(self.reports)
                self.heap[i] = (self.clock(), seq, h, s, started)  # ends now
                heapq.heapify(self.heap)
                return

    def close(self) -> None:
        for _, _, h, _, _ in list(self.heap):
            self.cancel(h)
