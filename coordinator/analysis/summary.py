"""The numbers of a comparison, computed from predictions alone (no files written here).

Per entry (model x calibration) and seed, every metric on all of its out-of-sample rows
pooled (all test seasons together), then the mean and sample standard deviation over
seeds; per season (the test season of a walk-forward fold, else the fold) the same on that
season's rows. The season-block bootstrap (``bootstrap.py``) adds each entry's AUC and
Brier difference to the best one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coordinator.analysis import bootstrap, metrics
from coordinator.analysis.predictions import Entry, Predictions, group
from coordinator.errors import ConfigError

MODEL_LABELS = {"glm": "GLM", "xgboost": "XGBoost", "random_forest": "Random forest", "mlp": "MLP"}
CALIBRATION_LABELS = {"none": "None", "platt": "Platt", "isotonic": "Isotonic"}


@dataclass(frozen=True)
class CompareOptions:
    """How a comparison is computed and shown.

    Attributes:
        models: table order of the models (default: by name).
        resamples: bootstrap resamples; ``bootstrap_seed`` seeds their draw.
        confidence: of the bootstrap intervals.
        figure_width: of each figure, in inches (a thesis column is about 4.5).
        caption_prefix, label_prefix: put before every LaTeX caption and label.
        labels: display names of models and calibrations (defaults: GLM, XGBoost, ...).
        title: of the HTML report and the preview document.
    """

    models: tuple[str, ...] | None = None
    resamples: int = 2000
    bootstrap_seed: int = 0
    confidence: float = 0.95
    figure_width: float = 4.5
    caption_prefix: str = ""
    label_prefix: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    title: str = "Model comparison"

    def label(self, name: str) -> str:
        return self.labels.get(name) or MODEL_LABELS.get(name) or CALIBRATION_LABELS.get(name) or name


@dataclass(frozen=True)
class Summary:
    """One entry's metrics: per seed, mean and std over seeds, and the same per season."""

    entry: Entry
    per_seed: dict[int, dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    per_season: dict[Any, dict[str, tuple[float, float]]]  # season -> metric -> (mean, std)
    per_season_seed: dict[Any, dict[int, dict[str, float]]]  # season -> seed -> metric -> value

    @property
    def model(self) -> str:
        return self.entry.model

    @property
    def calibration(self) -> str:
        return self.entry.calibration


@dataclass(frozen=True)
class Comparison:
    """Everything the outputs show."""

    task: str
    metrics: tuple[str, ...]
    summaries: tuple[Summary, ...]
    differences: tuple[bootstrap.Difference, ...]
    seasons: tuple[Any, ...]
    season_name: str  # "Season" (or the time column's name), or "Fold"
    seeds: tuple[int, ...]
    rows: int
    options: CompareOptions

    def best(self, metric: str) -> Summary | None:
        """The entry with the best mean of ``metric`` (first in table order on a tie)."""
        top: Summary | None = None
        for s in self.summaries:
            nan = float("nan")
            if top is None or metrics.better(metric, s.mean.get(metric, nan), top.mean.get(metric, nan)):
                top = s
        return top if metrics.direction(metric) else None


def _metrics_of(run: Predictions, names: Sequence[str], rows: Any = None) -> dict[str, float]:
    sel = slice(None) if rows is None else rows
    odds = run.odds[sel] if run.odds is not None and "roi" in names else None
    values = metrics.evaluate(run.task, run.y[sel], run.p[sel], odds)
    return {k: values[k] for k in names}


def summarize(entry: Entry, names: Sequence[str]) -> Summary:
    per_seed = {r.seed: _metrics_of(r, names) for r in entry.runs}
    mean, std = {}, {}
    for m in names:
        mean[m], std[m] = metrics.mean_std([per_seed[s][m] for s in per_seed])
    blocks = np.asarray([str(b) for b in entry.runs[0].blocks])
    seasons = sorted(set(entry.runs[0].blocks), key=lambda b: (str(type(b)), b))
    per_season: dict[Any, dict[str, tuple[float, float]]] = {}
    per_season_seed: dict[Any, dict[int, dict[str, float]]] = {}
    for season in seasons:
        rows = np.flatnonzero(blocks == str(season))
        by_seed = {r.seed: _metrics_of(r, names, rows) for r in entry.runs}
        per_season_seed[season] = by_seed
        per_season[season] = {m: metrics.mean_std([by_seed[s][m] for s in by_seed]) for m in names}
    return Summary(entry, per_seed, mean, std, per_season, per_season_seed)


def compare(preds: Sequence[Predictions], options: CompareOptions | None = None) -> Comparison:
    """The comparison of these predictions (model x calibration x seed)."""
    options = options or CompareOptions()
    if options.figure_width <= 0:
        raise ConfigError("must be > 0 inches", key="--figure-width")
    entries = group(preds, options.models)
    task = entries[0].runs[0].task
    odds = task == "classification" and all(r.odds is not None for e in entries for r in e.runs)
    names = metrics.names(task, odds)
    summaries = tuple(summarize(e, names) for e in entries)
    diffs: tuple[bootstrap.Difference, ...] = ()
    if task == "classification":
        diffs = tuple(bootstrap.paired_bootstrap(entries, bootstrap.METRICS, options.resamples,
                                                 options.bootstrap_seed, options.confidence))
    first = entries[0].runs[0]
    seasons = tuple(summaries[0].per_season)
    season_name = "Fold" if any(s is None for s in first.season) else (first.time_col or "Season").capitalize()
    seeds = tuple(sorted({s for e in entries for s in e.seeds}))
    return Comparison(task, names, summaries, diffs, seasons, season_name, seeds, len(first.y), options)
