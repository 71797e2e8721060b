"""Reports rebuilt from the run directory alone: trials.csv, best.json and LaTeX tables
(jinja2 + booktabs) that drop into a dissertation. Same run, same bytes."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from coordinator import crashpoint
from coordinator.analysis.latex import label
from coordinator.config.models import BUILTIN
from coordinator.records import TrialStatus
from coordinator.reporting import latex
from coordinator.reporting.fmt import csv_cell, fmt, latex_env, plural, tex_escape
from coordinator.store.files import atomic_write, write_json
from coordinator.store.rundir import RunStore, TrialRecord

TOP_K = 10
_FIXED = ("number", "study", "model", "status", "value")
MAX_SUFFIX = "_max"  # trials.csv: the configured steps next to the steps used
_TAIL = ("platform", "host", "duration_s", "total_s", "attempts", "seed", "error")


def rows(store: RunStore) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per trial, and the column order: fixed, metrics, params, tail. A completed
    built-in iterative trial's step parameter shows the steps of its scored model (its
    best step), the configured value follows it as ``<param>_max``."""
    metric_cols: list[str] = []
    param_cols: list[str] = []
    out = []
    for rec in store.trials():
        row = _row(rec)
        for k in rec.result.metrics if rec.result else ():
            if k not in metric_cols:
                metric_cols.append(k)
        for k in [*_params(rec), *[c for c in row if c.endswith(MAX_SUFFIX)]]:
            if k not in param_cols:
                param_cols.append(k)
        out.append(row)
    # search-space order (trial.json's keys are sorted), then any other parameter as first seen
    space = [p for s in store.config["studies"] for p in s["space"]["params"]]
    param_cols.sort(key=lambda c: space.index(c.removesuffix(MAX_SUFFIX)) if c.removesuffix(MAX_SUFFIX) in space
                    else len(space))
    for col in [c for c in param_cols if c.endswith(MAX_SUFFIX)]:  # right after the value it qualifies
        param_cols.remove(col)
        base = col[: -len(MAX_SUFFIX)]
        param_cols.insert(param_cols.index(base) + 1 if base in param_cols else len(param_cols), col)
    return out, [*_FIXED, *metric_cols, *param_cols, *_TAIL]


def _row(rec: TrialRecord) -> dict[str, Any]:
    res = rec.result
    row: dict[str, Any] = {"number": rec.number, "study": rec.info.study, "model": rec.info.model,
                           "status": (res.status if res else TrialStatus.UNFINISHED).value,
                           "value": res.value if res else None}
    row.update(res.metrics if res else {})
    row.update(_params(rec))
    used = scored_steps(rec)
    if used is not None:
        param, steps = used
        row[param + MAX_SUFFIX] = row[param]
        row[param] = steps
    if res and res.lineage:  # PBT: how it got its parameters (best.json; not a CSV column)
        row["lineage"], row["initial_params"] = list(res.lineage), rec.info.params
    last_error = (res.error if res else "").strip().splitlines()[-1:]
    row.update({"platform": res.platform if res else None, "host": res.host if res else None,
                "duration_s": res.duration_s if res else None, "total_s": res.total_s if res else None,
                "attempts": (len(res.attempts) or None) if res else None, "seed": rec.info.seed,
                "error": last_error[0] if last_error else ""})
    return row


def scored_steps(rec: TrialRecord) -> tuple[str, int] | None:
    """(step parameter, steps) of the model a completed built-in iterative trial was scored
    on: like ``xgb.cv``, the runner ends at its best step (``best_step``), so the model an
    author reports has that many rounds, epochs or trees, not the configured maximum.
    Retraining with the parameter set to it gives the same model and metrics."""
    res = rec.result
    model = BUILTIN.get(rec.info.model or "")
    step = res.metrics.get("best_step") if res else None
    param = model.step_param if model else None
    if res is None or param is None or res.status != TrialStatus.COMPLETE or step is None \
            or param not in _params(rec):
        return None
    return param, int(step)


def _params(rec: TrialRecord) -> dict[str, Any]:
    """The parameters a trial's score came from: those it ended with (a PBT member's after its
    last exploit, ``result.json``), not those it began with (``trial.json``)."""
    return rec.result.params if rec.result and rec.result.params else rec.info.params


def _steps_note(study: dict[str, Any], done: list[dict[str, Any]], params: list[str]) -> str:
    """The caption's sentence on a table whose step column shows the steps used."""
    model = BUILTIN.get(study.get("model") or "")
    if model is None or model.step_param not in params or not any(model.step_param + MAX_SUFFIX in r for r in done):
        return ""
    param = model.step_param
    return (f"; {param} is the number of {model.step_unit} at the best validation step (the configured maximum "
            f"is in trials.csv, column {param}{MAX_SUFFIX})")


def write_report(store: RunStore, figure_width: float | None = None, plots: bool | None = None,
                 caption_prefix: str | None = None, label_prefix: str | None = None) -> dict[str, Path]:
    """Write every report file; return their paths by kind. The search plots are
    ``figure_width`` inches wide (default: the width the search was started with); ``plots``
    False leaves them out (default: on unless ``COORD_PLOTS=0``: drawing them costs seconds,
    see docs/performance.md). The LaTeX captions and labels start with the prefixes
    (default: those the search was started with)."""
    cfg = store.config
    metrics, directions = cfg["metrics"], cfg["directions"]
    table, columns = rows(store)
    out = store.root / "report"
    files = {"csv": out / "trials.csv", "best": out / "best.json"}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({k: csv_cell(v) for k, v in r.items()})
    atomic_write(files["csv"], buf.getvalue())
    crashpoint.reached("mid_report")
    best = best_trials(table, cfg)
    write_json(files["best"], best)
    opts = cfg.get("options") or {}
    pre = (caption_prefix if caption_prefix is not None else opts.get("caption_prefix") or "",
           label_prefix if label_prefix is not None else opts.get("label_prefix") or "")
    tex_files = []
    for study in cfg["studies"]:
        name = study["name"]
        done = [r for r in table if r["study"] == name and r["status"] == TrialStatus.COMPLETE.value]
        done.sort(key=lambda r: (-r["value"] if directions[0] == "maximize" else r["value"], r["number"]))
        params = list(study["space"]["params"])
        cols = [latex.Col("Rank"), latex.Col("Trial"), *latex.param_cols(study),
                *latex.metric_cols(metrics, directions)]
        path = out / "tables" / f"top_{name}.tex"
        atomic_write(path, latex.render(
            "top_configs.tex.j2", f"Top {min(TOP_K, len(done))} of {len(done)} completed {name} configurations "
            f"by {latex.metric_name(metrics[0])}{_steps_note(study, done, params)}{BOLD_NOTE}", f"top-{_label(name)}",
            cols, [[i + 1, r["number"], *[r.get(p) for p in params], *[r.get(m) for m in metrics]]
                   for i, r in enumerate(done[:TOP_K])], *pre))
        tex_files.append(path)
    summary = []
    for study in cfg["studies"]:
        name = study["name"]
        mine = [r for r in table if r["study"] == name]
        b = best.get(name, {})
        if b.get("pareto_front"):  # several objectives: the front's best in the first
            sign = 1 if directions[0] == "maximize" else -1
            b = max(b["pareto_front"], key=lambda e: (sign * e["metrics"][metrics[0]], -e["number"]))
            b = {**b, "value": b["metrics"][metrics[0]]}
        summary.append([name, len(mine), sum(r["status"] == TrialStatus.COMPLETE.value for r in mine),
                        b.get("value"), b.get("number"), b.get("platform")])
    path = out / "tables" / "model_summary.tex"
    atomic_write(path, latex.render(
        "model_summary.tex.j2", f"Best {latex.metric_name(metrics[0])} per model{BOLD_NOTE}", "model-summary",
        [latex.Col("Model"), latex.Col("Trials"), latex.Col("Complete"),
         latex.Col("Best " + latex.metric_header(metrics[0]), directions[0]), latex.Col("Best trial"),
         latex.Col("Platform")], summary, *pre))
    tex_files.append(path)
    if len(metrics) > 1:
        files.update(_pareto_files(out, table, cfg, pre))
    files.update(_lineage_files(store, out, pre))
    host_rows = host_table(store)
    files["hosts"] = out / "hosts.csv"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HOST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(host_rows)
    atomic_write(files["hosts"], buf.getvalue())
    path = out / "tables" / "hosts.tex"
    atomic_write(path, latex.hosts_table(host_rows, pre))
    tex_files.append(path)
    files.update({f"tex:{p.stem}": p for p in tex_files})
    from coordinator.reporting.costs import write_usage_files

    files.update(write_usage_files(store, out, pre))
    from coordinator.config.experiment import check_figure_width
    from coordinator.reporting.plots import FIGURE_WIDTH, write_plots

    check_figure_width(figure_width)
    width = figure_width or (cfg.get("options") or {}).get("figure_width") or FIGURE_WIDTH
    if plots if plots is not None else os.environ.get("COORD_PLOTS", "1") != "0":
        files.update(write_plots(store, out / "figures", float(width)))
    files["preview"] = latex.write_preview(out / "tables", f"{pre[0]}{cfg['name']}: search report", files,
                                           [s["name"] for s in cfg["studies"]], pre)
    from coordinator.reporting.page import write_page  # the page shows what the files above hold

    files["html"] = write_page(store, table, best, host_rows, files)
    return files


HOST_COLUMNS = ("platform", "model", "trials", "attempts", "busy_s", "utilisation", "median_s")


def host_table(store: RunStore) -> list[dict[str, Any]]:
    """Per platform and model: attempts, busy seconds, share of the platform's slot time over
    the run, median duration of completed attempts (the learned speeds, as measured)."""
    cfg = store.config
    slots = {k: p["max_concurrent_jobs"] for k, p in cfg["registry"]["platforms"].items()}
    span = _run_span(store)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    trials: dict[tuple[str, str], set[int]] = {}
    for rec in store.trials():
        for a in rec.result.attempts if rec.result else ():
            key = (a.platform, rec.info.model or rec.info.study or "custom")
            groups.setdefault(key, []).append(a.to_json())
            trials.setdefault(key, set()).add(rec.number)
    rows = []
    for (platform, model), attempts in sorted(groups.items()):
        busy = sum(a["duration_s"] for a in attempts)
        ok = [a["duration_s"] for a in attempts if a["kind"] == "ok"]
        util = busy / (slots.get(platform, 1) * span) if span else None
        rows.append({"platform": platform, "model": model, "trials": len(trials[(platform, model)]),
                     "attempts": len(attempts), "busy_s": round(busy, 3),
                     "utilisation": f"{100 * util:.1f}%" if util is not None else "",
                     "median_s": round(statistics.median(ok), 3) if ok else None})
    return rows


def _run_span(store: RunStore) -> float:
    """Seconds from the search's start to its end, from the event log."""
    times = [e["t"] for e in store.events_read() if "t" in e]
    return times[-1] - times[0] if times else 0.0


def best_trials(table: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per study: the best trial (one metric) or the Pareto front (several)."""
    metrics, directions = cfg["metrics"], cfg["directions"]
    out: dict[str, Any] = {}
    for study in cfg["studies"]:
        done = [r for r in table if r["study"] == study["name"] and r["status"] == TrialStatus.COMPLETE.value]
        if not done:
            continue
        sign = [1 if d == "maximize" else -1 for d in directions]
        if len(metrics) == 1:
            top = max(done, key=lambda r: (sign[0] * r["value"], -r["number"]))
            out[study["name"]] = _best_entry(top, study, metrics, cfg)
        else:
            from coordinator.reporting.pareto import front

            out[study["name"]] = {"pareto_front": [_best_entry(r, study, metrics, cfg)
                                                   for r in front(done, metrics, directions)]}
    durations = [r["duration_s"] for r in table if r.get("duration_s") is not None]
    out["_run"] = {"trials": len(table), "complete": sum(r["status"] == TrialStatus.COMPLETE.value for r in table),
                   "median_duration_s": statistics.median(durations) if durations else None}
    return out


def _best_entry(r: dict[str, Any], study: dict[str, Any], metrics: list[str], cfg: dict[str, Any]) -> dict[str, Any]:
    names = [*study["space"]["params"], *study["space"].get("fixed", {})]
    params = {p: r.get(p) for p in names}  # the scored model's: a step parameter holds the steps used
    entry = {"number": r["number"], "value": r["value"], "metrics": {m: r.get(m) for m in metrics},
             "params": params, "model": study["model"], "seed": r["seed"], "platform": r["platform"],
             "data": cfg.get("data"), "recipe": f"trials/{r['number']}/attempt-{r['attempts'] or 1}/recipe.json"}
    if any(p + MAX_SUFFIX in r for p in names):  # what the trial was configured with (its spec.json)
        entry["configured_params"] = {p: r.get(p + MAX_SUFFIX, r.get(p)) for p in names}
    if r.get("lineage"):  # params are the last segment's; these say where it began and each exploit
        entry["initial_params"], entry["lineage"] = r["initial_params"], r["lineage"]
    return entry


def _pareto_files(out: Path, table: list[dict[str, Any]], cfg: dict[str, Any],
                  pre: tuple[str, str]) -> dict[str, Path]:
    """Per study of a multi-objective run: the front as a LaTeX table, and for two
    objectives as a LaTeX picture and an SVG."""
    from coordinator.reporting import pareto

    metrics, files = cfg["metrics"], {}
    for study in cfg["studies"]:
        name = study["name"]
        done = [r for r in table if r["study"] == name and r["status"] == TrialStatus.COMPLETE.value]
        best = pareto.front(done, metrics, cfg["directions"])
        if not best:
            continue
        params = list(study["space"]["params"])
        path = out / "tables" / f"pareto_{name}.tex"
        atomic_write(path, latex.render(
            "top_configs.tex.j2", f"Pareto front of {name}: {len(best)} of {len(done)} completed trials, "
            f"{' vs '.join(latex.metric_name(m) for m in metrics)}{_steps_note(study, best, params)}{BOLD_NOTE}",
            f"pareto-{_label(name)}", [latex.Col("Trial"), *latex.metric_cols(metrics, cfg["directions"]),
                                       *latex.param_cols(study)],
            [[r["number"], *[r.get(m) for m in metrics], *[r.get(p) for p in params]] for r in best], *pre))
        files[f"tex:pareto_{name}"] = path
        if len(metrics) == 2:
            points = [r for r in done if all(isinstance(r.get(m), (int, float)) and math.isfinite(r[m])
                                             for m in metrics)]
            fig = out / "figures" / f"pareto_{name}.tex"
            atomic_write(fig, pareto.latex_picture(points, best, metrics, cfg["directions"], tex_escape(
                f"{pre[0]}{name}: {metrics[0]} against {metrics[1]}; filled: the Pareto front"),
                label(pre[1], f"fig:pareto-{_label(name)}")))
            files[f"fig:pareto_{name}"] = fig
            svg = out / "figures" / f"pareto_{name}.svg"
            atomic_write(svg, pareto.svg(points, best, metrics, cfg["directions"], f"{name}: Pareto front"))
            files[f"svg:pareto_{name}"] = svg
    return files


def _lineage_files(store: RunStore, out: Path, pre: tuple[str, str]) -> dict[str, Path]:
    """PBT runs: every exploit (trial, generation, step, donor, the parameters it went on
    with) as lineage.csv and one LaTeX table per study."""
    rows = [{"study": rec.result.study, "number": rec.number, **entry}
            for rec in store.trials() if rec.result for entry in rec.result.lineage or ()]
    if not rows:
        return {}
    files = {"lineage": out / "lineage.csv"}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["study", "trial", "generation", "step", "donor", "params"])
    for r in rows:
        writer.writerow([csv_cell(r["study"]), r["number"], r["generation"], r["step"], r["donor"],
                         csv_cell(json.dumps(r["params"], sort_keys=True))])
    atomic_write(files["lineage"], buf.getvalue())
    for study in sorted({r["study"] for r in rows}):
        mine = [r for r in rows if r["study"] == study]
        path = out / "tables" / f"lineage_{study}.tex"
        atomic_write(path, latex.render(
            "top_configs.tex.j2", f"Population-based training of {study}: {plural(len(mine), 'exploit')} (the "
            "trial took the donor's checkpoint at that step and went on with the parameters shown)",
            f"lineage-{_label(study)}", [latex.Col(h) for h in ("Trial", "Generation", "Step", "Donor", "Parameters")],
            [[r["number"], r["generation"], r["step"], r["donor"], _params_text(r["params"])] for r in mine], *pre))
        files[f"tex:lineage_{study}"] = path
    return files


BOLD_NOTE = "; the best value per metric in bold"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(params.items()))


def _label(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def standalone_document(tables: list[Path]) -> str:
    """A minimal LaTeX document that inputs the given tables (used to prove they compile)."""
    rendered: str = latex_env().get_template("standalone.tex.j2").render(tables=[str(t) for t in tables])
    return rendered
