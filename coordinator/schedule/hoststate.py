"""Which hosts the router may use right now, and why not the others.

- *down*: failed in a way that may mend by itself (unreachable, a lost connection); probed
  again after ``--host-retry`` seconds with the next trial;
- *quarantined*: a person must act (an unknown or changed host key, a refused login);
  for the rest of the run;
- *incapable* of one model type (its Python lacks the model's library): the host still
  runs the other models.

It also keeps what the pre-flight probe found on each host (``facts``), for the provenance
of every result that host makes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from coordinator.errors import AuthError, HostError, HostKeyError

log = logging.getLogger("coordinator.schedule.loop")


class HostState:
    def __init__(self, clock: Callable[[], float], retry_s: float, event: Callable[..., None]) -> None:
        self.clock, self.retry_s, self.event = clock, retry_s, event
        self.down: dict[str, float] = {}  # platform -> monotonic time it may be tried again
        self.quarantined: dict[str, str] = {}  # platform -> why
        self.incapable: dict[tuple[str, str], str] = {}  # (model type, platform) -> why
        self._facts: dict[str, Callable[[], dict[str, Any] | None]] = {}

    def note_facts(self, platform: str, facts: Callable[[], dict[str, Any] | None]) -> None:
        """What the probe of ``platform`` found, as a function: a probe still running in the
        background (the local host's) is waited for by the first result that needs it."""
        self._facts[platform] = facts

    def facts(self, platform: str) -> dict[str, Any] | None:
        get = self._facts.get(platform)
        try:
            return get() if get is not None else None
        except Exception as exc:  # provenance is never worth a trial: the result says it is missing
            log.debug("no facts for %s: %s", platform, exc)
            return None

    def failed(self, platform: str, exc: HostError | str) -> None:
        reason = str(exc)
        if isinstance(exc, (HostKeyError, AuthError)):
            self.quarantined[platform] = reason
            self.event("host_quarantined", platform=platform, reason=reason)
        else:
            self.down[platform] = self.clock() + self.retry_s
            self.event("host_down", platform=platform, reason=reason, retry_in_s=self.retry_s)
        log.warning("%s", reason)

    def mark_incapable(self, model_type: str, platform: str, why: str, **fields: Any) -> None:
        self.incapable[(model_type, platform)] = why
        self.event("host_incapable", platform=platform, reason=why, **fields)
        log.warning("%s", why)

    def down_now(self) -> set[str]:
        """Hosts still down; one whose wait is over is dropped (probed with the next trial)."""
        now = self.clock()
        for platform in [p for p, until in self.down.items() if until <= now]:
            del self.down[platform]
            self.event("host_probe", platform=platform)
        return set(self.down)

    def refused(self, model_type: str) -> dict[str, str]:
        """Hosts a trial of ``model_type`` must not go to (not counting those down), with why."""
        return {**self.quarantined, **{p: why for (m, p), why in self.incapable.items() if m == model_type}}
