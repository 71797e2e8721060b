"""The paired season-block bootstrap: reproducible with a seed, weighted metrics exact,
intervals that tell a real difference from none."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from coordinator.analysis import bootstrap, metrics
from coordinator.analysis.predictions import group, load
from tests.compare_data import synthetic_doc, synthetic_set, write_doc


def test_same_seed_same_intervals_other_seed_others(tmp_path) -> None:
    entries = group(load(synthetic_set(tmp_path)))
    a = bootstrap.paired_bootstrap(entries, resamples=500, seed=11)
    b = bootstrap.paired_bootstrap(entries, resamples=500, seed=11)
    c = bootstrap.paired_bootstrap(entries, resamples=500, seed=12)
    assert a == b and a != c
    assert len(a) == 2 * len(entries)  # AUC and Brier for every entry


def test_a_clear_difference_excludes_zero_and_the_best_is_marked(tmp_path) -> None:
    entries = group(load(synthetic_set(tmp_path)))
    diffs = {(d.model, d.calibration, d.metric): d for d in bootstrap.paired_bootstrap(entries, resamples=1000)}
    best = diffs[("good", "none", "auc")]
    assert best.is_best and best.observed == 0 and not best.excludes_zero
    noise = diffs[("noise", "none", "auc")]
    assert noise.observed < -0.1 and noise.high < 0 and noise.excludes_zero
    assert noise.low <= noise.observed <= noise.high
    brier = diffs[("noise", "none", "brier")]
    assert brier.best_model == "good" and brier.low > 0 and brier.excludes_zero
    # observed differences are the table's: the mean over seeds of each entry's metric
    good = [e for e in entries if e.key == "good/none"][0]
    fair = [e for e in entries if e.key == "fair/none"][0]
    table = np.mean([metrics.auc(r.y, r.p) for r in fair.runs]) - np.mean([metrics.auc(r.y, r.p) for r in good.runs])
    assert diffs[("fair", "none", "auc")].observed == pytest.approx(table, abs=1e-12)


def test_identical_predictions_differ_by_exactly_zero(tmp_path) -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(120) < 0.5).astype(float)
    p = rng.random(120)
    seasons = np.repeat([1, 2, 3], 40).tolist()
    paths = [write_doc(tmp_path / f"{m}.json", synthetic_doc(m, 0, {"none": p}, y, seasons)) for m in ("a", "b")]
    for d in bootstrap.paired_bootstrap(group(load(paths)), resamples=200):
        assert d.observed == 0 and d.low == 0 and d.high == 0 and not d.excludes_zero


def test_weighted_metrics_equal_scikit_learn_with_sample_weights() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.3).astype(float)
    p = np.round(rng.random(300), 1)  # many ties
    counts = bootstrap.block_counts(5, 7, seed=1)
    assert counts.shape == (7, 5) and np.all(counts.sum(axis=1) == 5)
    block = np.repeat(np.arange(5), 60)
    w = counts[:, block]
    aucs = bootstrap._auc_weighted(y, p, w)
    briers = bootstrap._brier_weighted(y, p, w)
    for i in range(7):
        assert aucs[i] == pytest.approx(roc_auc_score(y, p, sample_weight=w[i]), abs=1e-12)
        assert briers[i] == pytest.approx(brier_score_loss(y, p, sample_weight=w[i]), abs=1e-12)


def test_season_blocks_are_resampled_whole() -> None:
    """Rows of one season share a weight in every resample (the block), and every season
    is drawn about equally often."""
    counts = bootstrap.block_counts(4, 4000, seed=0)
    assert counts.mean(axis=0) == pytest.approx(np.ones(4), abs=0.05)
    assert set(np.unique(counts)) <= {0.0, 1.0, 2.0, 3.0, 4.0}
