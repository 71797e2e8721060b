"""A trial's one terminal record, built from its last attempt: pure, so the loop's commit
is only "write it, tell Optuna, tell the trackers"."""

from __future__ import annotations

from typing import Any

from coordinator.config.registry import Platform
from coordinator.records import Result, TrialStatus
from coordinator.schedule import decide
from coordinator.schedule.plans import Pending


def build_result(p: Pending, metrics: dict[str, float], kind: decide.Kind, stderr_tail: str, duration_s: float,
                 platform: Platform, pbt: bool, printed: tuple[str, ...] = (),
                 timeout_s: float | None = None, provenance: dict[str, Any] | None = None) -> Result:
    """The result of trial ``p`` whose last attempt ended as ``kind`` on ``platform``.
    ``metrics``: every metric it reported (no control marker); ``printed``: metric-like
    names in its output, for the error of a trial that did not report its objective;
    ``timeout_s``: the trial time limit, for the error of one stopped at it."""
    status = decide.final_status(kind)
    names = p.plan.search.metrics
    values = [metrics[m] for m in names] if status == TrialStatus.COMPLETE else None
    if status == TrialStatus.PRUNED and names[0] in metrics:
        values = [metrics[names[0]]]  # the last reported value
    error = "" if status == TrialStatus.COMPLETE else \
        decide.explain(kind, names, metrics, stderr_tail, printed, timeout_s)[-2000:]
    return Result(number=p.number, study=p.plan.search.name, optuna_number=p.optuna_number, model=p.plan.model,
                  status=status, kind=kind.value, values=values, metrics=dict(metrics), params=p.params,
                  seed=p.plan.trial_seed(p.number), attempt=p.attempt, attempts=tuple(p.history),
                  platform=platform.key, host=platform.host or "localhost", duration_s=round(duration_s, 4),
                  total_s=round(sum(h.duration_s for h in p.history), 4), error=error,
                  lineage=tuple(p.lineage) if pbt else None, provenance=provenance)
