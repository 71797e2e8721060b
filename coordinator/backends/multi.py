"""One backend over several: each launch goes to the backend of its platform's
connection; all of them report on one shared event queue."""

from __future__ import annotations

import queue

from coordinator.backends.base import Backend, Event, Handle, drain
from coordinator.trial import Allocation, TrialSpec


class MultiBackend(Backend):
    def __init__(self, by_platform: dict[str, Backend], events: queue.Queue[Event]) -> None:
        self.by_platform = by_platform
        self.events = events

    def launch(self, spec: TrialSpec, allocation: Allocation) -> Handle:
        return self.by_platform[allocation.platform].launch(spec, allocation)

    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        self.by_platform[handle.allocation.platform].cancel(handle, reason)

    def stop(self, handle: Handle) -> None:
        self.by_platform[handle.allocation.platform].stop(handle)

    def close(self) -> None:
        for backend in {id(b): b for b in self.by_platform.values()}.values():
            backend.close()
