"""ROC curves and calibration diagrams, as PDF and PNG, for a thesis column; the figures'
style, canvas and writer, which the run reports' search plots (``reporting/plots.py``) share.

matplotlib's object API with the Agg canvas (never pyplot: no global figure state, no
display needed); fixed sizes and fonts, and no dates or versions in the files
(``CreationDate`` and ``Software`` left out), so the same predictions give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coordinator.analysis import metrics
from coordinator.analysis.files import write_bytes
from coordinator.analysis.metrics import Array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150
FONT_SIZE = 8.0
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
CALIBRATION_COLOURS = ("#333333", "#1f77b4", "#d62728", "#2ca02c")
STYLES = ("-", "--", ":", "-.")
_RC: dict[str, Any] = {"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "axes.labelsize": FONT_SIZE,
       "legend.fontsize": FONT_SIZE - 1, "xtick.labelsize": FONT_SIZE - 1, "ytick.labelsize": FONT_SIZE - 1,
       "lines.linewidth": 1.2, "pdf.fonttype": 42, "svg.hashsalt": "coord", "path.simplify": False}


@dataclass(frozen=True)
class Curve:
    """One line of a figure: its legend label, colour and style, labels and probabilities."""

    label: str
    y: Array
    p: Array
    colour: str = COLOURS[0]
    style: str = "-"


def roc_points(y: Array, p: Array) -> tuple[Array, Array]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), len(ps) - 1]
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    pos, neg = max(float(ys.sum()), 1.0), max(float(len(ys) - ys.sum()), 1.0)
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def reliability(y: Array, p: Array, bins: int = metrics.ECE_BINS) -> tuple[Array, Array, Array]:
    """Per non-empty equal-width bin: mean predicted probability, observed rate, rows."""
    idx = metrics.bin_index(p, bins)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    mean_p = np.bincount(idx, weights=p, minlength=bins)
    mean_y = np.bincount(idx, weights=y, minlength=bins)
    keep = n > 0
    return mean_p[keep] / n[keep], mean_y[keep] / n[keep], n[keep]


def style() -> Any:
    """The figures' fonts, sizes and line widths, as a context to draw in (the run
    reports' search plots draw in it too)."""
    import matplotlib

    return matplotlib.rc_context(_RC)


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def roc_figure(curves: Sequence[Curve], title: str, width: float = 4.5) -> Figure:
    with style():
        fig = new_figure(width, width * 0.85)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle=":", label="Chance")
        for c in curves:
            fpr, tpr = roc_points(c.y, c.p)
            ax.plot(fpr, tpr, color=c.colour, linestyle=c.style, label=f"{c.label} (AUC {metrics.auc(c.y, c.p):.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("False positive rate")
        ax.set_ylabel("True positive rate")
        ax.set_title(title)
        ax.legend(loc="lower right", frameon=False)
        fig.tight_layout()
    return fig


def calibration_figure(curves: Sequence[Curve], title: str, width: float = 4.5,
                       bins: int = metrics.ECE_BINS) -> Figure:
    """Reliability curves (observed rate against mean predicted probability per bin; a
    point's area grows with its rows, so sparse bins look light) over a histogram of the
    predicted probabilities (rows per bin, one outline per curve)."""
    with style():
        fig = new_figure(width, width * 1.1)
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
        ax = fig.add_subplot(grid[0])
        hist = fig.add_subplot(grid[1], sharex=ax)
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle=":", label="Perfectly calibrated")
        edges = np.linspace(0, 1, bins + 1)
        for c in curves:
            mp, my, n = reliability(c.y, c.p, bins)
            ax.plot(mp, my, color=c.colour, linestyle=c.style,
                    label=f"{c.label} (ECE {metrics.ece(c.y, c.p, bins=bins):.3f})")
            ax.scatter(mp, my, s=3 + 30 * n / max(float(n.max()), 1.0), color=c.colour, zorder=3)  # area: rows
            counts = np.bincount(metrics.bin_index(c.p, bins), minlength=bins)
            hist.stairs(counts, edges, color=c.colour, linestyle=c.style, linewidth=1.0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Observed frequency")
        ax.set_title(title)
        ax.legend(loc="upper left", frameon=False)
        ax.tick_params(labelbottom=False)
        hist.set_xlabel("Predicted probability")
        hist.set_ylabel("Rows")
        fig.subplots_adjust(left=0.14, right=0.97, top=0.93, bottom=0.1)
    return fig


def save(fig: Figure, base: Path) -> list[Path]:
    """``base``.pdf and ``base``.png, atomically, without dates or versions in them."""
    out = []
    for ext, meta in (("pdf", {"CreationDate": None, "Producer": None, "Creator": None}),
                      ("png", {"Software": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=DPI, metadata=meta)
        path = base.with_suffix(f".{ext}")
        write_bytes(path, buf.getvalue())
        out.append(path)
    return out
