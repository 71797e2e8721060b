"""What a run used and what it cost: machine-seconds, GPU-seconds and money, per attempt,
summed per trial, per study (model), per platform and for the whole run.

Every attempt counts: complete, pruned, failed, retried, cancelled, stopped by Ctrl-C, and
one still running (up to now). The attempts come from the event log (``launched`` says
where, ``ended`` how long the host measured it ran), so a trial with no result yet is
counted as well as a committed one. The prices come from the registry snapshot in
``run.json`` (the registry as the run started), per platform:

- ``cost_per_hour``: what the whole machine costs per hour (a cloud price); each of its
  ``max_concurrent_jobs`` slots carries its share while an attempt holds it;
- ``watts`` with ``tariff_per_kwh``: an owned machine's electricity, shared the same way;
- ``gpu_cost_per_hour``: per GPU-hour an attempt held (SLURM: ``slurm.gpus`` per job).

A machine-second is one second of one slot; a GPU-second one second of one GPU. The cost is
``None`` when no platform the run used has a price (nothing to add up, not zero).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from coordinator.records import AttemptRecord
from coordinator.store.rundir import RunStore


@dataclass(frozen=True)
class Rates:
    """A platform's prices per slot-hour and per GPU-hour (None: not priced)."""

    slot_hour: float | None = None
    gpu_hour: float | None = None
    gpus_per_gpu_attempt: int = 1

    @classmethod
    def of(cls, platform: dict[str, Any]) -> Rates:
        slots = max(1, int(platform.get("max_concurrent_jobs") or 1))
        parts = []
        if platform.get("cost_per_hour") is not None:
            parts.append(float(platform["cost_per_hour"]))
        if platform.get("watts") is not None and platform.get("tariff_per_kwh") is not None:
            parts.append(float(platform["watts"]) / 1000.0 * float(platform["tariff_per_kwh"]))
        gpu = platform.get("gpu_cost_per_hour")
        slurm = platform.get("slurm") or {}
        return cls(sum(parts) / slots if parts else None, None if gpu is None else float(gpu),
                   int(slurm.get("gpus") or 1))

    @property
    def priced(self) -> bool:
        return self.slot_hour is not None or self.gpu_hour is not None

    def charge(self, seconds: float, gpu: int | None) -> tuple[float, float | None]:
        """An attempt of ``seconds`` on a slot (holding a GPU unless ``gpu`` is None): its
        GPU-seconds and its cost (None when the platform has no price)."""
        gpu_s = seconds * self.gpus_per_gpu_attempt if gpu is not None else 0.0
        return gpu_s, attempt_cost(self, seconds, gpu_s)


@dataclass
class Usage:
    attempts: int = 0
    machine_s: float = 0.0
    gpu_s: float = 0.0
    cost: float | None = None

    def add(self, machine_s: float, gpu_s: float, cost: float | None) -> None:
        self.attempts += 1
        self.machine_s += machine_s
        self.gpu_s += gpu_s
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    @property
    def machine_hours(self) -> float:
        return self.machine_s / 3600.0

    @property
    def gpu_hours(self) -> float:
        return self.gpu_s / 3600.0

    def to_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "machine_hours": round(self.machine_hours, 6),
                "gpu_hours": round(self.gpu_hours, 6), "cost": None if self.cost is None else round(self.cost, 6)}


@dataclass
class RunUsage:
    currency: str = ""
    total: Usage = field(default_factory=Usage)
    by_trial: dict[int, Usage] = field(default_factory=dict)
    by_study: dict[str, Usage] = field(default_factory=dict)
    by_platform: dict[str, Usage] = field(default_factory=dict)
    running: int = 0  # attempts counted up to now, still running
    study_of: dict[int, str] = field(default_factory=dict)  # trial number -> its study

    @property
    def priced(self) -> bool:
        return self.total.cost is not None

    def money(self, value: float | None) -> str:
        return money(value, self.currency)


def money(value: float | None, currency: str = "") -> str:
    """A cost as the user reads it: ``1.23 EUR``, ``0.0042 EUR`` below a cent, ``-`` when nothing is priced."""
    if value is None:
        return "-"
    return f"{value:.2f} {currency}".strip() if value >= 0.01 or value == 0 else f"{value:.4f} {currency}".strip()


def usage_line(machine_hours: float, gpu_hours: float, cost: float | None, currency: str = "") -> str:
    """``0.42 machine-hours, 0.10 GPU-hours, 1.23 EUR``: GPU-hours when there were any, the
    cost where the registry prices a platform."""
    parts = [f"{machine_hours:.2f} machine-hours"] + ([f"{gpu_hours:.2f} GPU-hours"] if gpu_hours else [])
    return ", ".join(parts + ([money(cost, currency)] if cost is not None else []))


def attempt_cost(rates: Rates, machine_s: float, gpu_s: float) -> float | None:
    if not rates.priced:
        return None
    return machine_s / 3600.0 * (rates.slot_hour or 0.0) + gpu_s / 3600.0 * (rates.gpu_hour or 0.0)


def account(events: Iterable[dict[str, Any]], platforms: dict[str, dict[str, Any]], studies: dict[int, str],
            currency: str = "", now: float | None = None) -> RunUsage:
    """The usage of the attempts these events tell of (pure: the tests feed it events).
    ``now``: the time to count still-running attempts up to (None: they are not counted)."""
    rates = {k: Rates.of(p) for k, p in platforms.items()}
    launched: dict[tuple[int, int], dict[str, Any]] = {}
    ended: dict[tuple[int, int], float] = {}
    for e in events:
        kind = e.get("event")
        if kind in ("launched", "reattached") and "number" in e:
            launched.setdefault((int(e["number"]), int(e["attempt"])), e)
        elif kind == "ended" and "number" in e:
            ended[(int(e["number"]), int(e["attempt"]))] = float(e.get("duration_s") or 0.0)
    out = RunUsage(currency, study_of=dict(studies))
    for key, start in sorted(launched.items()):
        if key in ended:
            seconds = ended[key]
        elif now is not None:
            seconds = max(0.0, now - float(start.get("t") or now))
            out.running += 1
        else:
            continue
        platform = str(start.get("platform") or "")
        gpu_s, cost = rates.get(platform, Rates()).charge(seconds, start.get("gpu"))
        number = key[0]
        for bucket in (out.total, out.by_trial.setdefault(number, Usage()),
                       out.by_study.setdefault(studies.get(number, "?"), Usage()),
                       out.by_platform.setdefault(platform, Usage())):
            bucket.add(seconds, gpu_s, cost)
    return out


def trial_usage(attempts: Iterable[AttemptRecord], platforms: dict[str, dict[str, Any]]) -> Usage:
    """One committed trial's usage from its result's attempt records (the same durations the
    event log holds): what MLflow logs on the trial's run."""
    out = Usage()
    for a in attempts:
        out.add(a.duration_s, *Rates.of(platforms.get(a.platform) or {}).charge(a.duration_s, a.gpu))
    return out


class Meter:
    """A live search's usage as its loop sees it, without reading the log again: the run's
    usage so far (a resumed run's earlier attempts), each attempt added as it ends, the
    running ones counted up to now when asked."""

    def __init__(self, platforms: dict[str, dict[str, Any]], currency: str = "", base: Usage | None = None) -> None:
        self.rates = {k: Rates.of(p) for k, p in platforms.items()}
        self.currency = currency
        self.done = Usage(**vars(base)) if base is not None else Usage()

    def ended(self, platform: str, gpu: int | None, seconds: float) -> None:
        self.done.add(seconds, *self.rates.get(platform, Rates()).charge(seconds, gpu))

    def now(self, running: Iterable[tuple[str, int | None, float]]) -> Usage:
        """The usage so far with each running attempt (platform, GPU, seconds so far) in it."""
        out = Usage(**vars(self.done))
        for platform, gpu, seconds in running:
            out.add(seconds, *self.rates.get(platform, Rates()).charge(seconds, gpu))
        return out

    def line(self, running: Iterable[tuple[str, int | None, float]]) -> str:
        use = self.now(running)
        return usage_line(use.machine_hours, use.gpu_hours, use.cost, self.currency)


def run_usage(store: RunStore, live: bool | None = None) -> RunUsage:
    """The run's usage from its directory; a live run's running attempts count up to now."""
    cfg = store.config
    registry = cfg.get("registry") or {}
    studies = {rec.number: rec.info.study for rec in store.trials()}
    live = store.live_pid() is not None if live is None else live
    return account(store.events_read(), registry.get("platforms") or {}, studies, str(registry.get("currency") or ""),
                   time.time() if live else None)
