"""A search run's offline HTML report (``report/index.html``): one self-contained page with
the summary, the tables (best per model, top configurations, hosts), every figure of the
report embedded as a PNG, and each trial with links to its logs in the run directory.
The same layout and writer as a comparison's page (``analysis/html.py``); same run, same
bytes (no date or version that changes by itself)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from coordinator.analysis.html import Image, render
from coordinator.analysis.tables import Cell, Column, Table
from coordinator.records import TrialStatus
from coordinator.reporting.fmt import fmt
from coordinator.store.files import atomic_write
from coordinator.store.rundir import RunStore

TOP_K = 10
PAGE = "index.html"


def _num(v: Any) -> Cell:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return Cell(text="" if v is None else str(v))
    if isinstance(v, int):
        return Cell(mean=float(v), decimals=0)
    # 4 significant digits, as the console and the LaTeX tables show it
    text = fmt(v)
    decimals = len(text.split(".", 1)[1]) if "." in text and "e" not in text else 0
    return Cell(mean=float(v), decimals=decimals)


def _text(v: Any) -> Cell:
    return Cell(text="" if v is None else str(v))


def _tables(store: RunStore, table: list[dict[str, Any]], best: dict[str, Any],
            host_rows: list[dict[str, Any]]) -> list[Table]:
    cfg = store.config
    metrics, maximize = list(cfg["metrics"]), cfg["directions"][0] == "maximize"
    out = []
    summary_rows = []
    for study in cfg["studies"]:
        mine = [r for r in table if r["study"] == study["name"]]
        b = best.get(study["name"]) or {}
        done = sum(r["status"] == TrialStatus.COMPLETE.value for r in mine)
        summary_rows.append((_text(study["name"]), _num(len(mine)), _num(done), _num(b.get("value")),
                             _num(b.get("number")), _text(b.get("platform"))))
    out.append(Table("models", "Best per model", f"Best {metrics[0]} per model", (
        Column("Model", numeric=False), Column("Trials"), Column("Complete"), Column(f"Best {metrics[0]}"),
        Column("Trial"), Column("Platform", numeric=False)), (tuple(summary_rows),)))
    for study in cfg["studies"]:
        params = list(study["space"]["params"])
        done = [r for r in table if r["study"] == study["name"] and r["status"] == TrialStatus.COMPLETE.value]
        done.sort(key=lambda r: (-r["value"] if maximize else r["value"], r["number"]))
        if not done:
            continue
        rows = tuple((_num(i + 1), _num(r["number"]), *[_num(r.get(p)) for p in params],
                      *[_num(r.get(m)) for m in metrics]) for i, r in enumerate(done[:TOP_K]))
        columns = (Column("Rank"), Column("Trial"), *[Column(p) for p in params], *[Column(m) for m in metrics])
        out.append(Table(f"top_{study['name']}", f"Top configurations: {study['name']}",
                         f"Top {len(rows)} of {len(done)} completed {study['name']} configurations by {metrics[0]}",
                         columns, (rows,)))
    if host_rows:
        keys = ("platform", "model", "trials", "attempts", "busy_s", "utilisation", "median_s")
        out.append(Table("hosts", "Hosts", "Trials per platform: busy time, utilisation and median duration",
                         tuple(Column(k.replace("_", " "), numeric=k not in ("platform", "model", "utilisation"))
                               for k in keys),
                         (tuple(tuple(_num(r.get(k)) if k not in ("platform", "model", "utilisation")
                                      else _text(r.get(k)) for k in keys) for r in host_rows),)))
    return out


def _links(store: RunStore) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each trial, with its last attempt's logs, relative to the report folder."""
    links: list[tuple[str, list[tuple[str, str]]]] = []
    for rec in store.trials():
        res = rec.result
        attempt = res.attempt if res else max(store.attempts(rec.number), default=1)
        status = res.status.value if res else TrialStatus.UNFINISHED.value
        value = f" {fmt(res.value)}" if res and res.value is not None else ""
        label = f"trial {rec.number} ({rec.info.model or rec.info.study}) {status}{value}"
        adir = store.attempt_dir(rec.number, attempt)
        logs = [(name, f"../trials/{rec.number}/attempt-{attempt}/{name}") for name in ("stdout", "stderr")
                if (adir / name).is_file()]  # an SSH attempt's whole stderr stays on its host
        links.append((label, logs))
    return links


def write_page(store: RunStore, table: list[dict[str, Any]], best: dict[str, Any],
               host_rows: list[dict[str, Any]], files: dict[str, Path]) -> Path:
    """``report/index.html`` from what the report just wrote (``files``) and its rows."""
    out = store.root / "report"
    cfg = store.config
    counts = {s.value: sum(r["status"] == s.value for r in table) for s in TrialStatus if s.terminal}
    prov = cfg.get("provenance") or {}
    git = prov.get("git") or {}
    summary = [("Run", store.root.name), ("Models", ", ".join(s.get("model") or s["name"] for s in cfg["studies"])),
               ("Trials", ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n) or "none"),
               ("Metric", ", ".join(f"{m} ({d})" for m, d in zip(cfg["metrics"], cfg["directions"], strict=False))),
               ("Sampler", f"{(cfg.get('options') or {}).get('sampler', '-')} "
                           f"(seed {fmt((cfg.get('options') or {}).get('seed'))})"),
               ("Platforms", ", ".join(sorted({r["platform"] for r in table if r.get("platform")})) or "-")]
    if prov:
        summary.append(("coord", f"{prov.get('coord_version', '-')}" + (
            f", git {git['commit'][:12]}{' (dirty)' if git.get('dirty') == 'true' else ''}" if git.get("commit")
            else "")))
    images = [Image(p.stem.replace("_", " "), p, p.stem) for p in sorted(out.rglob("*.png"))]
    names = sorted(str(p.relative_to(out)) for p in files.values() if p.is_file() and out in p.parents)
    page = render(f"coord run {store.root.name}", summary, _tables(store, table, best, host_rows), images,
                  names, links=_links(store))
    path = out / PAGE
    atomic_write(path, page)
    return path
