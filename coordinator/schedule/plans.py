"""The loop's value types: the searches of a run, trials waiting for a slot, attempts
running on one, and the run's limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coordinator.backends.base import Handle
from coordinator.records import AttemptRecord, Needs
from coordinator.schedule.budget import Budget
from coordinator.schedule.decide import FREE, Kind
from coordinator.search import Decisions, Search

DOWN_S = 30.0  # a host that failed is tried again after this long (the next launch is the probe)


@dataclass
class StudyPlan:
    """One search within the run, with what its trials need and how they run."""

    search: Search
    needs: Needs
    model: str | None  # built-in runner name, or None for a user command
    command: tuple[str, ...] | None
    data: dict[str, Any] | None
    seed: int
    asked: int = 0
    promote_step: int | None = None  # a trial that reaches it passed the first rung: it may move
    decisions: Decisions = Decisions()  # where the pruner decides; built-in runners wait there for it
    compare: dict[str, Any] | None = None  # a comparison job's ``compare`` object (coord compare)
    job_seed: int | None = None  # a comparison job's own seed: the same for every model, so seeds pair up

    def trial_seed(self, number: int) -> int:
        """Trial ``number``'s seed (its model's and, for built-in runners, its folds' shuffle):
        the one place it is derived, so a resume and a rerun derive the same."""
        return self.job_seed if self.job_seed is not None else self.seed + number


def history_entry(attempt: int, where: dict[str, Any], ended: dict[str, Any] | None) -> AttemptRecord:
    """One attempt in a trial's ``attempts`` list: where it ran (an allocation) and how it
    ended (an ``ended`` event's fields); an attempt with no end on record was lost."""
    return AttemptRecord(attempt, where["platform"], int(where["slot"]), where.get("gpu"),
                         ended["kind"] if ended else Kind.LOST.value,
                         ended.get("exit_code") if ended else None,
                         float(ended.get("duration_s") or 0.0) if ended else 0.0)


@dataclass
class Pending:
    """A trial waiting for a slot: its next attempt, and what its earlier attempts did."""

    number: int
    attempt: int
    plan: StudyPlan
    optuna_number: int
    params: dict[str, Any]
    not_before: float = 0.0
    avoid: frozenset[str] = frozenset()
    history: list[AttemptRecord] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)  # PBT exploits, in order

    @property
    def migrations(self) -> int:
        """Attempts that ended by moving to a faster host: they spend no retry."""
        return sum(h.kind == Kind.MIGRATED for h in self.history)

    @property
    def free_attempts(self) -> int:
        """Attempts that spend no retry: moves, PBT segments, and coordinator interruptions."""
        return sum(Kind(h.kind) in FREE for h in self.history)


@dataclass
class Running:
    """An attempt on a slot, with the metrics it has reported so far."""

    pending: Pending
    handle: Handle
    started: float
    deadline: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    control: dict[str, float] = field(default_factory=dict)  # protocol.CONTROL_KEYS it reported
    pruned: bool = False  # the pruner said stop; the end is PRUNED unless the trial finished anyway
    interrupted: bool = False  # a re-attached attempt an interrupted coordinator had stopped
    last_step: int | None = None  # the step of its latest report
    migrating: str | None = None  # asked to checkpoint and move to this faster platform


@dataclass
class Limits:
    """How much runs at once, for how long, and how often a built-in trial checkpoints."""

    parallel: int
    timeout_s: float | None = None  # stop starting new trials after this
    trial_timeout_s: float | None = None
    host_retry_s: float = DOWN_S  # a down host is probed again after this long
    checkpoint_every_s: float = 30.0
    budget: Budget = field(default_factory=Budget)  # cost, machine-/GPU-hours, a goal (schedule/budget.py)
