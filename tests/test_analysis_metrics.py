"""The comparison's metrics, each checked against scikit-learn (or a hand computation) on
the same predictions, ties, weights and edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from coordinator.analysis import metrics


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.4).astype(float)
    p = np.round(np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.2, 500), 0, 1), 2)  # ties and exact 0/1
    w = rng.integers(0, 4, 500).astype(float)
    return y, p, w


def test_classification_metrics_match_scikit_learn(data) -> None:
    y, p, w = data
    assert np.any(p == 0) and np.any(p == 1) and len(set(p)) < 120  # the hard cases are there
    assert metrics.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert metrics.auc(y, p, w) == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert metrics.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert metrics.brier(y, p, w) == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), abs=1e-12)
    assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
    assert metrics.log_loss(y, p, w) == pytest.approx(skm.log_loss(y, p, sample_weight=w, labels=[0, 1]), rel=1e-12)
    assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p >= 0.5), abs=1e-12)


def test_ece_by_hand() -> None:
    """10 equal-width bins; p = 1.0 falls in the last; 0.1 opens bin 1."""
    y = np.array([0, 1, 1, 0, 1, 1])
    p = np.array([0.05, 0.1, 0.15, 0.95, 1.0, 0.9])
    # bin 0: {0.05} y 0 -> |0 - 0.05|; bin 1: {0.1, 0.15} -> |1 - 0.125|; bin 9: {0.95, 1.0, 0.9} -> |2/3 - 0.95|
    expected = (1 * 0.05 + 2 * 0.875 + 3 * abs(2 / 3 - 0.95)) / 6
    assert metrics.ece(y, p) == pytest.approx(expected, abs=1e-12)
    assert list(metrics.bin_index(p)) == [0, 1, 1, 9, 9, 9]
    assert metrics.ece([0, 1], [0.0, 1.0]) == 0.0


def test_roi_flat_stake_on_positive_expected_value() -> None:
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.6, 0.6, 0.3, 0.5, 0.9])
    odds = np.array([2.0, 1.5, 4.0, 1.9, np.nan])
    # bets: 0.6*2 = 1.2 (won, +1), 0.6*1.5 = 0.9 (no), 0.3*4 = 1.2 (won, +3), 0.5*1.9 = 0.95 (no), nan: no
    roi, bets = metrics.betting(y, p, odds)
    assert bets == 2 and roi == pytest.approx((1.0 + 3.0) / 2)
    roi, bets = metrics.betting(np.array([0, 0]), np.array([0.6, 0.3]), np.array([2.0, 4.0]))
    assert bets == 2 and roi == pytest.approx(-1.0)
    roi, bets = metrics.betting(y, np.zeros(5), odds)
    assert bets == 0 and math.isnan(roi)
    assert metrics.evaluate("classification", y, p, odds)["roi"] == pytest.approx(2.0)


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 200)
    p = y + rng.normal(0, 1, 200)
    got = metrics.evaluate("regression", y, p)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)


def test_undefined_values_and_aggregation() -> None:
    assert math.isnan(metrics.auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert metrics.mean_std([0.7, 0.8, 0.9]) == pytest.approx((0.8, 0.1))
    mean, std = metrics.mean_std([0.7])
    assert mean == 0.7 and math.isnan(std)
    assert metrics.mean_std([0.5, math.nan, 0.7]) == pytest.approx((0.6, math.sqrt(0.02)))
    assert metrics.better("auc", 0.8, 0.7) and metrics.better("brier", 0.1, 0.2)
    assert not metrics.better("brier", math.nan, 0.2) and metrics.better("auc", 0.5, math.nan)
    assert metrics.direction("bets") is None and metrics.direction("roi") == "max"
