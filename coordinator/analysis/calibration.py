"""Probability calibration (none, platt, isotonic), fitted only on an inner split of the
training window, never on the test season.

The definitions live in ``runners/calibrate.py``, the file the comparison job calibrates
with on the trial's host; it is loaded here by path (the coordinator never imports the
``runners`` folder as a package), so both sides share one implementation. See that file
and docs/compare.md for the rule: the calibration set is the window's last season(s)
(``inner_seasons``), scored by a model trained on the window's earlier seasons; the test
season is scored by a model trained on the whole window and mapped by the calibrator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from coordinator import resources
from coordinator.analysis.metrics import Array
from coordinator.errors import ConfigError

METHODS = ("none", "platt", "isotonic")
TrainPredict = Callable[[Any, Any], Any]


def _impl() -> Any:
    return resources.runner_module("calibrate")  # the rule the job uses on the host, written once


def _check(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown calibration {method!r}", key="--calibration", valid=METHODS)


def fit(method: str, scores: Any, y: Any) -> Callable[[Any], Array]:
    """The calibration map fitted on (scores, y): uncalibrated -> calibrated probabilities."""
    _check(method)
    try:
        mapping: Callable[[Any], Array] = _impl().fit(method, scores, y)
    except _impl().CalibrationProblem as exc:
        raise ConfigError(str(exc), key="--calibration") from None
    return mapping


def inner_split(window: Any, y: Any, times: Any = None, inner_seasons: int = 1,
                inner_fraction: float = 0.25, seed: int = 0) -> tuple[Array, Array, str]:
    """(rows the inner model trains on, rows the calibrator is fitted on, in words)."""
    out: tuple[Array, Array, str] = _impl().inner_split(window, y, times, inner_seasons, inner_fraction, seed)
    return out


def calibrate_test_season(methods: Sequence[str], train_predict: TrainPredict, y: Any, times: Any,
                          test_season: Any, *, inner_seasons: int = 1, inner_fraction: float = 0.25,
                          seed: int = 0) -> dict[str, Array]:
    """Calibrated probabilities of the rows of ``test_season``, per method.

    The training window is every row with ``times < test_season``; ``train_predict(train_rows,
    predict_rows)`` trains the model on the first set of row indices and returns its
    probabilities for the second. The labels of the test season (and of anything after
    it) are never passed to a model or a calibrator.
    """
    for m in methods:
        _check(m)
    t = np.asarray(times)
    window = np.flatnonzero(t < test_season)
    test = np.flatnonzero(t == test_season)
    if not len(test):
        raise ConfigError(f"no rows in the test season {test_season!r}", key="--time-col")
    if not len(window):
        raise ConfigError(f"no rows before the test season {test_season!r} to train on", key="--time-col")
    try:
        probs, _ = _impl().calibrated_test(list(methods), train_predict, window, test, y, t, inner_seasons,
                                           inner_fraction, seed)
    except _impl().CalibrationProblem as exc:
        raise ConfigError(str(exc), key="--calibration") from None
    return {m: np.asarray(v, dtype=np.float64) for m, v in probs.items()}
