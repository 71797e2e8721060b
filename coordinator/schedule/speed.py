"""Learned trial durations per (model type, platform), used by the router to send each
trial where it is expected to finish first.

A GPU is not always faster (XGBoost on a GPU loses below ~100k rows), so nothing is
assumed: durations are learned from completed attempts. Until a platform has
``min_samples`` for a model type the router keeps the registry's static order, which also
spreads the first trials over the candidates and so calibrates them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Estimate:
    """What the router needs about one candidate platform."""

    duration_s: float  # expected run time of this trial there
    wait_s: float = 0.0  # expected time until a slot frees (0 when one is free)

    @property
    def finish_s(self) -> float:
        return self.wait_s + self.duration_s


@dataclass
class SpeedModel:
    """Median of the last ``window`` successful durations per (model type, platform)."""

    window: int = 20
    min_samples: int = 1
    samples: dict[tuple[str, str], deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def observe(self, model_type: str, platform: str, duration_s: float) -> None:
        q = self.samples[(model_type, platform)]
        q.append(duration_s)
        if len(q) > self.window:
            q.popleft()

    def expected(self, model_type: str, platform: str) -> float | None:
        q = self.samples.get((model_type, platform))
        if not q or len(q) < self.min_samples:
            return None
        return statistics.median(q)

    def table(self) -> dict[str, dict[str, float]]:
        """model type -> platform -> median seconds (for display)."""
        out: dict[str, dict[str, float]] = {}
        for (model_type, platform), q in sorted(self.samples.items()):
            if q:
                out.setdefault(model_type, {})[platform] = round(statistics.median(q), 4)
        return out
