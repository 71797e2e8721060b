"""From comparison jobs' predictions files to every output of ``coord compare``, in one
pure function of the files (no training, no run directory needed): the same inputs give
byte-identical CSV, JSON, LaTeX and HTML (and PDFs without dates).

Layout under ``out_dir``::

    comparison.csv  per_season.csv  significance.csv
    <model>/results.json  metrics.csv  per_season.csv  predictions.csv
    tables/comparison.tex  per_season_<metric>.tex  significance.tex   (\\input-ready)
    figures/roc_<calibration>.{pdf,png}          all models, one figure per calibration
    figures/calibration_<calibration>.{pdf,png}  reliability curves + histogram, all models
    figures/calibration_model_<model>.{pdf,png}  one model, its calibrations side by side
    preview.tex   every table and figure in one document (pdflatex preview.tex, in out_dir)
    report.html   one offline page (images embedded)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coordinator.analysis import html, latex, outputs, plots, tables
from coordinator.analysis.files import safe_name, write_text
from coordinator.analysis.metrics import LABELS
from coordinator.analysis.predictions import load
from coordinator.analysis.summary import CompareOptions, Comparison, Summary, compare

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_comparison(sources: Sequence[Path], out_dir: Path, options: CompareOptions | None = None) -> dict[str, Path]:
    """Read the predictions files (or folders holding ``predictions.json`` files, or the
    jobs' checkpoint files) and write every output; return their paths by name."""
    return write_outputs(compare(load(sources), options), out_dir)


def _curves(c: Comparison, by: str, name: str) -> list[plots.Curve]:
    """A figure's lines: every model of one calibration, or every calibration of one model.
    The line of an entry is its seed-averaged probability per row."""
    models = list(dict.fromkeys(s.model for s in c.summaries))
    cals = list(dict.fromkeys(s.calibration for s in c.summaries))
    out = []
    for s in c.summaries:
        if (s.calibration if by == "calibration" else s.model) != name:
            continue
        p = np.mean(np.stack([r.p for r in s.entry.runs]), axis=0)
        colour = plots.COLOURS[models.index(s.model) % len(plots.COLOURS)] if by == "calibration" else \
            plots.CALIBRATION_COLOURS[cals.index(s.calibration) % len(plots.CALIBRATION_COLOURS)]
        style = plots.STYLES[cals.index(s.calibration) % len(plots.STYLES)] if by == "model" else "-"
        label = c.options.label(s.model) if by == "calibration" else c.options.label(s.calibration)
        out.append(plots.Curve(label, s.entry.runs[0].y, p, colour, style))
    return out


def _figures(c: Comparison, out: Path) -> tuple[dict[str, Path], list[latex.FigureRef], list[html.Image]]:
    files: dict[str, Path] = {}
    refs: list[latex.FigureRef] = []
    images: list[html.Image] = []
    if c.task != "classification":
        return files, refs, images
    seeds = f", probabilities averaged over {len(c.seeds)} seeds" if len(c.seeds) > 1 else ""
    opt = c.options
    jobs: list[tuple[str, str, Figure, str]] = []
    cals = list(dict.fromkeys(s.calibration for s in c.summaries))
    models = list(dict.fromkeys(s.model for s in c.summaries))
    for cal in cals:
        curves = _curves(c, "calibration", cal)
        title = f"{opt.label(cal)} calibration" if cal != "none" else "Uncalibrated"
        jobs.append((f"roc_{safe_name(cal)}", f"ROC curves: {title.lower()}",
                     plots.roc_figure(curves, f"ROC: {title}", opt.figure_width),
                     f"{opt.caption_prefix}ROC curves of every model, {title.lower()}, on all test rows{seeds}"))
        jobs.append((f"calibration_{safe_name(cal)}", f"Calibration: {title.lower()}",
                     plots.calibration_figure(curves, f"Reliability: {title}", opt.figure_width),
                     f"{opt.caption_prefix}Reliability diagram, {title.lower()}: observed frequency against the "
                     f"mean predicted probability in 10 equal-width bins, with the rows per bin below{seeds}"))
    if len(cals) > 1:
        for model in models:
            curves = _curves(c, "model", model)
            jobs.append((f"calibration_model_{safe_name(model)}", f"Calibration of {opt.label(model)}",
                         plots.calibration_figure(curves, f"Reliability: {opt.label(model)}", opt.figure_width),
                         f"{opt.caption_prefix}Reliability diagram of {opt.label(model)} under each calibration"
                         f"{seeds}"))
    for stem, title, fig, caption in jobs:
        pdf, png = plots.save(fig, out / "figures" / stem)
        files[f"{stem}.pdf"], files[f"{stem}.png"] = pdf, png
        refs.append(latex.FigureRef(f"figures/{stem}.pdf", caption, latex.label(opt.label_prefix,
                                                                               "fig:" + stem.replace("_", "-"))))
        images.append(html.Image(title, png, caption))
    return files, refs, images


def _summary_lines(c: Comparison) -> list[tuple[str, str]]:
    lines = [("Task", c.task), ("Models", ", ".join(dict.fromkeys(c.options.label(s.model) for s in c.summaries))),
             ("Calibrations", ", ".join(dict.fromkeys(c.options.label(s.calibration) for s in c.summaries))),
             ("Seeds", ", ".join(str(s) for s in c.seeds)),
             (f"Test {c.season_name.lower()}s", ", ".join(str(s) for s in c.seasons)),
             ("Out-of-sample rows", str(c.rows))]
    for metric in c.metrics:
        best: Summary | None = c.best(metric)
        if best is not None and metric in ("auc", "brier", "roi", "rmse", "r2"):
            value = best.mean[metric] * tables.SCALE.get(metric, 1.0)
            unit = " %" if metric == "roi" else ""
            lines.append((f"Best {LABELS[metric]}", f"{c.options.label(best.model)} / "
                          f"{c.options.label(best.calibration)}: {value:.{tables.decimals(metric, [value])}f}{unit}"))
    if c.differences:
        lines.append(("Bootstrap", f"{c.options.resamples} paired resamples of {c.season_name.lower()}s, seed "
                                   f"{c.options.bootstrap_seed}, {100 * c.options.confidence:g}% intervals"))
    return lines


def write_outputs(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write every output of the comparison ``c`` under ``out_dir``."""
    files = outputs.write_model_files(c, out_dir)
    files.update(outputs.write_tables(c, out_dir))
    table_list = [tables.comparison_table(c), *tables.per_season_tables(c)]
    sig = tables.significance_table(c)
    if sig is not None:
        table_list.append(sig)
    tex_paths = []
    for t in table_list:
        path = out_dir / "tables" / f"{t.name}.tex"
        write_text(path, latex.render_table(t, c.options.label_prefix))
        files[f"{t.name}.tex"] = path
        tex_paths.append(f"tables/{t.name}.tex")
    fig_files, refs, images = _figures(c, out_dir)
    files.update(fig_files)
    files["preview.tex"] = out_dir / "preview.tex"
    write_text(files["preview.tex"], latex.preview_document(c.options.title, tex_paths, refs))
    listed = sorted(str(p.relative_to(out_dir)) for p in files.values()) + ["report.html"]
    files["report.html"] = out_dir / "report.html"
    write_text(files["report.html"], html.render(c.options.title, _summary_lines(c), table_list, images, listed))
    return files
