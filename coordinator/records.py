"""Value types shared by the router, the loop, the backends and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TrialStatus(str, Enum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    PRUNED = "PRUNED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self not in (TrialStatus.WAITING, TrialStatus.RUNNING)


@dataclass(frozen=True)
class Needs:
    """What one trial needs from a slot."""

    model_type: str
    memory_gb: float = 0.5
    gpu: str = "none"  # none | preferred | required
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """Where a trial runs: one slot of one platform, and why it was chosen."""

    platform: str
    slot: int
    gpu: int | None
    reason: str
    fallback: bool = False


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial attempt needs; written as ``spec.json`` for the trial side.

    ``number`` is the run-wide trial number, the one name of a trial everywhere.
    """

    number: int
    attempt: int
    study: str
    params: dict[str, Any]
    seed: int
    model: str | None  # built-in model name, or None for a user command
    command: tuple[str, ...] | None
    data: dict[str, Any] | None
    metrics: tuple[str, ...]
    checkpoint_dir: str
    attempt_dir: str
    threads: int = 1
    device: str = "cpu"
    checkpoint_every_s: float = 30.0  # built-in runners: seconds between checkpoints (and one at the end)
    stop_at: int | None = None  # PBT: end this segment at this step (checkpoint, exit 75)
    timeout_s: float | None = None  # the attempt's limit on its own run time, enforced on its host
    decisions: dict[str, Any] | None = None  # where built-in runners wait for the pruner's answer

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "attempt": self.attempt, "study": self.study, "params": self.params,
            "seed": self.seed, "model": self.model, "command": list(self.command) if self.command else None,
            "data": self.data, "metrics": list(self.metrics), "checkpoint_dir": self.checkpoint_dir,
            "attempt_dir": self.attempt_dir, "threads": self.threads, "device": self.device,
            "checkpoint_every_s": self.checkpoint_every_s, "stop_at": self.stop_at, "timeout_s": self.timeout_s,
            "decisions": self.decisions,
        }


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, as the backend saw it."""

    exit_code: int | None  # None when killed by a signal
    signal: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    timed_out: bool = False
    cancelled: bool = False
    lost: bool = False  # the connection to the host was lost and the attempt could not be re-attached
    duration_s: float = 0.0
