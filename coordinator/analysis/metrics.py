"""Metrics of out-of-sample predictions, in numpy (the tests check each against
scikit-learn on the same saved predictions). Every function takes the labels ``y`` (0/1
for classification) and the predictions ``p`` (the probability of the positive class, or
the predicted value for regression) of the same rows, and optional row weights ``w`` (the
season-block bootstrap weighs rows by how often their season was drawn).

Definitions (docs/compare.md says the same in words):

* ``auc``: the area under the ROC curve, the probability that a random positive is scored
  above a random negative, ties counting one half (Mann-Whitney U / (n+ n-)). NaN when
  the rows hold one class only.
* ``brier``: the mean of (p - y)^2.
* ``logloss``: the mean of -(y log p + (1 - y) log(1 - p)), p clipped to
  [eps, 1 - eps] with eps the float64 machine epsilon (as scikit-learn does).
* ``ece``: expected calibration error with 10 equal-width bins on [0, 1] (bin i holds
  i/10 <= p < (i+1)/10, the last one also p = 1): the sum over non-empty bins of
  (rows in bin / rows) * |mean y - mean p| in the bin.
* ``accuracy``: the share of rows where (p >= 0.5) equals y.
* ``roi``: flat stake of 1 on the positive outcome of every row whose expected value is
  positive, p * odds > 1 (decimal odds: a winning stake of 1 returns ``odds``); a bet
  wins odds - 1 or loses 1; ROI = total profit / total staked = sum over bets of
  (y * odds - 1) / bets. NaN when no row is bet on; ``bets`` is their number.
* ``rmse``, ``mae``, ``r2``: sqrt(mean (p - y)^2), mean |p - y|,
  1 - sum (p - y)^2 / sum (y - mean y)^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

CLASSIFICATION = ("auc", "brier", "logloss", "ece", "accuracy")
BETTING = ("roi", "bets")
REGRESSION = ("rmse", "mae", "r2")
HIGHER_IS_BETTER = frozenset({"auc", "accuracy", "roi", "r2"})
LOWER_IS_BETTER = frozenset({"brier", "logloss", "ece", "rmse", "mae"})
LABELS = {"auc": "AUC", "brier": "Brier", "logloss": "Log loss", "ece": "ECE", "accuracy": "Accuracy",
          "roi": "ROI", "bets": "Bets", "rmse": "RMSE", "mae": "MAE", "r2": "R²"}
ECE_BINS = 10
THRESHOLD = 0.5
_EPS = float(np.finfo(np.float64).eps)


def _arrays(y: Any, p: Any, w: Any = None) -> tuple[Array, Array, Array]:
    ya, pa = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    wa = np.ones_like(ya) if w is None else np.asarray(w, dtype=np.float64)
    return ya, pa, wa


def _mean(values: Array, w: Array) -> float:
    total = float(w.sum())
    return float(np.dot(values, w) / total) if total > 0 else math.nan


def auc(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    order = np.argsort(pa, kind="stable")
    ps, ys, ws = pa[order], ya[order], wa[order]
    if len(ps) == 0:
        return math.nan
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    pos = np.add.reduceat(ws * ys, starts)
    neg = np.add.reduceat(ws * (1 - ys), starts)
    below = np.cumsum(neg) - neg
    total = float(pos.sum()) * float(neg.sum())
    return float(np.dot(pos, below + 0.5 * neg) / total) if total > 0 else math.nan


def brier(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    return _mean((pa - ya) ** 2, wa)


def log_loss(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    q = np.clip(pa, _EPS, 1 - _EPS)
    return _mean(-(ya * np.log(q) + (1 - ya) * np.log(1 - q)), wa)


def bin_index(p: Any, bins: int = ECE_BINS) -> NDArray[np.int64]:
    """The equal-width bin of each probability (the last bin includes 1)."""
    return np.minimum((np.asarray(p, dtype=np.float64) * bins).astype(np.int64), bins - 1)


def ece(y: Any, p: Any, w: Any = None, bins: int = ECE_BINS) -> float:
    ya, pa, wa = _arrays(y, p, w)
    idx = bin_index(pa, bins)
    weight = np.bincount(idx, weights=wa, minlength=bins)
    gap = np.bincount(idx, weights=wa * ya, minlength=bins) - np.bincount(idx, weights=wa * pa, minlength=bins)
    total = float(weight.sum())
    return float(np.abs(gap).sum() / total) if total > 0 else math.nan


def accuracy(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    return _mean(((pa >= THRESHOLD) == (ya > 0.5)).astype(np.float64), wa)


def betting(y: Any, p: Any, odds: Any, w: Any = None) -> tuple[float, float]:
    """(ROI, number of bets) of a flat stake on every positive-expected-value row."""
    ya, pa, wa = _arrays(y, p, w)
    o = np.asarray(odds, dtype=np.float64)
    bet = np.isfinite(o) & (pa * np.where(np.isfinite(o), o, 0.0) > 1.0)
    staked = float(wa[bet].sum())
    if staked <= 0:
        return math.nan, 0.0
    profit = float(np.dot(wa[bet], ya[bet] * o[bet] - 1.0))
    return profit / staked, float(bet.sum())


def rmse(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    return math.sqrt(_mean((pa - ya) ** 2, wa))


def mae(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    return _mean(np.abs(pa - ya), wa)


def r2(y: Any, p: Any, w: Any = None) -> float:
    ya, pa, wa = _arrays(y, p, w)
    centre = _mean(ya, wa)
    total = float(np.dot(wa, (ya - centre) ** 2))
    return 1.0 - float(np.dot(wa, (pa - ya) ** 2)) / total if total > 0 else math.nan


def names(task: str, odds: bool) -> tuple[str, ...]:
    """The metrics a comparison reports, in table order."""
    if task == "regression":
        return REGRESSION
    return CLASSIFICATION + (BETTING if odds else ())


def evaluate(task: str, y: Any, p: Any, odds: Any = None) -> dict[str, float]:
    """Every metric of ``names(task, odds is not None)`` on these rows."""
    if task == "regression":
        return {"rmse": rmse(y, p), "mae": mae(y, p), "r2": r2(y, p)}
    out = {"auc": auc(y, p), "brier": brier(y, p), "logloss": log_loss(y, p), "ece": ece(y, p),
           "accuracy": accuracy(y, p)}
    if odds is not None:
        out["roi"], out["bets"] = betting(y, p, odds)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of the finite values; the standard
    deviation of one value is NaN (a single seed has no spread to report)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = math.fsum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def better(metric: str, a: float, b: float) -> bool:
    """True when value ``a`` of ``metric`` is strictly better than ``b`` (NaN never is)."""
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a > b if metric in HIGHER_IS_BETTER else a < b


def direction(metric: str) -> str | None:
    """``max``, ``min``, or None for a count such as ``bets``."""
    return "max" if metric in HIGHER_IS_BETTER else "min" if metric in LOWER_IS_BETTER else None
