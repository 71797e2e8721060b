"""The search plots of a run's report, as PDF and PNG under ``report/figures/``: per study
the optimisation history, fANOVA parameter importances, parallel coordinates, slices of the
top parameters and (several objectives) the Pareto front; per run a timeline of every
attempt on its platform and slot.

Drawn from the run directory's records (``plotdata``) in the comparison figures' style and
written by their writer (``analysis.plots``: Agg canvas, no pyplot, no dates in the files),
so a rebuilt report is the same bytes. A figure that cannot be drawn is one warning line
and is left out; the rest of the report is never held up by a plot."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.reporting import plotdata
from coordinator.reporting.fmt import fmt
from coordinator.reporting.plotdata import Bar, Point, StudyData
from coordinator.store.rundir import RunStore

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
FIGURE_WIDTH = 4.5  # inches: a thesis column, as the comparison's figures
SLICE_PARAMS = 4  # the slice plot shows this many parameters, the most important first
STATUS_COLOURS = {"COMPLETE": "#2ca02c", "PRUNED": "#ff7f0e", "FAILED": "#d62728", "CANCELLED": "#7f7f7f",
                  "RETRIED": "#9467bd", "CONTINUED": "#1f77b4", "UNFINISHED": "#c7c7c7"}
BEST, POINT, MUTED = "#d62728", "#1f77b4", "#999999"


def write_plots(store: RunStore, out: Path, width: float = FIGURE_WIDTH) -> dict[str, Path]:
    """Every search plot of the run into ``out`` (``<stem>.pdf`` and ``.png``); returns the
    PDFs by ``plot:<stem>``."""
    try:
        import matplotlib  # noqa: F401 - missing: one line, not one per plot

        from coordinator.analysis.files import safe_name
        from coordinator.analysis.plots import save, style
    except ImportError as exc:  # matplotlib missing: the tables are still written
        log.warning("search plots left out: %s", exc)
        return {}
    try:
        jobs: list[tuple[str, Callable[[], Figure | None]]] = []
        for study in plotdata.studies(store):
            jobs += _study_jobs(study, safe_name(study.name), out, width)
        jobs.append(("timeline", lambda: timeline_figure(plotdata.timeline(store), _slot_order(store), width)))
    except Exception as exc:  # noqa: BLE001 - records the plots cannot read: the tables say more
        log.warning("search plots left out: %s", _why(exc))
        return {}
    files: dict[str, Path] = {}
    for stem, build in jobs:
        try:
            with style():
                fig = build()
            if fig is not None:
                _settle(fig)
                files[f"plot:{stem}"] = save(fig, out / stem)[0]
        except Exception as exc:  # noqa: BLE001 - a plot never breaks the report: say which and go on
            log.warning("search plot %s left out: %s", stem, _why(exc))
    return files


def _settle(fig: Figure) -> None:
    """Lay the figure out once and keep it so: the constrained layout would otherwise run
    again for each file written (half the time a plot takes)."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _study_jobs(study: StudyData, name: str, out: Path, width: float) -> list[tuple[str, Callable[[], Figure | None]]]:
    if not study.complete and not study.pruned:
        log.info("search plots of %s left out: no trial reported a value", study.name)
        return []
    cache: dict[str, dict[str, float] | None] = {}

    def ranked() -> dict[str, float] | None:  # computed once, for the bars and the slices' order
        if "imp" not in cache:
            cache["imp"], why = plotdata.importances(study, out / f"importance_{name}.json")
            if cache["imp"] is None:
                # expected with few or equal trials, not a fault: said with -v, not on every report
                log.info("parameter importances of %s left out: %s", study.name, why)
        return cache["imp"]

    jobs: list[tuple[str, Callable[[], Figure | None]]] = [
        (f"history_{name}", lambda: history_figure(study, width)),
        (f"importance_{name}", lambda: importance_figure(study, ranked(), width)),
        (f"parallel_{name}", lambda: parallel_figure(study, width) if study.complete else None),
        (f"slice_{name}", lambda: slice_figure(study, ranked(), width) if study.complete else None)]
    if len(study.metrics) > 1:
        jobs.append((f"pareto_{name}", lambda: pareto_figure(study, width) if study.complete else None))
    return jobs


SMALL = 6.5  # points: the labels inside a plot (values on axes and bars), still readable in print


def _figure(width: float, height: float) -> Figure:
    """A figure whose layout makes room for its labels, colour bar and legend (constrained
    layout: tight_layout cut rotated labels and left a legend's space empty)."""
    from coordinator.analysis.plots import new_figure

    fig = new_figure(width, height)
    fig.set_layout_engine("constrained", w_pad=0.03, h_pad=0.03)
    return fig


def _wrap(title: str, width: float) -> str:
    """A title on as many lines as a figure this wide needs (about 13 characters an inch at
    the title's 9 points), so a narrow figure never cuts it off."""
    import textwrap

    return textwrap.fill(title, max(int(width * 13), 20), break_on_hyphens=False)


def _direction(study: StudyData, i: int = 0) -> str:
    return "higher is better" if study.directions[i] == "maximize" else "lower is better"


def history_figure(study: StudyData, width: float) -> Figure:
    """Every scored trial's first objective by trial number, and the best so far. The
    scale is the complete trials': a pruned trial's last report (often far worse, from an
    early step) beyond it sits on the edge as a triangle."""
    fig = _figure(width, width * 0.62)
    ax = fig.add_subplot(1, 1, 1)
    done = [p.values[0] for p in study.complete]
    lo, hi = (min(done), max(done)) if done else (min(p.values[0] for p in study.pruned),
                                                   max(p.values[0] for p in study.pruned))
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    inside = [p for p in study.pruned if lo <= p.values[0] <= hi]
    if inside:
        ax.scatter([p.number for p in inside], [p.values[0] for p in inside], s=14, marker="x", linewidths=0.8,
                   color=MUTED, label="Pruned (last report)", zorder=2)
    for edge, marker, beyond in ((hi, "^", [p for p in study.pruned if p.values[0] > hi]),
                                 (lo, "v", [p for p in study.pruned if p.values[0] < lo])):
        if beyond:
            ax.scatter([p.number for p in beyond], [edge] * len(beyond), s=12, marker=marker, color=MUTED,
                       clip_on=False, label="Pruned, off the scale", zorder=2)
    if study.complete:
        ax.scatter([p.number for p in study.complete], done, s=12, color=POINT, label="Complete", zorder=3)
        ax.step([p.number for p in study.complete], plotdata.best_so_far(study.complete, study.maximize),
                where="post", color=BEST, label="Best so far", zorder=4)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("Trial")
    ax.set_ylabel(study.metrics[0])
    ax.set_title(_wrap(f"Optimisation history: {study.name} ({_direction(study)})", width))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", frameon=False)
    return fig


def importance_figure(study: StudyData, imp: dict[str, float] | None, width: float) -> Figure | None:
    """fANOVA's share of the first objective's variance per parameter, largest on top."""
    if imp is None:
        return None
    names = list(imp)[::-1]
    fig = _figure(width, 0.75 + 0.22 * len(names))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(names)), [imp[n] for n in names], color=POINT, height=0.6)
    for i, n in enumerate(names):
        ax.text(imp[n] + 0.01, i, f"{imp[n]:.2f}", va="center", fontsize=SMALL)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, min(1.0, max(imp.values()) + 0.12))
    ax.set_xlabel(f"Importance for {study.metrics[0]} (fANOVA, share of variance)")
    ax.set_title(_wrap(f"Parameter importances: {study.name} ({len(study.complete)} trials)", width))
    return fig


def _axis(study: StudyData, name: str) -> tuple[Callable[[Any], float], list[tuple[float, str]]]:
    """A parameter's values mapped onto [0, 1] (its range; log ranges in log), and labels."""
    p = study.space[name]
    if p.type == "categorical":
        n = max(len(p.choices) - 1, 1)
        return (lambda v: p.choices.index(v) / n if v in p.choices else math.nan), \
            [(i / n, str(c)) for i, c in enumerate(p.choices)]
    lo, hi = float(p.low or 0), float(p.high or 0)
    log10 = p.log and lo > 0
    if log10:
        lo, hi = math.log10(lo), math.log10(hi)

    def tr(v: Any) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or (log10 and v <= 0):
            return math.nan  # not in this trial (a parameter added to the space later): no point
        return math.log10(float(v)) if log10 else float(v)

    span = hi - lo
    labels = [(0.0, fmt(p.low or 0)), (1.0, fmt(p.high or 0))] if span else [(0.5, fmt(p.low or 0))]
    return (lambda v: (tr(v) - lo) / span if span else 0.5), labels


def _value_colours(study: StudyData, values: list[float]) -> tuple[Any, Any]:
    """A colour per value, the best darkest (drawn last, on top), and the mappable for a bar."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap = matplotlib.colormaps["viridis_r" if study.maximize else "viridis"]
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    return [cmap(norm(v)) for v in values], ScalarMappable(norm=norm, cmap=cmap)


def parallel_figure(study: StudyData, width: float) -> Figure:
    """One line per complete trial through its objective and every parameter's axis."""
    names = list(study.space)
    spacing = width * 0.8 / (len(names) + 1)  # inches between two axes
    longest = max(len(n) for n in [study.metrics[0], *names])
    turn = longest * 0.055 > spacing  # names wider than the room between axes (7 points: ~0.055 in a letter)
    angle = (60 if spacing < 0.5 else 30) if turn else 0
    # slanted names take height from the lines: give it back
    fig = _figure(width, width * 0.6 + longest * 0.055 * math.sin(math.radians(angle)) * 0.8)
    ax = fig.add_subplot(1, 1, 1)
    trials = sorted(study.complete, key=lambda p: p.values[0], reverse=not study.maximize)  # best last
    values = [p.values[0] for p in trials]
    colours, mappable = _value_colours(study, values)
    lo, hi = min(values), max(values)
    objective = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in values]
    axes = [_axis(study, n) for n in names]
    for k, p in enumerate(trials):
        ys = [objective[k], *[f(p.params.get(n)) for n, (f, _) in zip(names, axes, strict=True)]]
        ax.plot(range(len(ys)), ys, color=colours[k], linewidth=0.8, alpha=0.8)
    for x, labels in enumerate([[(0.0, fmt(lo)), (1.0, fmt(hi))], *[lab for _, lab in axes]]):
        ax.axvline(x, color="#444444", linewidth=0.6)
        for y, text in labels if spacing >= 0.4 else ():  # too narrow: the ranges would overlap
            ax.text(x + 0.04, y, text, fontsize=SMALL, va="center", ha="left", color="#222222",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.7})
    ax.set_xticks(range(len(names) + 1), [study.metrics[0], *names], rotation=angle,
                  ha="right" if turn else "center", rotation_mode="anchor")
    ax.set_xlim(-0.1, len(names) + 0.4)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(_wrap(f"Parallel coordinates: {study.name} ({len(trials)} complete trials)", width))
    fig.colorbar(mappable, ax=ax, pad=0.02, fraction=0.04).set_label(study.metrics[0])
    return fig


def slice_figure(study: StudyData, imp: dict[str, float] | None, width: float) -> Figure:
    """The first objective against each of the top parameters, coloured by trial number."""
    names = [n for n in (imp or study.space) if n in study.space][:SLICE_PARAMS]
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    fig = _figure(width, 0.5 + rows * width * (0.36 if cols == 2 else 0.55))
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False)
    numbers = [p.number for p in study.complete]
    scatter = None
    for i, ax in enumerate(grid.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        n, p = names[i], study.space[names[i]]
        xs = [_slice_x(p, q.params.get(n)) for q in study.complete]
        scatter = ax.scatter(xs, [q.values[0] for q in study.complete], c=numbers, cmap="viridis", s=10,
                             vmin=min(numbers), vmax=max(max(numbers), min(numbers) + 1))
        if p.type == "categorical":
            ax.set_xticks(range(len(p.choices)), [str(c) for c in p.choices])
            ax.set_xlim(-0.5, len(p.choices) - 0.5)
        elif p.log:
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")  # ticks as plain numbers (0.001): mathtext's 10^-3 costs a parser per report
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(float(v))))
            ax.xaxis.set_minor_formatter(NullFormatter())
        label = f"{n}\nimportance {imp[n]:.2f}" if imp and n in imp else n  # two lines: never into the next panel
        ax.set_xlabel(label)
        if i % cols == 0:
            ax.set_ylabel(study.metrics[0])
    fig.suptitle(_wrap(f"Slices: {study.name}", width), fontsize="medium")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=list(grid.flat), pad=0.02, fraction=0.04)
        bar.set_label("Trial")
    return fig


def _slice_x(p: Any, v: Any) -> float:
    if p.type == "categorical":
        return float(p.choices.index(v)) if v in p.choices else math.nan
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _slot_order(store: RunStore) -> list[str]:
    return list(store.config["registry"]["platforms"])


def _time_unit(span: float) -> tuple[float, str]:
    return (1.0, "seconds") if span <= 300 else (60.0, "minutes") if span <= 3 * 3600 else (3600.0, "hours")


def timeline_figure(bars: list[Bar], platforms: list[str], width: float) -> Figure | None:
    """Every attempt as a bar on its platform's slot, from launch to end, by how it ended."""
    if not bars:
        return None
    lanes = sorted({(b.platform, b.slot) for b in bars},
                   key=lambda k: (platforms.index(k[0]) if k[0] in platforms else len(platforms), k))
    row = {lane: i for i, lane in enumerate(lanes)}
    fig = _figure(width, max(1.9, 1.0 + 0.17 * len(lanes)))
    ax = fig.add_subplot(1, 1, 1)
    scale, unit = _time_unit(max(b.end for b in bars))
    shown = [s for s in plotdata.TIMELINE_STATUSES if any(b.status == s for b in bars)]
    for s in shown:
        mine = [b for b in bars if b.status == s]
        ax.barh([row[(b.platform, b.slot)] for b in mine], [max(b.end - b.start, 0.0) / scale for b in mine],
                left=[b.start / scale for b in mine], height=0.7, color=STATUS_COLOURS[s], edgecolor="white",
                linewidth=0.3, label=s.capitalize())
    ax.set_yticks(range(len(lanes)), [f"{p} #{s}" for p, s in lanes])
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # first platform on top
    ax.set_xlim(0, max(b.end for b in bars) / scale * 1.01)
    ax.set_xlabel(f"Time since the search started ({unit})")
    trials = len({b.number for b in bars})
    ax.set_title(_wrap(f"Trials per platform and slot ({trials} trials, {len(bars)} attempts)", width))
    fig.legend(loc="outside lower center", ncol=min(len(shown), 4), frameon=False, handlelength=1.0,
               columnspacing=1.0)
    return fig


def pareto_figure(study: StudyData, width: float) -> Figure:
    """Every complete trial on each pair of the first three objectives; the front filled."""
    front = plotdata.pareto(study)
    on_front = {p.number for p in front}
    k = min(len(study.metrics), 3)
    pairs = [(0, 1)] if k == 2 else [(0, 1), (0, 2), (1, 2)]
    fig = _figure(width, width * (0.75 if k == 2 else 0.42))
    grid = fig.subplots(1, len(pairs), squeeze=False)
    for ax, (i, j) in zip(grid.flat, pairs, strict=True):
        _pareto_panel(ax, study, front, on_front, i, j, staircase=k == 2)
    fig.suptitle(_wrap(f"Pareto front: {study.name} ({len(front)} of {len(study.complete)} trials)", width),
                 fontsize="medium")
    return fig


def _pareto_panel(ax: Axes, study: StudyData, front: list[Point], on_front: set[int], i: int, j: int,
                  staircase: bool) -> None:
    rest = [p for p in study.complete if p.number not in on_front]
    ax.scatter([p.values[i] for p in rest], [p.values[j] for p in rest], s=12, facecolors="none",
               edgecolors=MUTED, linewidths=0.8, label="Dominated")
    ax.scatter([p.values[i] for p in front], [p.values[j] for p in front], s=14, color=BEST, label="Pareto front",
               zorder=3)
    if staircase and len(front) > 1:  # the edge of what the front dominates, as the tables' picture draws it
        from coordinator.reporting.pareto import staircase as edge

        segs = edge([(p.values[i], p.values[j]) for p in front], [study.directions[i], study.directions[j]])
        corners = [(xa, ya) for xa, ya, _, _ in segs] + [segs[-1][2:]]
        ax.plot([c[0] for c in corners], [c[1] for c in corners], color=BEST, linewidth=0.8, zorder=2)
    ax.set_xlabel(f"{study.metrics[i]} ({_direction(study, i)})")
    ax.set_ylabel(f"{study.metrics[j]} ({_direction(study, j)})")
    if (i, j) == (0, 1):
        ax.legend(loc="best", frameon=False)
