"""The comparison's tables as values (cells with numbers, decimals and emphasis), rendered
by ``latex.py`` and ``html.py`` alike, so the PDF and the HTML report show the same digits.

Decimals are fixed per column: 3 for AUC, Brier, log loss, ECE, accuracy and R²; ROI in
percent with 1; for RMSE and MAE enough for 4 significant digits of the column's largest
value. The best mean of a column is bold, by the metric's direction (AUC up, Brier down,
...); values equal to it at the shown decimals are bold too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.analysis import metrics
from coordinator.analysis.summary import Comparison, Summary

FIXED_DECIMALS = {"auc": 3, "brier": 3, "logloss": 3, "ece": 3, "accuracy": 3, "r2": 3, "roi": 1, "bets": 0}
SCALE = {"roi": 100.0}
UNITS = {"roi": " (%)"}
SEASON_METRICS = {"classification": ("auc", "brier", "roi"), "regression": ("rmse", "r2")}


@dataclass(frozen=True)
class Cell:
    """Text, or a number (mean, optional ± std or [low, high]) shown with ``decimals``."""

    text: str = ""
    mean: float | None = None
    std: float | None = None
    low: float | None = None
    high: float | None = None
    decimals: int = 3
    scale: float = 1.0
    bold: bool = False
    star: bool = False

    @property
    def numeric(self) -> bool:
        return self.mean is not None or self.low is not None

    def number(self, value: float) -> str:
        return f"{value * self.scale:.{self.decimals}f}"


@dataclass(frozen=True)
class Column:
    title: str
    arrow: str | None = None  # "up", "down" or None
    numeric: bool = True
    tex: str | None = None  # a LaTeX title where plain text will not do (R^2)


@dataclass(frozen=True)
class Table:
    name: str  # file stem
    title: str  # a heading for it (the HTML report)
    caption: str  # plain text (escaped when rendered)
    columns: tuple[Column, ...]
    groups: tuple[tuple[tuple[Cell, ...], ...], ...]  # rows, in groups set apart by a small space


def decimals(metric: str, values: Sequence[float]) -> int:
    if metric in FIXED_DECIMALS:
        return FIXED_DECIMALS[metric]
    finite = [abs(v) for v in values if math.isfinite(v)]
    top = max(finite) if finite else 1.0
    return max(0, 3 - math.floor(math.log10(top))) if top > 0 else 3


def metric_column(metric: str) -> Column:
    d = metrics.direction(metric)
    tex = "$R^2$" if metric == "r2" else None
    return Column(metrics.LABELS[metric] + UNITS.get(metric, ""), {"max": "up", "min": "down"}.get(d or ""),
                  tex=tex + UNITS.get(metric, "") if tex else None)


def _bold_flags(metric: str, means: Sequence[float], dec: int, scale: float) -> list[bool]:
    if metrics.direction(metric) is None:
        return [False] * len(means)
    best = None
    for v in means:
        if best is None or metrics.better(metric, v, best):
            best = v
    if best is None or not math.isfinite(best):
        return [False] * len(means)
    shown = f"{best * scale:.{dec}f}"
    return [math.isfinite(v) and f"{v * scale:.{dec}f}" == shown for v in means]


def _groups(c: Comparison, rows: list[tuple[Cell, ...]]) -> tuple[tuple[tuple[Cell, ...], ...], ...]:
    out: list[list[tuple[Cell, ...]]] = []
    last = None
    for s, row in zip(c.summaries, rows, strict=True):
        if s.model != last:
            out.append([])
            last = s.model
        out[-1].append(row)
    return tuple(tuple(g) for g in out)


def _names(c: Comparison, s: Summary, first: bool) -> tuple[Cell, Cell]:
    return Cell(c.options.label(s.model) if first else ""), Cell(c.options.label(s.calibration))


def _name_cells(c: Comparison) -> list[tuple[Cell, Cell]]:
    out, last = [], None
    for s in c.summaries:
        out.append(_names(c, s, s.model != last))
        last = s.model
    return out


def comparison_table(c: Comparison) -> Table:
    cols: list[list[Cell]] = []
    shown = [m for m in c.metrics if m != "bets"]  # the number of bets: in the CSV files
    for m in shown:
        means = [s.mean[m] for s in c.summaries]
        dec, scale = decimals(m, means), SCALE.get(m, 1.0)
        flags = _bold_flags(m, means, dec, scale)
        cols.append([Cell(mean=s.mean[m], std=s.std[m], decimals=dec, scale=scale, bold=b)
                     for s, b in zip(c.summaries, flags, strict=True)])
    rows = [(*names, *(col[i] for col in cols)) for i, names in enumerate(_name_cells(c))]
    seeds = len(c.seeds)
    spread = f"mean ± standard deviation over {seeds} seeds" if seeds > 1 else "one seed"
    caption = (f"{c.options.caption_prefix}Out-of-sample comparison on {c.rows} rows of {len(c.seasons)} test "
               f"{_unit(c)}s ({_span(c)}), {spread}; the best value per column in bold")
    if "roi" in c.metrics:
        caption += "; ROI: flat stake on every bet with positive expected value (p × odds > 1)"
    columns = (Column("Model", numeric=False), Column("Calibration", numeric=False),
               *(metric_column(m) for m in shown))
    return Table("comparison", "Comparison", caption, columns, _groups(c, rows))


def per_season_tables(c: Comparison) -> list[Table]:
    out = []
    for m in SEASON_METRICS[c.task]:
        if m not in c.metrics:
            continue
        cols: list[list[Cell]] = []
        for season in c.seasons:
            means = [s.per_season[season][m][0] for s in c.summaries]
            dec, scale = decimals(m, means), SCALE.get(m, 1.0)
            flags = _bold_flags(m, means, dec, scale)
            cols.append([Cell(mean=v, decimals=dec, scale=scale, bold=b) for v, b in zip(means, flags, strict=True)])
        means = [s.mean[m] for s in c.summaries]
        dec, scale = decimals(m, means), SCALE.get(m, 1.0)
        flags = _bold_flags(m, means, dec, scale)
        cols.append([Cell(mean=v, decimals=dec, scale=scale, bold=b) for v, b in zip(means, flags, strict=True)])
        rows = [(*names, *(col[i] for col in cols)) for i, names in enumerate(_name_cells(c))]
        col = metric_column(m)
        columns = (Column("Model", numeric=False), Column("Calibration", numeric=False),
                   *(Column(str(s)) for s in c.seasons), Column("All"))
        seeds = f", mean over {len(c.seeds)} seeds" if len(c.seeds) > 1 else ""
        caption = (f"{c.options.caption_prefix}{col.title} per test {_unit(c)}{seeds} "
                   f"({'higher' if col.arrow == 'up' else 'lower'} is better; the best per {_unit(c)} in bold)")
        out.append(Table(f"per_season_{m}", f"{col.title} per {_unit(c)}", caption, columns, _groups(c, rows)))
    return out


def significance_table(c: Comparison) -> Table | None:
    if not c.differences:
        return None
    by = {(d.model, d.calibration, d.metric): d for d in c.differences}
    dec = {"auc": 3, "brier": 4}
    rows = []
    for names, s in zip(_name_cells(c), c.summaries, strict=True):
        cells: list[Cell] = list(names)
        for m in ("auc", "brier"):
            d = by[(s.model, s.calibration, m)]
            if d.is_best:
                cells += [Cell("best"), Cell("")]
            else:
                cells += [Cell(mean=d.observed, decimals=dec[m], star=d.excludes_zero),
                          Cell(low=d.low, high=d.high, decimals=dec[m])]
        rows.append(tuple(cells))
    first = c.differences[0]
    pct = f"{100 * c.options.confidence:g}"
    caption = (f"{c.options.caption_prefix}Difference to the best entry (AUC: "
               f"{c.options.label(first.best_model)} / {c.options.label(first.best_calibration)}; Brier: "
               f"{_best_name(c, 'brier')}) with {pct}% paired bootstrap intervals by {_unit(c)} block "
               f"({c.options.resamples} resamples, seed {c.options.bootstrap_seed}); * the interval excludes 0")
    columns = (Column("Model", numeric=False), Column("Calibration", numeric=False), Column("Δ AUC"),
               Column(f"{pct}% CI"), Column("Δ Brier"), Column(f"{pct}% CI"))
    return Table("significance", "Differences to the best", caption, columns, _groups(c, rows))


def _best_name(c: Comparison, metric: str) -> str:
    d = next(d for d in c.differences if d.metric == metric)
    return f"{c.options.label(d.best_model)} / {c.options.label(d.best_calibration)}"


def _unit(c: Comparison) -> str:
    return "fold" if c.season_name == "Fold" else "season"


def _span(c: Comparison) -> str:
    if not c.seasons:
        return ""
    if len(c.seasons) == 1:
        return f"{c.season_name.lower()} {c.seasons[0]}"
    return f"{c.season_name.lower()}s {c.seasons[0]} to {c.seasons[-1]}"
