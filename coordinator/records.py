"""The typed, versioned values that cross module boundaries, and the run directory's schema.

What a trial is and what became of it travels as these frozen values, never as a dict built
in place: the run store writes and reads only these (``to_json`` / ``from_json``), the loop
and the trackers receive them, and the reports are built from them.

- ``Recipe``: a trial attempt's location-free recipe (what to train, with which parameters,
  seeds, data by sha256, budget). A backend turns recipe + allocation + its host's layout
  into a launch plan (``backends/plan.py``); an exact rerun starts again from the recipe.
- ``AttemptRecord``: where one attempt ran and how it ended.
- ``TrialInfo`` (``trial.json``, written when a trial is asked) and ``Result``
  (``result.json``, the one committed terminal record).

``SCHEMA`` is the run directory's format (``run.json``'s ``format``). Format 1, written
before these records existed, has the same fields (fewer of them), so it is read as it is;
a format this version does not know is refused with one line (``RunStore.open``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

SCHEMA = 2
KNOWN_SCHEMAS = (1, 2)


class TrialStatus(str, Enum):
    """A trial's state. The first two and UNFINISHED are not terminal; UNFINISHED is what a
    report calls a trial with no result whose coordinator is gone (``coord resume`` goes on)."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    PRUNED = "PRUNED"
    CANCELLED = "CANCELLED"
    UNFINISHED = "UNFINISHED"

    @property
    def terminal(self) -> bool:
        return self not in (TrialStatus.WAITING, TrialStatus.RUNNING, TrialStatus.UNFINISHED)


@dataclass(frozen=True)
class Needs:
    """What one trial needs from a slot."""

    model_type: str
    memory_gb: float = 0.5
    gpu: str = "none"  # none | preferred | required
    capabilities: tuple[str, ...] = ()
    procs: int = 1  # processes of one trial (torch DDP under torchrun); each takes one slot
    gpus_per_proc: int = 0  # 1: every process has a GPU of its own (NCCL); 0: CPU processes (gloo)


@dataclass(frozen=True)
class Allocation:
    """Where a trial runs: one slot of one platform, and why it was chosen."""

    platform: str
    slot: int
    gpu: int | None
    reason: str
    fallback: bool = False
    extra_slots: tuple[int, ...] = ()  # a trial of several processes: the other slots it holds
    extra_gpus: tuple[int, ...] = ()  # and their GPUs (one per process)

    @property
    def slots(self) -> tuple[int, ...]:
        return (self.slot, *self.extra_slots)

    @property
    def gpus(self) -> tuple[int, ...]:
        return () if self.gpu is None else (self.gpu, *self.extra_gpus)

    def to_json(self) -> dict[str, Any]:
        """allocation.json's placement fields (``slots`` and ``gpus`` only for several processes)."""
        out: dict[str, Any] = {"platform": self.platform, "slot": self.slot, "gpu": self.gpu, "reason": self.reason}
        if self.extra_slots:
            out["slots"], out["gpus"] = list(self.slots), list(self.gpus)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any], reason: str = "resumed") -> Allocation:
        slots, gpus = [int(s) for s in d.get("slots") or ()], [int(g) for g in d.get("gpus") or ()]
        return cls(str(d["platform"]), int(d["slot"]), d.get("gpu"), str(d.get("reason", reason)),
                   extra_slots=tuple(slots[1:]), extra_gpus=tuple(gpus[1:]))


@dataclass(frozen=True)
class Recipe:
    """A trial attempt's recipe, free of any location: no path of this machine or a host.

    ``data`` is the data spec (target, validation, the file's sha256 and, on this machine,
    its path); where the file lies on a host is the launch plan's business. ``number`` is the
    run-wide trial number, the one name of a trial everywhere.
    """

    number: int
    study: str
    params: dict[str, Any]
    seed: int
    model: str | None  # built-in model name, or None for a user command
    command: tuple[str, ...] | None
    data: dict[str, Any] | None
    metrics: tuple[str, ...]
    checkpoint_every_s: float = 30.0  # built-in runners: seconds between checkpoints (and one at the end)
    stop_at: int | None = None  # PBT: end this segment at this step (checkpoint, exit 75)
    timeout_s: float | None = None  # the attempt's limit on its own run time, enforced on its host
    decisions: dict[str, Any] | None = None  # where built-in runners wait for the pruner's answer
    compare: dict[str, Any] | None = None  # a comparison job (runners/compare_job.py): calibrations, odds, name
    procs: int = 1  # processes the trial trains in (torch DDP); a rerun replays it with as many

    def to_json(self) -> dict[str, Any]:
        out = {"schema": SCHEMA, "number": self.number, "study": self.study, "params": self.params,
               "seed": self.seed, "model": self.model, "command": list(self.command) if self.command else None,
               "data": self.data, "metrics": list(self.metrics), "checkpoint_every_s": self.checkpoint_every_s,
               "stop_at": self.stop_at, "timeout_s": self.timeout_s, "decisions": self.decisions}
        if self.compare is not None:  # only then: a search's recipe.json and spec.json stay as they were
            out["compare"] = self.compare
        if self.procs > 1:  # likewise
            out["procs"] = self.procs
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Recipe:
        return cls(int(d["number"]), str(d["study"]), dict(d["params"]), int(d["seed"]), d.get("model"),
                   tuple(d["command"]) if d.get("command") else None, d.get("data"), tuple(d.get("metrics") or ()),
                   float(d.get("checkpoint_every_s", 30.0)), d.get("stop_at"), d.get("timeout_s"), d.get("decisions"),
                   d.get("compare"), int(d.get("procs", 1)))


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, as the backend saw it.

    ``stderr`` is the tail of its standard error; ``logs`` the paths of its stdout and stderr
    in the run directory (the whole files stay on the host of an SSH attempt)."""

    exit_code: int | None  # None when killed by a signal
    signal: int | None = None
    error: str = ""
    timed_out: bool = False
    cancelled: bool = False
    lost: bool = False  # the connection to the host was lost and the attempt could not be re-attached
    preempted: bool = False  # the scheduler (SLURM) signalled it before a limit or a preemption
    duration_s: float = 0.0
    stderr: str = ""
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a trial: where it ran and how it ended (``kind``: the reason, see
    ``schedule/decide.py``; ``connection_lost`` for one whose end was never seen)."""

    attempt: int
    platform: str
    slot: int
    gpu: int | None
    kind: str
    exit_code: int | None = None
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "platform": self.platform, "slot": self.slot, "gpu": self.gpu,
                "kind": self.kind, "exit_code": self.exit_code, "duration_s": self.duration_s}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AttemptRecord:
        return cls(int(d["attempt"]), str(d["platform"]), int(d["slot"]), d.get("gpu"), str(d["kind"]),
                   d.get("exit_code"), float(d.get("duration_s") or 0.0))


@dataclass(frozen=True)
class TrialInfo:
    """``trial.json``: a trial as it was asked (before any attempt)."""

    number: int
    study: str
    optuna_number: int
    model: str | None
    params: dict[str, Any]
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "study": self.study, "optuna_number": self.optuna_number,
                "model": self.model, "params": self.params, "seed": self.seed}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrialInfo:
        return cls(int(d["number"]), str(d["study"]), int(d["optuna_number"]), d.get("model"), dict(d["params"]),
                   int(d["seed"]))


@dataclass(frozen=True)
class Result:
    """``result.json``: a trial's one committed terminal record.

    ``values``: the objectives (None unless COMPLETE; a PRUNED trial's last reported value);
    ``metrics``: every metric it reported, metrics only (no control markers); ``attempt``:
    the attempt the result came from, so a late result of an older attempt is refused;
    ``attempts``: every attempt, in order; ``error``: why it did not complete."""

    number: int
    study: str
    optuna_number: int
    model: str | None
    status: TrialStatus
    kind: str
    values: list[float] | None
    metrics: dict[str, float]
    params: dict[str, Any]
    seed: int
    attempt: int
    attempts: tuple[AttemptRecord, ...]
    platform: str
    host: str
    duration_s: float
    total_s: float
    error: str = ""
    lineage: tuple[dict[str, Any], ...] | None = None  # PBT runs: every exploit, in order
    provenance: dict[str, Any] | None = None  # its host's facts, GPU and seeds (``provenance.for_result``)
    extra: dict[str, Any] = field(default_factory=dict)  # fields a newer version wrote: kept as they are

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA, "number": self.number, "study": self.study, "optuna_number": self.optuna_number,
            "model": self.model, "status": self.status.value, "kind": self.kind, "values": self.values,
            "metrics": self.metrics, "params": self.params, "seed": self.seed, "attempt": self.attempt,
            "attempts": [a.to_json() for a in self.attempts], "platform": self.platform, "host": self.host,
            "duration_s": self.duration_s, "total_s": self.total_s, "error": self.error}
        if self.lineage is not None:
            out["lineage"] = list(self.lineage)
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Result:
        known = {f.name for f in fields(cls)} | {"schema"}
        return cls(int(d["number"]), str(d["study"]), int(d["optuna_number"]), d.get("model"),
                   TrialStatus(d["status"]), str(d.get("kind", "")), d.get("values"), dict(d.get("metrics") or {}),
                   dict(d.get("params") or {}), int(d.get("seed", 0)), int(d.get("attempt", 1)),
                   tuple(AttemptRecord.from_json(a) for a in d.get("attempts") or ()), str(d.get("platform", "")),
                   str(d.get("host", "")), float(d.get("duration_s") or 0.0), float(d.get("total_s") or 0.0),
                   str(d.get("error") or ""), tuple(d["lineage"]) if d.get("lineage") is not None else None,
                   d.get("provenance"), {k: v for k, v in d.items() if k not in known})

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None


@dataclass(frozen=True)
class StudyRecord:
    """One search of a run, as ``run.json`` records it."""

    name: str
    model: str | None
    model_type: str
    space: dict[str, Any]  # the search space as its YAML said (``config/space.py`` to_json)

    @property
    def params(self) -> list[str]:
        return list(self.space.get("params", {}))

    @property
    def fixed(self) -> dict[str, Any]:
        return dict(self.space.get("fixed") or {})


@dataclass(frozen=True)
class RunConfig:
    """``run.json`` as the reports, status and resume read it (``raw`` keeps every key)."""

    format: int
    name: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    studies: tuple[StudyRecord, ...]
    trials: int
    data: dict[str, Any] | None
    slots: dict[str, int]  # platform -> slots, from the registry snapshot
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        platforms = (d.get("registry") or {}).get("platforms") or {}
        return cls(int(d.get("format", 1)), str(d["name"]), tuple(d["metrics"]), tuple(d["directions"]),
                   tuple(StudyRecord(s["name"], s.get("model"), s.get("model_type", ""), s.get("space") or {})
                         for s in d["studies"]), int(d["trials"]), d.get("data"),
                   {k: int(p.get("max_concurrent_jobs", 1)) for k, p in platforms.items()}, d)

    @property
    def maximize(self) -> bool:
        return self.directions[0] == "maximize"
