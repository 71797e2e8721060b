"""The report's usage files: ``report/usage.csv`` (one row per trial: attempts, machine-hours,
GPU-hours, cost) and ``report/tables/usage.tex`` (one row per model and a total), from the
run's accounting (``store/usage.py``). Every attempt counts, the failed and pruned ones too:
what a search cost is what it ran, not only what it kept."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from coordinator.reporting import latex
from coordinator.reporting.fmt import tex_escape
from coordinator.store.files import atomic_write
from coordinator.store.rundir import RunStore
from coordinator.store.usage import RunUsage, Usage, run_usage

COLUMNS = ("number", "study", "attempts", "machine_hours", "gpu_hours", "cost")


def _cells(u: Usage) -> list[object]:
    """Full precision (the CSV's); the LaTeX columns choose their own decimals."""
    return [u.attempts, u.machine_hours, u.gpu_hours, u.cost]


def usage_table(use: RunUsage, pre: tuple[str, str] = ("", "")) -> str:
    """``usage.tex``: per model (study) and in all, the attempts and what they used; the cost
    column only when the registry priced a platform the run used."""
    unit = f" ({tex_escape(use.currency)})" if use.currency else ""
    cols = [latex.Col("Model"), latex.Col("Attempts"), latex.Col("Machine-hours"), latex.Col("GPU-hours")]
    rows = [[name, *_cells(u)] for name, u in sorted(use.by_study.items())]
    if len(rows) > 1:
        rows.append(["All", *_cells(use.total)])
    if use.priced:
        cols.append(latex.Col("Cost" + unit))
    else:
        rows = [r[:-1] for r in rows]
    what = "and cost " if use.priced else ""
    caption = (f"Compute used {what}per model: every attempt counts, failed and pruned ones too "
               "(a machine-hour is an hour of one slot)")
    return latex.render("model_summary.tex.j2", caption, "usage", cols, rows, *pre)


def write_usage_files(store: RunStore, out: Path, pre: tuple[str, str] = ("", "")) -> dict[str, Path]:
    use = run_usage(store)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for number, u in sorted(use.by_trial.items()):
        writer.writerow([number, use.study_of.get(number, ""), *("" if v is None else v for v in _cells(u))])
    files = {"usage": out / "usage.csv", "tex:usage": out / "tables" / "usage.tex"}
    atomic_write(files["usage"], buf.getvalue())
    atomic_write(files["tex:usage"], usage_table(use, pre))
    return files
