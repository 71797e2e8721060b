"""The comparison's data files: per model a folder with ``results.json``, ``metrics.csv``,
``per_season.csv`` and ``predictions.csv``; at the top ``comparison.csv``,
``per_season.csv`` and ``significance.csv``. Full precision (Python's shortest exact
float), an empty cell (JSON null) for an undefined value; same comparison, same bytes."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from coordinator.analysis.files import safe_name, write_text
from coordinator.analysis.summary import Comparison, Summary
from coordinator.reporting.fmt import csv_cell


def _value(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return csv_cell(v)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_value(v) for v in row])
    return buf.getvalue()


def json_text(data: Any) -> str:
    return json.dumps(_json_value(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _summary_json(s: Summary, c: Comparison) -> dict[str, Any]:
    return {"seeds": list(s.entry.seeds), "mean": s.mean, "std": s.std,
            "per_seed": {str(k): v for k, v in s.per_seed.items()},
            "per_season": {str(season): {"mean": {m: v[0] for m, v in vals.items()},
                                         "std": {m: v[1] for m, v in vals.items()},
                                         "per_seed": {str(k): x for k, x in s.per_season_seed[season].items()}}
                           for season, vals in s.per_season.items()},
            "bootstrap": {d.metric: {"best": f"{d.best_model}/{d.best_calibration}", "difference": d.observed,
                                     "ci": [d.low, d.high], "excludes_zero": d.excludes_zero, "is_best": d.is_best}
                          for d in c.differences if (d.model, d.calibration) == (s.model, s.calibration)},
            "sources": [r.source for r in s.entry.runs]}


def write_model_files(c: Comparison, out: Path) -> dict[str, Path]:
    """Per model: its results as JSON and CSV, and every prediction."""
    files: dict[str, Path] = {}
    names = list(c.metrics)
    for model in dict.fromkeys(s.model for s in c.summaries):
        mine = [s for s in c.summaries if s.model == model]
        folder = out / safe_name(model)
        doc = {"model": model, "label": c.options.label(model), "task": c.task, "metrics": names,
               "params": {str(r.seed): r.params for r in mine[0].entry.runs},
               "calibrations": {s.calibration: _summary_json(s, c) for s in mine}}
        write_text(folder / "results.json", json_text(doc))
        rows: list[list[Any]] = []
        for s in mine:
            rows += [[s.calibration, seed, *(vals[m] for m in names)] for seed, vals in s.per_seed.items()]
            rows += [[s.calibration, "mean", *(s.mean[m] for m in names)],
                     [s.calibration, "std", *(s.std[m] for m in names)]]
        write_text(folder / "metrics.csv", csv_text(["calibration", "seed", *names], rows))
        rows = []
        for s in mine:
            for season, by_seed in s.per_season_seed.items():
                rows += [[s.calibration, season, seed, *(v[m] for m in names)] for seed, v in by_seed.items()]
                rows += [[s.calibration, season, stat, *(s.per_season[season][m][i] for m in names)]
                         for i, stat in enumerate(("mean", "std"))]
        write_text(folder / "per_season.csv", csv_text(["calibration", "season", "seed", *names], rows))
        rows = []
        for s in mine:
            for r in s.entry.runs:
                odds = r.odds.tolist() if r.odds is not None else [math.nan] * len(r.y)
                rows += [[s.calibration, r.seed, int(f), season, int(row), int(y) if c.task == "classification"
                          else y, p, o] for f, season, row, y, p, o in
                         zip(r.fold.tolist(), r.season, r.row.tolist(), r.y.tolist(), r.p.tolist(), odds,
                             strict=True)]
        write_text(folder / "predictions.csv",
                   csv_text(["calibration", "seed", "fold", "season", "row", "y", "p", "odds"], rows))
        files.update({f"{model}:{n}": folder / n for n in ("results.json", "metrics.csv", "per_season.csv",
                                                           "predictions.csv")})
    return files


def write_tables(c: Comparison, out: Path) -> dict[str, Path]:
    names = list(c.metrics)
    head = ["model", "calibration", "seeds", "rows"]
    rows = [[s.model, s.calibration, len(s.entry.seeds), c.rows,
             *(x for m in names for x in (s.mean[m], s.std[m]))] for s in c.summaries]
    write_text(out / "comparison.csv", csv_text(head + [f"{m}_{k}" for m in names for k in ("mean", "std")], rows))
    rows = [[s.model, s.calibration, season, *(x for m in names for x in vals[m])]
            for s in c.summaries for season, vals in s.per_season.items()]
    write_text(out / "per_season.csv", csv_text(["model", "calibration", "season"] +
                                                [f"{m}_{k}" for m in names for k in ("mean", "std")], rows))
    files = {"comparison.csv": out / "comparison.csv", "per_season.csv": out / "per_season.csv"}
    if c.differences:
        rows = [[d.metric, d.model, d.calibration, d.best_model, d.best_calibration, d.observed, d.low, d.high,
                 d.excludes_zero, d.resamples, c.options.confidence, c.options.bootstrap_seed]
                for d in c.differences]
        write_text(out / "significance.csv", csv_text(
            ["metric", "model", "calibration", "best_model", "best_calibration", "difference", "ci_low", "ci_high",
             "excludes_zero", "resamples", "confidence", "bootstrap_seed"], rows))
        files["significance.csv"] = out / "significance.csv"
    return files
