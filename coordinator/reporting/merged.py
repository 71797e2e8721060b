"""Several runs in one set of tables (``coord report RUN... -o DIR``): every trial, a
per-model summary, the top configurations of each model over all runs, and where the
trials ran (busy time, utilisation), each row naming its run. CSV and LaTeX, built from
the run directories alone. Same runs, same bytes: rows are ordered by the runs' start
times, names and trial numbers (never by the order runs are named or found), and the
files carry no time of their own."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.errors import StoreError
from coordinator.reporting import latex, tables
from coordinator.reporting import runs as registry
from coordinator.reporting.fmt import csv_cell
from coordinator.store.files import atomic_write, write_json
from coordinator.store.rundir import RunStore

MANIFEST = registry.MERGED_MANIFEST  # which runs and files the folder holds; an earlier merge's other files go
SUMMARY_COLUMNS = ("model", "run", "name", "metric", "direction", "trials", "complete", "pruned", "failed",
                   "best_value", "best_trial", "best_platform")
HOST_COLUMNS = ("run", *tables.HOST_COLUMNS)
RUN_COLUMNS = ("run", "name", "models", "status", "trials", "complete", "pruned", "failed", "metric",
               "direction", "best_value", "best_trial", "hosts", "started", "duration_s")
ALL = "all runs"


@dataclass
class _Run:
    label: str  # the run column: the directory's name (with its parent's when two share one)
    store: RunStore
    summary: registry.RunSummary
    rows: list[dict[str, Any]]
    columns: list[str]

    @property
    def cfg(self) -> dict[str, Any]:
        return self.store.config


def load(paths: Iterable[Path]) -> list[_Run]:
    """The runs, opened (a path that is not a readable run is a StoreError), each once, in
    report order."""
    stores: dict[Path, RunStore] = {}
    for p in paths:
        store = RunStore.open(Path(p))
        stores.setdefault(store.root.resolve(), store)
    found = sorted(((registry.summarise(s.root), s) for s in stores.values()), key=lambda x: registry.order_key(x[0]))
    names = [s.root.name for _, s in found]
    out = []
    for summary, store in found:
        if summary.status == "damaged":
            raise StoreError(f"{store.root} cannot be reported: {summary.reason}")
        label = store.root.name if names.count(store.root.name) == 1 else f"{store.root.parent.name}/{store.root.name}"
        table, columns = tables.rows(store)
        out.append(_Run(label, store, summary, table, columns))
    return out


def write_merged(paths: Iterable[Path], out: Path, caption_prefix: str = "", label_prefix: str = "") -> dict[str, Path]:
    """Write the merged tables of the runs at ``paths`` into ``out``; return them by kind.
    The LaTeX captions and labels start with the prefixes."""
    merged = load(paths)
    pre = (caption_prefix, label_prefix)
    files: dict[str, Path] = {}
    files["runs"] = _csv(out / "runs.csv", RUN_COLUMNS, [_run_row(r) for r in merged])
    trial_cols, trial_rows = _all_trials(merged)
    files["trials"] = _csv(out / "trials.csv", trial_cols, trial_rows)
    summary = _summary(merged)
    files["models"] = _csv(out / "models.csv", SUMMARY_COLUMNS, summary)
    objectives = {(r["metric"], r["direction"]) for r in summary}
    one = next(iter(objectives)) if len(objectives) == 1 else None  # bold only where the rows compare
    files["tex:model_summary"] = _tex(
        out / "tables" / "model_summary.tex", "model_summary.tex.j2",
        f"Best value per model and run ({len(merged)} runs)" + (tables.BOLD_NOTE if one else ""),
        "merged-model-summary",
        [latex.Col(h) for h in ("Model", "Run", "Metric", "Trials", "Complete")]
        + [latex.Col("Best", one[1] if one else None), latex.Col("Best trial"), latex.Col("Platform")],
        [[r["model"], r["run"], f"{latex.metric_name(r['metric'])} ({r['direction'][:3]})", r["trials"],
          r["complete"], r["best_value"], r["best_trial"], r["best_platform"]] for r in summary], pre)
    for key, (cols, top, caption, heads) in _tops(merged).items():
        files[f"top:{key}"] = _csv(out / f"top_{key}.csv", cols, top)
        files[f"tex:top_{key}"] = _tex(out / "tables" / f"top_{key}.tex", "top_configs.tex.j2", caption,
                                       f"merged-top-{tables._label(key)}", [latex.Col("Rank"), latex.Col("Run"),
                                                             latex.Col("Trial"), *heads],
                                       [[r[c] for c in cols] for r in top], pre)
    hosts = _hosts(merged)
    files["hosts"] = _csv(out / "hosts.csv", HOST_COLUMNS, hosts)
    files["tex:hosts"] = out / "tables" / "hosts.tex"
    atomic_write(files["tex:hosts"], latex.hosts_table(hosts, pre, merged=True))
    files["preview"] = latex.write_preview(out / "tables", f"{caption_prefix}{len(merged)} runs", files, [], pre)
    _forget_stale(out, files)
    manifest = {"runs": [{"run": r.label, "name": r.cfg["name"], "path": str(r.store.root)} for r in merged],
                "files": sorted(str(p.relative_to(out)) for p in files.values())}
    write_json(out / MANIFEST, manifest)
    files["manifest"] = out / MANIFEST
    return files


def _run_row(r: _Run) -> dict[str, Any]:
    s = r.summary
    return {"run": r.label, "name": s.name, "models": " ".join(s.models), "status": s.status,
            "trials": sum(s.trials.values()), **{k: s.trials.get(k, 0) for k in ("complete", "pruned", "failed")},
            "metric": s.metric, "direction": s.direction, "best_value": s.best_value, "best_trial": s.best_trial,
            "hosts": " ".join(s.hosts), "started": registry.iso_time(s.started) if s.started is not None else None,
            "duration_s": s.duration_s}


def _param_names(cfg: dict[str, Any]) -> set[str]:
    names = {p for s in cfg["studies"] for p in [*s["space"]["params"], *s["space"].get("fixed", {})]}
    return names | {p + tables.MAX_SUFFIX for p in names}


def _all_trials(merged: list[_Run]) -> tuple[list[str], list[dict[str, Any]]]:
    """Every trial of every run: the run, then each run's columns (metrics before parameters)."""
    fixed, tail = list(tables._FIXED), list(tables._TAIL)
    metrics: list[str] = []
    params: list[str] = []
    for r in merged:
        names = _param_names(r.cfg)
        for c in r.columns:
            if c in fixed or c in tail or c in metrics or c in params:
                continue
            (params if c in names else metrics).append(c)
    out = [{"run": r.label, **row} for r in merged for row in r.rows]
    return ["run", *fixed, *metrics, *params, *tail], out


def _best(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    done = [x for x in rows if x["status"] == "COMPLETE" and _finite(x.get("value"))]
    sign = 1 if direction == "maximize" else -1
    return max(done, key=lambda x: (sign * x["value"], -x["number"])) if done else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _summary(merged: list[_Run]) -> list[dict[str, Any]]:
    out = []
    for r in merged:
        metric, direction = r.cfg["metrics"][0], r.cfg["directions"][0]
        for study in r.cfg["studies"]:
            mine = [x for x in r.rows if x["study"] == study["name"]]
            best = _best(mine, direction) or {}
            out.append({"model": study["name"], "run": r.label, "name": r.cfg["name"], "metric": metric,
                        "direction": direction, "trials": len(mine),
                        **{k: sum(x["status"] == k.upper() for x in mine) for k in ("complete", "pruned", "failed")},
                        "best_value": best.get("value"), "best_trial": best.get("number"),
                        "best_platform": best.get("platform")})
    order = {r.label: i for i, r in enumerate(merged)}
    return sorted(out, key=lambda x: (x["model"], order[x["run"]]))


def _tops(merged: list[_Run]) -> dict[str, tuple[list[str], list[dict[str, Any]], str, list[latex.Col]]]:
    """Per model and objective (metric and direction): the best TOP_K completed trials over
    all runs, ranked by the objective, ties by run order and trial number."""
    groups: dict[tuple[str, str, str], list[tuple[int, _Run, dict[str, Any]]]] = {}
    for i, r in enumerate(merged):
        for study in r.cfg["studies"]:
            groups.setdefault((study["name"], r.cfg["metrics"][0], r.cfg["directions"][0]), []).append(
                (i, r, study))
    out: dict[str, tuple[list[str], list[dict[str, Any]], str, list[latex.Col]]] = {}
    for (name, metric, direction), members in sorted(groups.items()):
        labelled: set[str] = set()
        params: list[str] = []
        metrics: list[str] = []
        heads: dict[str, latex.Col] = {}  # a parameter's: the first run's that labels it, else the default
        ways: dict[str, set[str]] = {}  # each metric's directions over the runs: bold where they agree
        done: list[tuple[int, dict[str, Any]]] = []
        for i, r, study in members:
            params.extend(p for p in study["space"]["params"] if p not in params)
            for p, spec in study["space"]["params"].items():
                if p not in heads or (spec.get("label") and p not in labelled):
                    heads[p] = latex.Col(latex.param_header(p, spec, study.get("model")))
                    labelled.update([p] if spec.get("label") else [])
            metrics.extend(m for m in r.cfg["metrics"] if m not in metrics)
            for m, d in zip(r.cfg["metrics"], r.cfg["directions"], strict=True):
                ways.setdefault(m, set()).add(d)
            done.extend((i, x) for x in r.rows if x["study"] == name and x["status"] == "COMPLETE"
                        and _finite(x.get("value")))
        sign = 1 if direction == "maximize" else -1
        done.sort(key=lambda t: (-sign * t[1]["value"], t[0], t[1]["number"]))
        top = [{"rank": k + 1, "run": merged[i].label, "trial": x["number"], **{p: x.get(p) for p in params},
                **{m: x.get(m) for m in metrics}} for k, (i, x) in enumerate(done[:tables.TOP_K])]
        # the file names as a run's own report spells them (top_random_forest.csv), safe as a file name
        key = "".join(ch if ch.isalnum() or ch in "_-." else "-" for ch in _top_key(name, metric, direction,
                                                                                   list(groups)))
        note = tables._steps_note(members[0][2], [x for _, x in done], params)
        caption = (f"Top {len(top)} of {len(done)} completed {name} configurations in {len(members)} "
                   f"run{'s' if len(members) != 1 else ''} by {latex.metric_name(metric)} ({direction}){note}"
                   f"{tables.BOLD_NOTE}")
        cols = [*[heads[p] for p in params],
                *[latex.Col(latex.metric_header(m), next(iter(ways[m])) if len(ways[m]) == 1 else None)
                  for m in metrics]]
        out[key] = (["rank", "run", "trial", *params, *metrics], top, caption, cols)
    return out


def _top_key(name: str, metric: str, direction: str, groups: list[tuple[str, str, str]]) -> str:
    """The model's name, with the metric (and the direction) only when runs of that model
    optimised different ones: top_xgboost, else top_xgboost_auc and top_xgboost_logloss."""
    same = [(m, d) for n, m, d in groups if n == name]
    if len(same) == 1:
        return name
    return f"{name}_{metric}" if [m for m, _ in same].count(metric) == 1 else f"{name}_{metric}_{direction[:3]}"


def _hosts(merged: list[_Run]) -> list[dict[str, Any]]:
    """Per run, platform and model (as in each run's own hosts.csv); with several runs, one
    more row per platform and model over them all: utilisation is the busy time over the
    slot time of the runs it appears in."""
    out: list[dict[str, Any]] = []
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for r in merged:
        slots = {k: p["max_concurrent_jobs"] for k, p in r.cfg["registry"]["platforms"].items()}
        span = _span(r.store)
        ok: dict[tuple[str, str], list[float]] = {}
        for rec in r.store.trials():
            for a in rec.result.attempts if rec.result else ():
                if a.kind == "ok":
                    ok.setdefault((a.platform, rec.info.model or rec.info.study or "custom"), []).append(a.duration_s)
        for row in tables.host_table(r.store):
            out.append({"run": r.label, **row})
            t = totals.setdefault((row["platform"], row["model"]), {"trials": 0, "attempts": 0, "busy": 0.0,
                                                                    "slot_s": 0.0, "ok": []})
            t["trials"] += row["trials"]
            t["attempts"] += row["attempts"]
            t["busy"] += row["busy_s"]
            t["slot_s"] += slots.get(row["platform"], 1) * span
            t["ok"].extend(ok.get((row["platform"], row["model"]), []))
    if len(merged) > 1:
        for (platform, model), t in sorted(totals.items()):
            out.append({"run": ALL, "platform": platform, "model": model, "trials": t["trials"],
                        "attempts": t["attempts"], "busy_s": round(t["busy"], 3),
                        "utilisation": f"{100 * t['busy'] / t['slot_s']:.1f}%" if t["slot_s"] else "",
                        "median_s": round(statistics.median(t["ok"]), 3) if t["ok"] else None})
    return out


def _span(store: RunStore) -> float:
    """The run's span as its hosts.csv measures it (first to last event), from the log's ends."""
    first, last = registry.event_ends(store.root)
    times = [e["t"] for e in ([first] if first else []) + last if isinstance(e.get("t"), (int, float))]
    return max(times) - min(times) if times else 0.0


def _csv(path: Path, columns: Iterable[str], rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: csv_cell(v) for k, v in r.items()})
    atomic_write(path, buf.getvalue())
    return path


def _tex(path: Path, template: str, caption: str, name: str, cols: list[latex.Col], body: list[list[Any]],
         pre: tuple[str, str]) -> Path:
    atomic_write(path, latex.render(template, caption, name, cols, body, *pre))
    return path


def _forget_stale(out: Path, files: dict[str, Path]) -> None:
    """Remove the files an earlier merge into ``out`` wrote that this one did not (a model
    no longer among the runs), so the folder holds one consistent set. Only files named in
    the earlier manifest are touched."""
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return
    keep = {str(p.relative_to(out)) for p in files.values()}
    for rel in old:
        if isinstance(rel, str) and rel not in keep and ".." not in Path(rel).parts and not Path(rel).is_absolute():
            (out / rel).unlink(missing_ok=True)
