"""Probability calibration, defined once for both sides: the comparison job
(``compare_job.py``) calibrates with it on the trial's host, and the coordinator
(``coordinator/analysis/calibration.py``) loads this file by path (it never imports
``runners``) for the same functions. numpy and scikit-learn only; nothing from ``runners``.

The rule that matters: a calibrator is fitted on an *inner split of the training window*
(data strictly before the test season), never on the test season.

* Inner split, walk-forward: the last ``inner_seasons`` distinct time values of the window
  (default 1) are the calibration set; the model that scores them is trained on the
  window's earlier seasons. A window of a single season (or data without a time column)
  falls back to a seeded, stratified ``inner_fraction`` (default 0.25) of its rows.
* The model whose test predictions are calibrated is trained on the whole window, as with
  ``none``: the three methods share one uncalibrated prediction per row, so only the
  mapping differs (as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` refits on
  all data after calibrating on held-out predictions).
* ``platt``: a logistic regression of the label on logit(p), ``q = 1 / (1 + exp(-(a *
  logit(p) + b)))``, fitted by Newton's method on Platt's smoothed targets
  ((N+ + 1) / (N+ + 2) for positives, 1 / (N- + 2) for negatives). ``isotonic``: a
  non-decreasing step function (scikit-learn's IsotonicRegression, clipped to [0, 1] and
  outside the fitted range).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

METHODS = ("none", "platt", "isotonic")
_EPS = 1e-12


class CalibrationProblem(ValueError):
    """Calibration cannot be done as asked (a permanent failure: it would fail again)."""


def check_methods(methods: Any) -> list[str]:
    """The methods as a list without repeats, in the given order; a bad name is refused."""
    names = [methods] if isinstance(methods, str) else list(methods or ["none"])
    out: list[str] = []
    for name in names:
        if name not in METHODS:
            raise CalibrationProblem("unknown calibration %r (valid: %s)" % (name, ", ".join(METHODS)))
        if name not in out:
            out.append(name)
    return out


def logit(p: Any) -> Any:
    import numpy as np

    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def fit_platt(scores: Any, y: Any) -> tuple[float, float]:
    """(a, b) of Platt's sigmoid on logit(scores), by damped Newton steps (deterministic)."""
    import numpy as np

    f, y = logit(scores), np.asarray(y, dtype=np.float64)
    pos, neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y > 0.5, (pos + 1) / (pos + 2), 1 / (neg + 2))

    def loss(a: float, b: float) -> float:
        z = a * f + b
        return float(np.sum(np.logaddexp(0, z) - t * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        q = 1 / (1 + np.exp(-(a * f + b)))
        g = np.array([np.dot(q - t, f), np.sum(q - t)])
        w = q * (1 - q)
        h = np.array([[np.dot(w, f * f), np.dot(w, f)], [np.dot(w, f), np.sum(w)]]) + 1e-10 * np.eye(2)
        step = np.linalg.solve(h, g)
        scale = 1.0
        while scale > 1e-10:
            na, nb = a - scale * step[0], b - scale * step[1]
            new = loss(na, nb)
            if new <= current:
                break
            scale /= 2
        else:
            break
        done = abs(current - new) < 1e-12 * max(1.0, abs(current))
        a, b, current = float(na), float(nb), new
        if done or float(np.max(np.abs(g))) < 1e-10:
            break
    return a, b


def fit(method: str, scores: Any, y: Any) -> Callable[[Any], Any]:
    """A function mapping uncalibrated probabilities to calibrated ones, fitted on
    (scores, y). ``none`` is the identity."""
    import numpy as np

    if method == "none":
        return lambda p: np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(set(y.tolist())) < 2:
        raise CalibrationProblem("the calibration set has one class only (%d rows)" % len(y))
    if method == "platt":
        a, b = fit_platt(scores, y)
        return lambda p: 1 / (1 + np.exp(-(a * logit(p) + b)))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(np.asarray(scores, dtype=np.float64), y)
        return lambda p: np.asarray(iso.predict(np.asarray(p, dtype=np.float64)), dtype=np.float64)
    raise CalibrationProblem("unknown calibration %r (valid: %s)" % (method, ", ".join(METHODS)))


def inner_split(window: Any, y: Any, times: Any = None, inner_seasons: int = 1, inner_fraction: float = 0.25,
                seed: int = 0) -> tuple[Any, Any, str]:
    """(rows the inner model trains on, rows the calibrator is fitted on, a description),
    both subsets of ``window`` (row indices into ``y`` and ``times``)."""
    import numpy as np

    window = np.asarray(window)
    if times is not None:
        values = sorted(set(np.asarray(times)[window].tolist()))
        if len(values) >= 2:
            k = max(1, min(int(inner_seasons), len(values) - 1))
            held = set(values[-k:])
            mask = np.array([v in held for v in np.asarray(times)[window].tolist()], dtype=bool)
            span = str(values[-k]) if k == 1 else "%s to %s" % (values[-k], values[-1])
            return window[~mask], window[mask], "calibrated on %s (the window's last)" % span
    if not 0 < inner_fraction < 1:
        raise CalibrationProblem("inner_fraction must be between 0 and 1, got %r" % inner_fraction)
    from sklearn.model_selection import train_test_split

    labels = np.asarray(y)[window]
    n_cal = int(math.ceil(inner_fraction * len(window)))
    stratify = labels if len(set(labels.tolist())) == 2 and min(np.bincount(labels.astype(int))) >= 2 else None
    try:
        a, b = train_test_split(window, test_size=n_cal, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise CalibrationProblem("cannot split %d training rows for calibration: %s" % (len(window), exc)) from None
    return np.sort(a), np.sort(b), "calibrated on a random %.0f%% of the window" % (100 * inner_fraction)


TrainPredict = Callable[[Any, Any], Any]  # (training rows, rows to predict) -> probabilities


def calibrated_test(methods: Any, train_predict: TrainPredict, window: Any, test: Any, y: Any, times: Any = None,
                    inner_seasons: int = 1, inner_fraction: float = 0.25, seed: int = 0) -> tuple[dict[str, Any], str]:
    """Test-row probabilities per method, and how the calibration set was chosen.

    ``train_predict(train_rows, predict_rows)`` trains the model on ``train_rows`` and
    returns its probabilities for ``predict_rows``; ``window`` are the training rows (all
    strictly before the test season when ``times`` is given), ``test`` the test rows. The
    labels of ``test`` are never read; a window that reaches into the test period is refused.
    """
    import numpy as np

    methods = check_methods(methods)
    window, test = np.asarray(window), np.asarray(test)
    if len(set(window.tolist()) & set(test.tolist())):
        raise CalibrationProblem("the training window and the test rows overlap")
    if times is not None and len(window) and len(test):
        t = np.asarray(times)
        if max(t[window].tolist()) >= min(t[test].tolist()):
            raise CalibrationProblem("the training window reaches the test season %s" % min(t[test].tolist()))
    raw = np.asarray(train_predict(window, test), dtype=np.float64)
    out: dict[str, Any] = {}
    how = "uncalibrated"
    wanted = [m for m in methods if m != "none"]
    if wanted:
        fit_rows, cal_rows, how = inner_split(window, y, times, inner_seasons, inner_fraction, seed)
        labels = np.asarray(y)[fit_rows]
        if len(fit_rows) == 0 or len(set(labels.tolist())) < 2:
            raise CalibrationProblem("the inner training rows (%d) need both classes" % len(fit_rows))
        inner = np.asarray(train_predict(fit_rows, cal_rows), dtype=np.float64)
        cal_y = np.asarray(y)[cal_rows]
        for method in wanted:
            out[method] = fit(method, inner, cal_y)(raw)
    for method in methods:
        out.setdefault(method, raw)
    return {m: out[m] for m in methods}, how
