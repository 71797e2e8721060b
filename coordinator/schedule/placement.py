"""Learned placement: what the router needs to send a trial where it should finish first,
computed from the speed model and the trials running now.

- ``estimates``: per platform, the expected duration of this model type there, and for a
  full platform the expected wait until its first slot frees.
- ``exploring``: calibration. A fallback that a rule names (a hint that it may be much
  slower) takes one trial at a time until its first one ends; the preferred platform fills
  freely, and platforms in plain registry order (no rule) are peers, never held back.
- ``sufferage``: how much later a trial would finish if denied its best platform; between
  several searches the one that would lose most goes first, so a GPU goes to the model
  that gains most from it (a classic heuristic for heterogeneous machines).
- ``migration_target``: fidelity-aware placement. Low rungs run wherever a slot is free,
  also on the slower host; a trial the pruner promotes past its first rung is worth the
  fast host, so when one has a free slot the trial checkpoints (SIGTERM, exit 75) and
  continues there from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.config.registry import Registry
from coordinator.schedule.routing import Ledger
from coordinator.schedule.speed import Estimate, SpeedModel

MIGRATE_GAIN = 0.3  # move a promoted trial only to a platform expected to be 30% faster


@dataclass(frozen=True)
class RunningTrial:
    platform: str
    model_type: str
    started: float


@dataclass
class Placement:
    registry: Registry
    speed: SpeedModel

    def exploring(self, model_type: str, running: Iterable[RunningTrial]) -> set[str]:
        rule = self.registry.rule_for(model_type)
        if not rule.explicit:
            return set()
        preferred = rule.candidates[0].platform if rule.candidates else None
        return {r.platform for r in running if r.model_type == model_type and r.platform != preferred
                and self.speed.expected(model_type, r.platform) is None}

    def estimates(self, model_type: str, running: list[RunningTrial], ledger: Ledger,
                  now: float) -> dict[str, Estimate]:
        out: dict[str, Estimate] = {}
        for name, platform in self.registry.platforms.items():
            duration = self.speed.expected(model_type, name)
            if duration is None:
                continue
            wait = 0.0
            if ledger.busy(name) >= platform.max_concurrent_jobs:
                remaining = [max(0.0, (self.speed.expected(r.model_type, name) or duration) - (now - r.started))
                             for r in running if r.platform == name]
                wait = min(remaining, default=0.0)
            out[name] = Estimate(duration, wait)
        return out

    def migration_target(self, model_type: str, current: str, candidates: Iterable[str], ledger: Ledger,
                         slots: int = 1) -> str | None:
        """A platform with ``slots`` free slots now (a trial of several processes needs one
        each) that is expected to run this model type at least ``MIGRATE_GAIN`` faster than
        ``current``, the fastest such; None if there is none or the speeds are not known yet."""
        here = self.speed.expected(model_type, current)
        if here is None:
            return None
        best: tuple[float, str] | None = None
        for name in candidates:
            platform = self.registry.platforms.get(name)
            there = self.speed.expected(model_type, name)
            if name == current or platform is None or there is None or \
                    ledger.busy(name) + (1 if platform.slurm else slots) > platform.max_concurrent_jobs:
                continue
            if there <= (1 - MIGRATE_GAIN) * here and (best is None or there < best[0]):
                best = (there, name)
        return best[1] if best else None

    def sufferage(self, model_type: str, running: list[RunningTrial], ledger: Ledger, now: float) -> float:
        finishes = sorted(e.finish_s for e in self.estimates(model_type, running, ledger, now).values())
        return finishes[1] - finishes[0] if len(finishes) > 1 else 0.0
