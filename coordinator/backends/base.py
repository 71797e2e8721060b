"""The Backend contract, shared by every way of running a trial.

- ``prepare(platform)`` makes a host ready (connect, upload, start its agent) or raises
  ``HostError``; pre-flight calls it for every platform before the first trial.
- ``launch(recipe, attempt, allocation) -> Handle`` starts one attempt of the trial whose
  location-free ``Recipe`` it is, and returns at once. The backend places it on its host
  (``backends/plan.py``: the spec file, argv, environment); the parameters travel in the
  spec file, never on a command line.
- ``poll(timeout) -> events`` blocks at most ``timeout`` seconds and returns every
  event that arrived: ``MetricEvent`` for each metric line, then exactly one
  ``EndEvent`` per launched handle (also after ``cancel``).
- ``cancel(handle, reason)`` kills the attempt's whole process tree; its ``EndEvent``
  carries ``cancelled`` or ``timed_out``.
- ``close()`` kills whatever is still running and releases every resource; idempotent.
- ``detach()`` lets go without killing: the coordinator stops as a crash would (a full
  disk), the trials go on, and ``coord resume`` re-attaches to them.
- ``host_sample(platform)``: the latest facts sampled on its host (None: none), never blocking.
- ``disk_full()``: the first full disk a background thread met writing a local copy; the
  loop checks it each turn and stops on it.
- ``shares()`` / ``want(waiting)``: slot leases, where hosts are shared with other
  searches (``leasing.py``): what each host's agent says this run may use there, and how
  many trials the run waits to place on each. A launch whose slot another search took
  first raises ``SlotTaken`` (nothing started). Backends whose scheduler shares the
  machines (SLURM, Kubernetes) have none.

Events are values; the backend never touches the search or the store.
"""

from __future__ import annotations

import abc
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.backends.hostwatch import HostSample
from coordinator.backends.leasing import Share
from coordinator.errors import DiskFull
from coordinator.records import Allocation, Outcome, Recipe


@dataclass(frozen=True)
class Handle:
    number: int
    attempt: int
    allocation: Allocation

    @property
    def key(self) -> str:
        return f"{self.number}.{self.attempt}"


@dataclass(frozen=True)
class MetricEvent:
    handle: Handle
    values: dict[str, float]


@dataclass(frozen=True)
class EndEvent:
    handle: Handle
    outcome: Outcome
    mono: float  # time.monotonic() when the end was seen: the moment the slot freed


Event = MetricEvent | EndEvent


PRUNE_GRACE_S = 15.0  # a built-in runner checks for a stop request between steps; then it is killed


def later(seconds: float, fn: Callable[[], object]) -> None:
    """Run ``fn`` once after ``seconds`` on a daemon timer (kill fallbacks never block exit)."""
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()


def drain(events: queue.Queue[Event], timeout: float) -> list[Event]:
    """Wait up to ``timeout`` for the first event, then take every event already queued:
    the loop wakes the moment a trial prints or ends, and handles a burst in one turn."""
    out: list[Event] = []
    try:
        out.append(events.get(timeout=max(0.0, timeout)))
        while True:
            out.append(events.get_nowait())
    except queue.Empty:
        pass
    return out


class Backend(abc.ABC):
    """How trials run. See the module docstring for the contract."""

    _disk_full: DiskFull | None = None

    @abc.abstractmethod
    def prepare(self, platform: str) -> None:
        """Make ``platform`` ready to launch on, or raise HostError. Idempotent."""

    @abc.abstractmethod
    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle: ...

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[Event]: ...

    @abc.abstractmethod
    def cancel(self, handle: Handle, reason: str = "cancelled") -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def detach(self) -> None:
        """Let go of the running trials without stopping them. A backend whose trials
        cannot outlive the coordinator can only stop them."""
        self.close()

    def disk_full(self) -> DiskFull | None:
        return self._disk_full

    def _note_disk_full(self, full: DiskFull | None) -> None:
        if full is not None and self._disk_full is None:  # the first names the file
            self._disk_full = full

    def shares(self) -> dict[str, Share]:
        return {}

    def want(self, waiting: dict[str, int]) -> None:
        return None

    def host_sample(self, platform: str) -> HostSample | None:
        """The latest facts sampled on the platform's host (load, GPUs, power;
        backends/hostwatch.py), or None: not sampled (yet). Never blocks."""
        return None

    def stop(self, handle: Handle) -> None:
        """Ask an attempt to stop early (pruned). Built-in runners stop at their next step;
        by default, and for scripts that cannot be asked, it is cancelled."""
        self.cancel(handle, "pruned")

    def proceed(self, handle: Handle, step: int) -> None:
        """The pruner let the attempt go on past the rung at ``step`` (a built-in runner waits
        for this answer there). Nothing to do for backends whose trials do not wait."""
        return None

    def discard(self, number: int, platforms: set[str]) -> None:
        """A trial ended: delete its checkpoint copies on these hosts (the run directory
        keeps what is worth keeping). Nothing to do where trials write to the run directory."""
        return None

    def _cancel_unless_ended(self, handle: Handle, running: Callable[[], bool]) -> None:
        """After the stop request's grace period, cancel the attempt if it is still running."""
        def fire() -> None:
            if running():
                self.cancel(handle, "pruned")
        later(PRUNE_GRACE_S, fire)
