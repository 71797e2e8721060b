"""Calibration: Platt and isotonic fitted right, and fitted only on the training window's
inner split: the test season's labels never reach a model or a calibrator (a deliberately
leaky calibration is caught by the same check)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from coordinator.analysis import calibration
from coordinator.errors import ConfigError


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_platt_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(0)
    s = rng.uniform(0.02, 0.98, 20000)
    y = (rng.random(len(s)) < 1 / (1 + np.exp(-(2.0 * _logit(s) - 0.5)))).astype(float)
    a, b = calibration._impl().fit_platt(s, y)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)
    ref = LogisticRegression(C=1e12, max_iter=1000).fit(_logit(s)[:, None], y)  # hard labels, no penalty
    assert a == pytest.approx(ref.coef_[0, 0], abs=2e-3) and b == pytest.approx(ref.intercept_[0], abs=2e-3)
    mapped = calibration.fit("platt", s, y)(np.array([0.1, 0.5, 0.9]))
    assert np.all(np.diff(mapped) > 0) and np.all((mapped > 0) & (mapped < 1))


def test_isotonic_is_scikit_learns_and_none_is_the_identity() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(300)
    y = (rng.random(300) < s**2).astype(float)
    grid = np.linspace(-0.1, 1.1, 50)
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y).predict(grid)
    assert np.array_equal(calibration.fit("isotonic", s, y)(grid), ref)
    assert np.array_equal(calibration.fit("none", s, y)(grid), grid)
    with pytest.raises(ConfigError, match="one class"):
        calibration.fit("platt", s, np.zeros(300))
    with pytest.raises(ConfigError, match="unknown calibration 'beta'"):
        calibration.fit("beta", s, y)


@pytest.fixture
def seasons() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    times = np.repeat(np.arange(2015, 2020), 150)
    X = rng.normal(0, 1, (len(times), 3))
    y = (rng.random(len(times)) < 1 / (1 + np.exp(-(X @ np.array([1.0, -0.5, 0.2]))))).astype(float)
    return X, y, times


def _glm(X: np.ndarray, y: np.ndarray, seen: list[np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def train_predict(train: np.ndarray, predict: np.ndarray) -> np.ndarray:
        seen.append(np.asarray(train))
        model = LogisticRegression(max_iter=500).fit(X[train], y[train])
        return model.predict_proba(X[predict])[:, 1]
    return train_predict


def _ours(X: np.ndarray, y: np.ndarray, times: np.ndarray, seen: list[np.ndarray]) -> dict[str, np.ndarray]:
    return calibration.calibrate_test_season(["none", "platt", "isotonic"], _glm(X, y, seen), y, times, 2019)


def _leaky(X: np.ndarray, y: np.ndarray, times: np.ndarray, seen: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The mistake the rule forbids: the calibrator fitted on the test season itself."""
    test = np.flatnonzero(times == 2019)
    raw = _glm(X, y, seen)(np.flatnonzero(times < 2019), test)
    return {m: calibration.fit(m, raw, y[test])(raw) for m in ("none", "platt", "isotonic")}


def _unseen(calibrate, X, y, times) -> bool:  # type: ignore[no-untyped-def]
    """True when flipping every label of the test season changes no calibrated probability."""
    before = calibrate(X, y, times, [])
    flipped = y.copy()
    flipped[times == 2019] = 1 - flipped[times == 2019]
    after = calibrate(X, flipped, times, [])
    return all(np.array_equal(before[m], after[m]) for m in before)


def test_calibration_never_sees_the_test_season(seasons) -> None:
    X, y, times = seasons
    assert _unseen(_ours, X, y, times)
    assert not _unseen(_leaky, X, y, times)  # the check catches a leak
    seen: list[np.ndarray] = []
    out = _ours(X, y, times, seen)
    assert len(seen) == 2  # the window's model and the inner model; no row of 2019 in either
    assert all(times[rows].max() < 2019 for rows in seen)
    assert set(times[seen[1]]) == {2015, 2016, 2017}  # the inner model leaves 2018 out: calibration set
    assert not np.array_equal(out["platt"], out["none"])
    assert np.array_equal(np.argsort(out["platt"], kind="stable"), np.argsort(out["none"], kind="stable"))


def test_the_calibration_set_is_used(seasons) -> None:
    """Flipping the inner split's labels (season 2018) does change the calibrated output,
    so the invariance above is not trivial."""
    X, y, times = seasons
    before = _ours(X, y, times, [])
    flipped = y.copy()
    flipped[times == 2018] = 1 - flipped[times == 2018]
    after = _ours(X, flipped, times, [])
    assert not np.array_equal(before["platt"], after["platt"])


def test_a_window_reaching_the_test_season_is_refused(seasons) -> None:
    X, y, times = seasons
    impl = calibration._impl()
    window, test = np.flatnonzero(times <= 2019), np.flatnonzero(times == 2019)
    with pytest.raises(impl.CalibrationProblem, match="overlap"):
        impl.calibrated_test(["platt"], _glm(X, y, []), window, test, y, times)
    window = np.flatnonzero(times != 2018)
    with pytest.raises(impl.CalibrationProblem, match="reaches the test season"):
        impl.calibrated_test(["platt"], _glm(X, y, []), window, np.flatnonzero(times == 2018), y, times)


def test_inner_split_without_seasons_is_a_seeded_stratified_share() -> None:
    y = np.array([0, 1] * 50, dtype=float)
    fit_a, cal_a, how = calibration.inner_split(np.arange(100), y, None, inner_fraction=0.2, seed=3)
    fit_b, cal_b, _ = calibration.inner_split(np.arange(100), y, None, inner_fraction=0.2, seed=3)
    assert np.array_equal(cal_a, cal_b) and len(cal_a) == 20 and y[cal_a].sum() == 10
    assert not set(fit_a) & set(cal_a) and "random 20%" in how
    _, cal, how = calibration.inner_split(np.arange(100), y, np.repeat([1, 2, 3, 4], 25), inner_seasons=2)
    assert list(cal) == list(range(50, 100)) and "3 to 4" in how
