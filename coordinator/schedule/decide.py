"""Outcome classification and the retry policy (pure logic, no I/O)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum

from coordinator import protocol
from coordinator.records import Outcome, TrialStatus


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
    INTERRUPTED = "interrupted"  # the coordinator was stopped (Ctrl-C, SIGTERM): not a failure
    PREEMPTED = "preempted"  # the cluster signalled it (time limit, preemption); it checkpointed: not a failure


TRANSIENT = frozenset({Kind.REQUEUE, Kind.CRASHED, Kind.KILLED, Kind.OOM, Kind.LOST})
FREE = frozenset({Kind.MIGRATED, Kind.SEGMENT, Kind.INTERRUPTED, Kind.PREEMPTED})  # attempts that spend no retry
_OOM_MARKERS = ("MemoryError", "out of memory", "std::bad_alloc", "Cannot allocate memory")


def classify(outcome: Outcome, objective: tuple[str, ...], metrics: dict[str, float],
             stderr_tail: str = "") -> Kind:
    if outcome.timed_out:
        return Kind.TIMEOUT
    if outcome.exit_code == protocol.EXIT_OK and _reported(objective, metrics):
        return Kind.OK  # finished before a cancel reached it: a finished trial's outcome is its exit
    if outcome.cancelled:
        return Kind.CANCELLED
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


def _reported(objective: tuple[str, ...], metrics: dict[str, float]) -> bool:
    return all(m in metrics and math.isfinite(metrics[m]) for m in objective)


def end_kind(outcome: Outcome, objective: tuple[str, ...], metrics: dict[str, float], stderr_tail: str, *,
             prune_requested: bool, pruned_mark: bool, migrating: bool, segment: bool,
             interrupted: bool) -> Kind:
    """Why an attempt ended, from what it did and what the coordinator had asked of it.

    A prune only stands if the trial says it stopped early (``pruned_mark``, a built-in
    runner) or was stopped before it could exit 0 with its objective (a script is killed):
    a trial that trained to its end is complete, whatever the pruner decided too late (for
    instance while its output is replayed after a restart). ``interrupted``: this attempt
    was stopped by a coordinator that was interrupted; its end spends no retry."""
    kind = classify(outcome, objective, metrics, stderr_tail)
    if pruned_mark and outcome.exit_code == protocol.EXIT_OK:
        return Kind.PRUNED
    if prune_requested and kind != Kind.OK:
        return Kind.PRUNED
    if migrating and kind in (Kind.REQUEUE, Kind.KILLED):
        return Kind.MIGRATED
    if segment and kind == Kind.REQUEUE:
        return Kind.SEGMENT
    if interrupted and (kind in TRANSIENT or kind == Kind.CANCELLED):
        return Kind.INTERRUPTED
    if outcome.preempted and kind == Kind.REQUEUE:  # exit 75 after the cluster's warning signal
        return Kind.PREEMPTED
    return kind


def explain(kind: Kind, objective: tuple[str, ...], metrics: dict[str, float], stderr_tail: str,
            printed: tuple[str, ...] = (), timeout_s: float | None = None) -> str:
    """The error a failed trial is recorded with: its stderr tail, and for an attempt that
    exited 0 without a usable objective, what was expected and what it reported instead
    (``printed``: names in its output that look like metrics); for one stopped at its time
    limit (``timeout_s``), that it was (a stopped trial rarely says so on its stderr)."""
    if kind == Kind.TIMEOUT:
        limit = f" after {timeout_s:g} s (--trial-timeout)" if timeout_s else ""
        return f"timed out: stopped{limit}\n{stderr_tail}".rstrip()
    if kind not in (Kind.NO_METRIC, Kind.NOT_FINITE):
        return stderr_tail
    names = [k for k in metrics if k != "step"] + [n for n in printed if n not in metrics]
    seen = ", ".join(names) or "no metric at all"
    if kind == Kind.NO_METRIC:
        missing = ", ".join(m for m in objective if m not in metrics)
        why = (f"the trial exited 0 without reporting {missing}; it reported: {seen}. Print "
               f"'[coord-metric] {{\"{objective[0]}\": VALUE}}' or '{objective[0]}: VALUE' on stdout, "
               "or name the metric it prints with --metric")
    else:
        bad = ", ".join(f"{m}={metrics[m]}" for m in objective if m in metrics and not math.isfinite(metrics[m]))
        why = f"the trial reported a value that is not a finite number: {bad}"
    return f"{why}\n{stderr_tail}".rstrip()


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


class Next(str, Enum):
    """What becomes of a trial once one of its attempts has ended."""

    CONTINUE = "continue"  # the same trial goes on at once, spending no retry (moved; a Ctrl-C's stop on resume)
    SEGMENT = "segment"  # PBT: the segment ended; the trial waits for its generation
    HOLD = "hold"  # the coordinator is stopping: left uncommitted for ``coord resume``
    RETRY = "retry"  # another attempt after ``delay_s``, on another host when there is one
    COMMIT = "commit"  # the trial's one terminal record


@dataclass(frozen=True)
class AfterAttempt:
    next: Next
    delay_s: float = 0.0
    avoid_host: bool = False  # the next attempt routes around the host this one ran on


def after_attempt(kind: Kind, counted_attempts: int, policy: RetryPolicy, *, stopping: bool,
                  interrupted: bool, pbt: bool) -> AfterAttempt:
    """The one place a trial's fate after an attempt is decided (the loop only acts on it).
    ``counted_attempts``: the attempts that spent the retry budget, this one included."""
    if kind in (Kind.MIGRATED, Kind.INTERRUPTED, Kind.PREEMPTED):
        return AfterAttempt(Next.CONTINUE, avoid_host=kind == Kind.MIGRATED)
    if kind == Kind.SEGMENT and pbt:
        return AfterAttempt(Next.SEGMENT)
    if interrupted and kind == Kind.CANCELLED:
        # resume re-attaches to the ended attempt and continues it (a built-in trial
        # checkpointed on SIGTERM and goes on from there)
        return AfterAttempt(Next.HOLD)
    delay = None if stopping else policy.delay(kind, counted_attempts)
    if delay is not None:
        return AfterAttempt(Next.RETRY, delay, avoid_host=True)
    return AfterAttempt(Next.COMMIT)
