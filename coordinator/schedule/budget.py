"""Budgets: when a search stops starting trials (pure; the loop asks).

A search may stop on what it has used (``--budget-cost``, ``--budget-machine-hours``,
``--budget-gpu-hours``: store/usage.py's accounting, running attempts up to now), or once a
trial reaches ``--goal VALUE`` (``--target`` names the data's column). ``--trials`` and
``--timeout`` stay where they were (the loop's own). A budget is also projected: a new
trial is not started when the mean attempt so far, added to what is used, would overrun
it. Without ``--hard`` the running trials finish; with it they are stopped as Ctrl-C stops
them (built-in runners checkpoint; nothing is committed; ``coord resume`` with a raised
budget continues them).
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.reporting.fmt import fmt
from coordinator.store.usage import Usage, money


@dataclass(frozen=True)
class Budget:
    cost: float | None = None
    machine_hours: float | None = None
    gpu_hours: float | None = None
    goal: float | None = None
    hard: bool = False
    currency: str = ""

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.cost, self.machine_hours, self.gpu_hours, self.goal))

    def _limits(self, use: Usage) -> list[tuple[str, float, float, str]]:
        """(name, limit, used, shown-used) for each budget set."""
        out = []
        if self.cost is not None:
            out.append(("cost budget", self.cost, use.cost or 0.0, money(use.cost or 0.0, self.currency)))
        if self.machine_hours is not None:
            out.append(("machine-hour budget", self.machine_hours, use.machine_hours, f"{fmt(use.machine_hours)} h"))
        if self.gpu_hours is not None:
            out.append(("GPU-hour budget", self.gpu_hours, use.gpu_hours, f"{fmt(use.gpu_hours)} h"))
        return out

    def _shown(self, name: str, limit: float) -> str:
        return money(limit, self.currency) if name == "cost budget" else f"{fmt(limit)} h"

    def spent(self, use: Usage) -> str | None:
        """Why no new trial may start because a budget is used up, or None."""
        for name, limit, used, shown in self._limits(use):
            if used >= limit:
                return f"the {name} of {self._shown(name, limit)} is used up ({shown} used)"
        return None

    def nearly(self, use: Usage, share: float = 0.8) -> str | None:
        """A budget at least ``share`` used (for --notify), or None."""
        for name, limit, used, shown in self._limits(use):
            if limit > 0 and used >= share * limit:
                return f"{used / limit:.0%} of the {name} of {self._shown(name, limit)} is used ({shown})"
        return None

    def would_overrun(self, use: Usage, done: Usage) -> str | None:
        """Why the next trial would overrun a budget, by the mean finished attempt (``done``), or None."""
        if done.attempts == 0:
            return None
        mean = Usage(1, done.machine_s / done.attempts, done.gpu_s / done.attempts,
                     None if done.cost is None else done.cost / done.attempts)
        after = Usage(use.attempts + 1, use.machine_s + mean.machine_s, use.gpu_s + mean.gpu_s,
                      None if use.cost is None and mean.cost is None else (use.cost or 0.0) + (mean.cost or 0.0))
        for (name, limit, _, shown), (_, _, projected, _) in zip(self._limits(use), self._limits(after), strict=True):
            if projected > limit:
                return (f"the {name} of {self._shown(name, limit)} would be overrun by another trial "
                        f"({shown} used; a trial has taken {self._mean(name, mean)} on average)")
        return None

    def _mean(self, name: str, mean: Usage) -> str:
        if name == "cost budget":
            return money(mean.cost or 0.0, self.currency)
        return f"{fmt(mean.gpu_hours if name.startswith('GPU') else mean.machine_hours)} h"

    def goal_reached(self, best: float | None, maximize: bool, metric: str, number: int | None) -> str | None:
        if self.goal is None or best is None:
            return None
        if (best >= self.goal) if maximize else (best <= self.goal):
            sign = ">=" if maximize else "<="
            return f"the goal {metric} {sign} {fmt(self.goal)} is reached (trial {number}: {fmt(best)})"
        return None


OPTIONS = {"cost budget": "--budget-cost", "machine-hour budget": "--budget-machine-hours",
           "GPU-hour budget": "--budget-gpu-hours", "goal": "--goal"}


def raising_option(ended_by: str) -> str:
    """The option whose new value lets ``coord resume`` go on after the search ended thus."""
    return next((opt for name, opt in OPTIONS.items() if f"the {name} " in ended_by), "--budget-cost")
