"""Is "best" significant? A paired bootstrap by season block of each entry's AUC and
Brier difference to the best entry.

One resample draws as many seasons as the test period has, with replacement, from its
seasons (each season's rows stay together: a block), the same draw for every entry (the
pairing). An entry's value on a resample is its metric on the drawn rows (a season drawn
twice counts twice), averaged over its seeds, the way the comparison table averages; the
difference to the best entry (the best by the metric on all rows) is taken within the
resample. The percentile interval of the differences over ``resamples`` draws is the
confidence interval; it "excludes 0" when both ends lie on the same side of 0.
``numpy.random.default_rng(seed)`` makes every draw, so the same seed gives the same
intervals. Resamples where a metric is undefined (one class only) are left out and
counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from coordinator.analysis import metrics
from coordinator.analysis.predictions import Entry
from coordinator.errors import ConfigError

METRICS = ("auc", "brier")
CHUNK = 200  # resamples weighed at once (memory: CHUNK x rows floats)


@dataclass(frozen=True)
class Difference:
    """One entry's difference to the best on one metric (entry minus best)."""

    model: str
    calibration: str
    metric: str
    best_model: str
    best_calibration: str
    observed: float
    low: float
    high: float
    resamples: int  # those where the metric was defined for both
    is_best: bool

    @property
    def excludes_zero(self) -> bool:
        return not self.is_best and math.isfinite(self.low) and (self.low > 0 or self.high < 0)


def _auc_weighted(y: NDArray[np.float64], p: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    """AUC under each row of weights ``w`` (resamples x rows), ties counting one half."""
    order = np.argsort(p, kind="stable")
    ps, ys, ws = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: NDArray[np.float64] = np.where(total > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / total, np.nan)
    return out


def _brier_weighted(y: NDArray[np.float64], p: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = (w @ ((p - y) ** 2)) / w.sum(axis=1)
    return out


_WEIGHTED = {"auc": _auc_weighted, "brier": _brier_weighted}


def block_counts(n_blocks: int, resamples: int, seed: int) -> NDArray[np.float64]:
    """How often each block is drawn in each resample (resamples x blocks)."""
    draws = np.random.default_rng(seed).integers(0, n_blocks, size=(resamples, n_blocks))
    counts = np.zeros((resamples, n_blocks))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return counts


def _block_index(entry: Entry) -> tuple[NDArray[np.int64], list[object]]:
    blocks = entry.runs[0].blocks
    names = sorted(set(blocks), key=lambda b: (str(type(b)), b))
    pos = {b: i for i, b in enumerate(names)}
    return np.asarray([pos[b] for b in blocks], dtype=np.int64), names


def paired_bootstrap(entries: Sequence[Entry], metric_names: Sequence[str] = METRICS, resamples: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> list[Difference]:
    """For each metric and entry: the observed difference to the best and its interval."""
    if resamples < 1:
        raise ConfigError("must be at least 1", key="--bootstrap")
    if not 0 < confidence < 1:
        raise ConfigError("must be between 0 and 1", key="--confidence")
    unknown = [m for m in metric_names if m not in _WEIGHTED]
    if unknown:
        raise ConfigError(f"no bootstrap for {', '.join(unknown)}", valid=_WEIGHTED)
    if not entries:
        return []
    idx, names = _block_index(entries[0])
    counts = block_counts(len(names), resamples, seed)
    out: list[Difference] = []
    for name in metric_names:
        values = np.stack([_values(e, name, counts, idx) for e in entries])  # entries x resamples
        observed = [float(np.mean([metrics.auc(r.y, r.p) if name == "auc" else metrics.brier(r.y, r.p)
                                   for r in e.runs])) for e in entries]
        best = 0
        for i, v in enumerate(observed):
            if metrics.better(name, v, observed[best]):
                best = i
        tail = (1 - confidence) / 2
        for i, e in enumerate(entries):
            diff = values[i] - values[best]
            ok = diff[np.isfinite(diff)]
            low, high = (float(np.quantile(ok, tail)), float(np.quantile(ok, 1 - tail))) if len(ok) else \
                (math.nan, math.nan)
            if i == best:
                low = high = 0.0
            out.append(Difference(e.model, e.calibration, name, entries[best].model, entries[best].calibration,
                                  observed[i] - observed[best], low, high, int(len(ok)), i == best))
    return out


def _values(entry: Entry, name: str, counts: NDArray[np.float64], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    """The entry's metric on every resample, averaged over its seeds."""
    fn = _WEIGHTED[name]
    total = np.zeros(len(counts))
    for run in entry.runs:
        parts = [fn(run.y, run.p, counts[start:start + CHUNK][:, idx]) for start in range(0, len(counts), CHUNK)]
        total += np.concatenate(parts)
    out: NDArray[np.float64] = total / len(entry.runs)
    return out
