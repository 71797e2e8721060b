"""Several backends behind one: a run whose registry mixes connections (local and SSH hosts
through the agent backend, a SLURM cluster through its own) gets one backend per kind, and
the fleet sends each call to the backend that owns the attempt's platform."""

from __future__ import annotations

import time

from coordinator.backends.base import Backend, Event, Handle
from coordinator.backends.hostwatch import HostSample
from coordinator.backends.leasing import Share
from coordinator.errors import DiskFull
from coordinator.records import Allocation, Recipe

POLL_STEP_S = 0.05  # how often the fleet looks at its members while waiting for an event


class FleetBackend(Backend):
    def __init__(self, members: dict[str, Backend]) -> None:
        """``members``: platform key -> the backend that runs it (one backend may own many)."""
        self.by_platform = members
        self.members = list(dict.fromkeys(members.values()))

    def prepare(self, platform: str) -> None:
        self.by_platform[platform].prepare(platform)

    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle:
        return self.by_platform[allocation.platform].launch(recipe, attempt, allocation)

    def poll(self, timeout: float) -> list[Event]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            out = [e for b in self.members for e in b.poll(0)]
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(POLL_STEP_S, max(0.0, deadline - time.monotonic())))

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        self.by_platform[handle.allocation.platform].cancel(handle, reason)

    def stop(self, handle: Handle) -> None:
        self.by_platform[handle.allocation.platform].stop(handle)

    def proceed(self, handle: Handle, step: int) -> None:
        self.by_platform[handle.allocation.platform].proceed(handle, step)

    def discard(self, number: int, platforms: set[str]) -> None:
        for b in self.members:
            b.discard(number, {p for p in platforms if self.by_platform.get(p) is b})

    def shares(self) -> dict[str, Share]:
        return {k: s for b in self.members for k, s in b.shares().items()}

    def want(self, waiting: dict[str, int]) -> None:
        for b in self.members:
            b.want({k: n for k, n in waiting.items() if self.by_platform.get(k) is b})

    def host_sample(self, platform: str) -> HostSample | None:
        return self.by_platform[platform].host_sample(platform)

    def disk_full(self) -> DiskFull | None:
        return next((d for b in self.members if (d := b.disk_full()) is not None), None)

    def detach(self) -> None:
        for b in self.members:
            b.detach()

    def close(self) -> None:
        for b in self.members:
            b.close()
