"""Outcome classification and the retry policy (pure logic, no I/O)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum

from coordinator import protocol
from coordinator.trial import Outcome, TrialStatus


class Kind(str, Enum):
    """Why an attempt ended. Only the transient kinds are retried."""

    OK = "ok"
    REQUEUE = "requeue"  # exit 75: the trial asked to be run again
    CRASHED = "crashed"  # non-zero exit that may pass on a retry
    KILLED = "killed"  # a signal we did not send
    OOM = "out_of_memory"
    TIMEOUT = "timeout"
    PERMANENT = "permanent"  # bad parameters, missing data or library: fails again
    NO_METRIC = "no_metric"  # exited 0 without reporting the objective
    NOT_FINITE = "not_finite"  # the objective was NaN or infinite
    CANCELLED = "cancelled"
    LOST = "connection_lost"  # host or connection died: retry, preferably elsewhere
    PRUNED = "pruned"  # stopped early by the pruner: not a failure, never retried
    MIGRATED = "migrated"  # checkpointed and stopped to go on on a faster host: not a failure
    SEGMENT = "segment"  # PBT: a segment ended (checkpointed); the trial waits for its generation


TRANSIENT = frozenset({Kind.REQUEUE, Kind.CRASHED, Kind.KILLED, Kind.OOM, Kind.LOST})
_OOM_MARKERS = ("MemoryError", "out of memory", "std::bad_alloc", "Cannot allocate memory")


def classify(outcome: Outcome, objective: tuple[str, ...], metrics: dict[str, float],
             stderr_tail: str = "") -> Kind:
    if outcome.cancelled:
        return Kind.CANCELLED
    if outcome.timed_out:
        return Kind.TIMEOUT
    if outcome.lost:
        return Kind.LOST
    if outcome.exit_code == protocol.EXIT_OK:
        if any(m not in metrics for m in objective):
            return Kind.NO_METRIC
        if any(not math.isfinite(metrics[m]) for m in objective):
            return Kind.NOT_FINITE
        return Kind.OK
    if any(marker in stderr_tail for marker in _OOM_MARKERS):
        return Kind.OOM
    if outcome.exit_code is None:
        return Kind.KILLED
    if outcome.exit_code == protocol.EXIT_REQUEUE:
        return Kind.REQUEUE
    if outcome.exit_code in protocol.PERMANENT_EXIT_CODES:
        return Kind.PERMANENT
    return Kind.CRASHED


def final_status(kind: Kind) -> TrialStatus:
    if kind == Kind.OK:
        return TrialStatus.COMPLETE
    if kind == Kind.CANCELLED:
        return TrialStatus.CANCELLED
    if kind == Kind.PRUNED:
        return TrialStatus.PRUNED
    return TrialStatus.FAILED


@dataclass
class RetryPolicy:
    """At most ``1 + max_retries`` attempts; exponential backoff with full jitter,
    capped. A requeue (exit 75) goes again at once: the trial saved its state."""

    max_retries: int = 3
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    rng: random.Random | None = None

    def delay(self, kind: Kind, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: do not retry."""
        if kind not in TRANSIENT or attempt >= 1 + self.max_retries:
            return None
        if kind == Kind.REQUEUE:
            return 0.0
        ceiling = min(self.cap_s, self.base_s * self.factor ** (attempt - 1))
        return (self.rng or random).uniform(ceiling / 2, ceiling)
