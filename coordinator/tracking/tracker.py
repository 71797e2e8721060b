"""Tracker callbacks with no-op defaults. Progress display, JSON events and (later)
MLflow implement them; a tracker's failure is logged and never loses a trial."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coordinator.records import Result, TrialStatus

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """The state of a search, as shown to a person."""

    total: int
    complete: int = 0
    failed: int = 0
    cancelled: int = 0
    pruned: int = 0
    running: int = 0
    retries: int = 0
    best_value: float | None = None
    best_number: int | None = None
    metric: str = ""
    busy: dict[str, tuple[int, int]] = field(default_factory=dict)  # platform -> (busy, slots)
    gpu: dict[str, tuple[float | None, ...]] = field(default_factory=dict)  # platform -> % per GPU (nvidia-smi)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    waiting_reason: str = ""
    used: str = ""  # machine-hours, GPU-hours and cost so far (store/usage.py)

    @property
    def done(self) -> int:
        return self.complete + self.failed + self.cancelled + self.pruned

    def add(self, result: Result, better: Callable[[float, float], bool]) -> None:
        """Count one committed result (also one a resumed coordinator finds on disk)."""
        status, value = result.status, result.value
        if status == TrialStatus.COMPLETE:
            self.complete += 1
            if value is not None and (self.best_value is None or better(value, self.best_value)):
                self.best_value, self.best_number = value, result.number
        elif status == TrialStatus.CANCELLED:
            self.cancelled += 1
        elif status == TrialStatus.PRUNED:
            self.pruned += 1
        else:
            self.failed += 1


class Tracker:
    def on_search_start(self, info: dict[str, Any]) -> None: ...
    def on_trial_start(self, number: int, info: dict[str, Any]) -> None: ...
    def on_report(self, number: int, values: dict[str, float]) -> None: ...
    def on_trial_end(self, result: Result) -> None: ...
    def on_tick(self, snap: Snapshot) -> None: ...
    def on_search_end(self, summary: dict[str, Any]) -> None: ...
    def on_alert(self, kind: str, info: dict[str, Any]) -> None: ...  # host down, a budget nearly spent
    def close(self) -> None: ...


class Trackers(Tracker):
    """Fans out to several trackers; isolates their failures."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def _each(self, method: str, *args: Any) -> None:
        for t in self.trackers:
            try:
                getattr(t, method)(*args)
            except Exception:
                log.warning("tracker %s failed in %s", type(t).__name__, method, exc_info=True)

    def on_search_start(self, info: dict[str, Any]) -> None:
        self._each("on_search_start", info)

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None:
        self._each("on_trial_start", number, info)

    def on_report(self, number: int, values: dict[str, float]) -> None:
        self._each("on_report", number, values)

    def on_trial_end(self, result: Result) -> None:
        self._each("on_trial_end", result)

    def on_tick(self, snap: Snapshot) -> None:
        self._each("on_tick", snap)

    def on_search_end(self, summary: dict[str, Any]) -> None:
        self._each("on_search_end", summary)

    def on_alert(self, kind: str, info: dict[str, Any]) -> None:
        self._each("on_alert", kind, info)

    def close(self) -> None:
        self._each("close")
