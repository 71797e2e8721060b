"""What the search plots draw, read from the run directory alone (run.json, the trials'
records, events.jsonl): per study the scored trials with the parameters the sampler chose,
the timeline of every attempt on its platform and slot, and fANOVA parameter importances
from an in-memory Optuna study built from those records (the run's own storage is never
opened, so a report needs neither its journal nor its database).

No matplotlib here: the tests check these values, the figures only draw them."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.config.space import Param
from coordinator.records import TrialStatus
from coordinator.store.files import write_json
from coordinator.store.rundir import RunStore

IMPORTANCE_SEED = 0  # fANOVA's random forest: fixed, so a rebuilt report draws the same bars
MIN_IMPORTANCE_TRIALS = 4
# attempts that ended without failing and went on in a later attempt (PBT segments,
# migrations to a faster host, a requeue, a coordinator stopped and resumed)
_CONTINUED = frozenset({"segment", "migrated", "requeue", "interrupted"})
TIMELINE_STATUSES = ("COMPLETE", "PRUNED", "FAILED", "CANCELLED", "RETRIED", "CONTINUED", "UNFINISHED")


@dataclass(frozen=True)
class Point:
    """A trial with objective values: COMPLETE (its values) or PRUNED (the last value it
    reported before it was stopped, first objective only)."""

    number: int
    status: str
    values: tuple[float, ...]
    params: dict[str, Any]  # as the sampler chose them (trial.json), inside the space's ranges


@dataclass(frozen=True)
class StudyData:
    name: str
    space: dict[str, Param]  # search-space order
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    complete: tuple[Point, ...]
    pruned: tuple[Point, ...]

    @property
    def maximize(self) -> bool:
        return self.directions[0] == "maximize"


@dataclass(frozen=True)
class Bar:
    """One attempt on the timeline: seconds from the search's start, and how it ended."""

    number: int
    attempt: int
    study: str
    platform: str
    slot: int
    start: float
    end: float
    status: str  # one of TIMELINE_STATUSES


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def param_of(spec: dict[str, Any]) -> Param:
    """A run.json parameter (``Space.to_json``) as the config's Param (its Optuna distribution)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    return Param(**fields)


def studies(store: RunStore) -> list[StudyData]:
    """Every study of the run with its scored trials, in the run's order."""
    cfg = store.config
    metrics, directions = tuple(cfg["metrics"]), tuple(cfg["directions"])
    by_study: dict[str, tuple[list[Point], list[Point]]] = {s["name"]: ([], []) for s in cfg["studies"]}
    for rec in store.trials():
        res = rec.result
        if res is None or rec.info.study not in by_study or not res.values:
            continue
        values = tuple(float(v) for v in res.values if _finite(v))
        if res.status == TrialStatus.COMPLETE and len(values) == len(metrics):
            by_study[rec.info.study][0].append(Point(rec.number, res.status.value, values, rec.info.params))
        elif res.status == TrialStatus.PRUNED and values and _finite(res.values[0]):
            by_study[rec.info.study][1].append(Point(rec.number, res.status.value, values[:1], rec.info.params))
    return [StudyData(s["name"], {n: param_of(p) for n, p in s["space"]["params"].items()}, metrics, directions,
                      tuple(by_study[s["name"]][0]), tuple(by_study[s["name"]][1])) for s in cfg["studies"]]


def best_so_far(points: tuple[Point, ...], maximize: bool) -> list[float]:
    """The best first objective among the trials up to each one (the points in trial order)."""
    out: list[float] = []
    for p in points:
        v = p.values[0]
        out.append(v if not out else max(out[-1], v) if maximize else min(out[-1], v))
    return out


def timeline(store: RunStore) -> list[Bar]:
    """Every attempt that was launched, from ``launched``/``reattached`` to ``ended`` in
    events.jsonl (an attempt with no end ran until the log's last event), coloured by how
    its trial ended (its last attempt) or why the attempt gave way to the next one."""
    events = store.events_read()
    times = [float(e["t"]) for e in events if _finite(e.get("t"))]
    if not times:
        return []
    t0, t_last = times[0], times[-1]
    starts: dict[tuple[int, int], dict[str, Any]] = {}
    ends: dict[tuple[int, int], dict[str, Any]] = {}
    for e in events:
        if not _finite(e.get("t")) or not isinstance(e.get("number"), int) or not isinstance(e.get("attempt"), int):
            continue
        key = (e["number"], e["attempt"])
        if e.get("event") in ("launched", "reattached"):
            starts.setdefault(key, e)  # a re-attached attempt started when it was first launched
        elif e.get("event") == "ended":
            ends[key] = e
    results = {rec.number: rec for rec in store.trials()}
    bars = []
    for (number, attempt), start in sorted(starts.items()):
        rec = results.get(number)
        end = ends.get((number, attempt))
        res = rec.result if rec else None
        if res is not None and attempt == res.attempt:
            status = res.status.value
        elif end is None:
            status = "UNFINISHED"
        else:
            status = "CONTINUED" if end.get("kind") in _CONTINUED else "RETRIED"
        slot = start.get("slot")
        bars.append(Bar(number, attempt, rec.info.study if rec else "", str(start.get("platform", "")),
                        slot if isinstance(slot, int) else 0, float(start["t"]) - t0,
                        (float(end["t"]) if end else t_last) - t0, status))
    return bars


def importances(study: StudyData, saved: Path | None = None) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances of the first objective (normalised to sum 1, most important
    first), or None and why there are none. With ``saved``, the numbers are kept there
    (JSON, with a digest of what they were computed from) and read back while the trials
    are the same: a rebuilt report then needs no random forest (importing scikit-learn
    alone takes seconds)."""
    if saved is not None:
        digest = _digest(study)
        try:
            kept = json.loads(saved.read_text(encoding="utf-8"))
            if kept.get("digest") == digest and isinstance(kept.get("importances"), dict):
                return {str(k): float(v) for k, v in kept["importances"].items()}, ""
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # none yet, or damaged: computed again
        imp, why = importances(study)
        if imp is None:
            saved.unlink(missing_ok=True)
        else:
            write_json(saved, {"study": study.name, "metric": study.metrics[0], "trials": len(study.complete),
                               "evaluator": f"optuna FanovaImportanceEvaluator(seed={IMPORTANCE_SEED})",
                               "importances": imp, "digest": digest}, durable=False, sort_keys=False)
        return imp, why
    if len(study.space) < 2:
        return None, f"{study.name} searches one parameter"
    points = [p for p in study.complete if set(study.space) <= set(p.params)]
    if len(points) < MIN_IMPORTANCE_TRIALS:
        many = "trial" if len(points) == 1 else "trials"
        return None, f"{study.name} has {len(points)} complete {many} (fANOVA needs {MIN_IMPORTANCE_TRIALS})"
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import create_trial

    dists = {n: p.distribution() for n, p in study.space.items()}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # no "a new study created in memory" line
    try:
        mem = optuna.create_study(directions=list(study.directions))  # type: ignore[arg-type]
        for p in points:
            try:
                mem.add_trial(create_trial(params={n: p.params[n] for n in dists}, distributions=dists,
                                           values=list(p.values)))
            except ValueError:  # a value outside its range (a space edited after the run): left out
                continue
        raw = FanovaImportanceEvaluator(seed=IMPORTANCE_SEED).evaluate(mem, target=lambda t: t.values[0])
    except RuntimeError as exc:  # fANOVA: "zero total variance" when every trial scored the same
        if "variance" not in str(exc):
            raise
        return None, f"{study.name}'s objective does not vary with its parameters"
    finally:
        optuna.logging.set_verbosity(verbosity)
    total = float(sum(float(v) for v in raw.values() if _finite(float(v))))
    if not total:
        return None, f"{study.name}'s objective does not vary with its parameters"
    order = sorted(raw, key=lambda n: (-raw[n], list(study.space).index(n)))
    return {n: float(raw[n]) / total for n in order}, ""


def _digest(study: StudyData) -> str:
    """What the importances depend on: the space, the trials' parameters and values, the seed."""
    data = {"seed": IMPORTANCE_SEED, "space": {n: vars(p) for n, p in study.space.items()},
            "trials": [[p.number, list(p.values), p.params] for p in study.complete]}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def pareto(study: StudyData) -> list[Point]:
    """The non-dominated complete trials (every objective), sorted by the first: the
    tables' own front (``reporting.pareto``)."""
    from coordinator.reporting.pareto import front

    by_number = {p.number: p for p in study.complete}
    rows = [{"number": p.number, **dict(zip(study.metrics, p.values, strict=True))} for p in study.complete]
    return [by_number[r["number"]] for r in front(rows, list(study.metrics), list(study.directions))]
