"""The search report's LaTeX tables, ready for a dissertation: a readable header per column
(the search space's ``label``, LaTeX source as written; else a default for the metrics and
the built-in models' parameters; else the escaped name), every number in math mode (a real
minus sign) with the same decimals down a column, the best value of each metric column in
bold (by its direction), captions and labels with the user's prefixes, and one preview
document that ``\\input``s every table and shows every figure. Everything but a label is
escaped. Only packages of texlive-latex-base and -recommended (booktabs, graphicx).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.analysis.latex import FigureRef, label, preview_document, tex_text
from coordinator.analysis.metrics import LABELS
from coordinator.reporting.fmt import latex_env, tex_escape
from coordinator.store.files import atomic_write

METRIC_LABELS = {**{m: tex_escape(t) for m, t in LABELS.items()}, "r2": "$R^2$",
                 "train_seconds": "Training time (s)"}
# the built-in models' parameters (registry/spaces/*.yaml), where a name has an obvious label
PARAM_LABELS: dict[str, dict[str, str]] = {
    "xgboost": {"max_depth": "Max depth", "learning_rate": r"Learning rate $\eta$", "n_estimators": "Rounds",
                "subsample": "Subsample", "colsample_bytree": "Column sample", "min_child_weight": "Min child weight",
                "reg_lambda": r"L2 penalty $\lambda$", "reg_alpha": r"L1 penalty $\alpha$", "gamma": r"$\gamma$"},
    "random_forest": {"n_estimators": "Trees", "max_depth": "Max depth", "min_samples_leaf": "Min leaf size",
                      "max_features": "Max features"},
    "glm": {"C": "$C$", "alpha": r"$\alpha$", "l1_ratio": "L1 ratio", "penalty": "Penalty",
            "max_iter": "Max iterations"},
    "mlp": {"hidden_size": "Hidden units", "n_layers": "Layers", "lr": r"Learning rate $\eta$",
            "weight_decay": "Weight decay", "dropout": "Dropout", "epochs": "Epochs", "batch_size": "Batch size"},
}
MAX_DECIMALS = 6


@dataclass(frozen=True)
class Col:
    """A column: its header (LaTeX source) and, for a metric, the direction its best lies in."""

    header: str
    direction: str | None = None  # "maximize", "minimize" or None: no bold


def metric_header(metric: str) -> str:
    return METRIC_LABELS.get(metric, tex_escape(metric))


def param_header(name: str, spec: dict[str, Any] | None, model: str | None) -> str:
    """The space's label as written, else the built-in model's default, else the escaped name."""
    given = (spec or {}).get("label")
    if isinstance(given, str) and given:
        return given
    return PARAM_LABELS.get(model or "", {}).get(name) or tex_escape(name)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def decimals(values: Sequence[Any]) -> int:
    """One number of decimals for a column: those its values need to show as written (12.5
    and 41.7: one), but no more than 4 significant digits of the largest value and 3 of the
    smallest non-zero one give (a log-scaled learning rate from 0.3 down to 0.0012 keeps its
    digits, 0.84 and 0.8395 show as 0.8400 and 0.8395), at most 6; none when all are whole."""
    finite = [float(v) for v in values if _is_number(v) and math.isfinite(v)]
    nonzero = [abs(v) for v in finite if v != 0]
    if all(v.is_integer() for v in finite) or not nonzero:
        return 0
    written = max(len(repr(v).partition(".")[2]) if "e" not in repr(v) else MAX_DECIMALS for v in finite)
    big = 3 - math.floor(math.log10(max(nonzero)))
    small = 2 - math.floor(math.log10(min(nonzero)))
    return max(0, min(MAX_DECIMALS, written, max(big, small)))


def column_cells(values: Sequence[Any], direction: str | None = None) -> tuple[list[str], bool]:
    """Each value as LaTeX, and whether the column is numeric (right-aligned). A column
    with any text in it (a categorical's choices) is text, each value as written."""
    present = [v for v in values if v is not None]
    if not present or not all(_is_number(v) for v in present):
        return [_text(v) for v in values], False
    dec = decimals(values)
    shown = [f"{float(v):.{dec}f}" if _is_number(v) and math.isfinite(v) else None for v in values]
    best = _best([v for v in values if _is_number(v) and math.isfinite(v)], direction)
    top = f"{best:.{dec}f}" if best is not None else None
    out = []
    for v, s in zip(values, shown, strict=True):
        if v is None:
            out.append("")
        elif s is None:  # nan, inf
            out.append("--")
        else:
            out.append(rf"$\mathbf{{{s}}}$" if s == top else f"${s}$")
    return out, True


def _best(values: list[float], direction: str | None) -> float | None:
    if not values or direction not in ("maximize", "minimize"):
        return None
    return max(values) if direction == "maximize" else min(values)


def _text(v: Any) -> str:
    if _is_number(v):
        return tex_escape(f"{v:g}")
    return tex_escape(v)


def render(template: str, caption: str, name: str, cols: Sequence[Col], rows: Sequence[Sequence[Any]],
           caption_prefix: str = "", label_prefix: str = "") -> str:
    """A table from ``template`` (reports/*.tex.j2): ``name`` is its label after ``tab:``."""
    cells, numeric = [], []
    for i, c in enumerate(cols):
        shown, is_num = column_cells([r[i] for r in rows], c.direction)
        cells.append(shown)
        numeric.append(is_num)
    body = [" & ".join(col[j] for col in cells) for j in range(len(rows))]
    rendered: str = latex_env().get_template(template).render(
        caption=tex_text(caption_prefix + caption), label=label(label_prefix, "tab:" + name),
        align="".join("r" if n else "l" for n in numeric),
        header=" & ".join(c.header for c in cols), rows=body)
    return rendered


FIGURE_CAPTIONS = {"history": "{study}: the objective of each trial and the best so far",
                   "importance": "{study}: parameter importances (fANOVA)",
                   "parallel": "{study}: parallel coordinates of the completed trials",
                   "slice": "{study}: the objective against each parameter",
                   "pareto": "{study}: the Pareto front"}


def figure_refs(stems: Sequence[str], studies: Sequence[str], caption_prefix: str = "",
                label_prefix: str = "") -> list[FigureRef]:
    """The report's figure PDFs (``<kind>_<study>`` or ``timeline``), as the preview shows them."""
    out = []
    for stem in stems:
        kind, _, rest = stem.partition("_")
        study = next((s for s in studies if stem == f"{kind}_{s}" or rest == s), rest)
        if kind in FIGURE_CAPTIONS and rest:
            caption = FIGURE_CAPTIONS[kind].format(study=study)
        else:
            caption = "Trials over time on each platform's slots"
        out.append(FigureRef(f"../figures/{stem}.pdf", caption_prefix + caption, label(label_prefix, "fig:" + stem),
                             r"0.8\linewidth"))
    return out


def preview(title: str, tables: Sequence[str], figures: Sequence[FigureRef]) -> str:
    """``report/tables/preview.tex``: every table (names relative to it) and figure."""
    return preview_document(title, tables, figures)


def percent(text: Any) -> float | None:
    """hosts.csv's utilisation ("12.5%") as the number the table shows."""
    try:
        return float(str(text).removesuffix("%")) if text not in (None, "") else None
    except ValueError:
        return None


def metric_name(metric: str) -> str:
    """A metric in a caption (plain text: captions are escaped)."""
    return LABELS.get(metric, metric)


def metric_cols(metrics: Sequence[str], directions: Sequence[str]) -> list[Col]:
    return [Col(metric_header(m), d) for m, d in zip(metrics, directions, strict=True)]


def param_cols(study: dict[str, Any]) -> list[Col]:
    space = study["space"]["params"]
    return [Col(param_header(p, space[p], study.get("model"))) for p in space]


def write_preview(folder: Path, title: str, files: dict[str, Path], studies: Sequence[str],
                  pre: tuple[str, str] = ("", "")) -> Path:
    """``<folder>/preview.tex``: every table (``tex:``) of ``files``, every LaTeX picture
    (``fig:``) and PDF plot (``plot:``) in one document; compile it where it lies."""
    tables = [os.path.relpath(p, folder) for k, p in files.items() if k.startswith(("tex:", "fig:"))]
    stems = [p.stem for k, p in files.items() if k.startswith("plot:")]
    path = folder / "preview.tex"
    atomic_write(path, preview(title, [t.replace(os.sep, "/") for t in tables],
                               figure_refs(stems, studies, *pre)))
    return path


HOST_HEADERS = ("Platform", "Model", "Trials", "Busy (s)", r"Utilisation (\%)", "Median (s)")


def hosts_table(rows: Sequence[dict[str, Any]], pre: tuple[str, str] = ("", ""), merged: bool = False) -> str:
    """hosts.tex from hosts.csv's rows (``reporting.tables.host_table``; merged: with their run)."""
    keys = ["platform", "model", "trials", "busy_s", "utilisation", "median_s"]
    cols = [Col(h) for h in HOST_HEADERS]
    caption, name = "Trials per platform: busy time, utilisation and median duration", "hosts"
    if merged:
        keys, cols = ["run", *keys], [Col("Run"), *cols]
        caption, name = "Trials per run and platform: busy time, utilisation and median duration", "merged-hosts"
    body = [[percent(r[k]) if k == "utilisation" else r[k] for k in keys] for r in rows]
    return render("hosts.tex.j2", caption, name, cols, body, *pre)
