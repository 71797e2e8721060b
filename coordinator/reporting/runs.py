"""The experiment registry across runs: every run directory under a runs root, summarised
from what is cheap to read: run.json, the trials' result files, the lock (a live
coordinator) and the two ends of the event log (its first line and its last 64 KiB, never
the whole log). A directory that is not a readable run is listed as damaged, with one
reason, and never stops the listing."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from coordinator.errors import StoreError
from coordinator.records import TrialStatus
from coordinator.store.files import RUN_FILE
from coordinator.store.rundir import RunStore

EVENTS = "events.jsonl"
TAIL_BYTES = 64 * 1024
# what else lives under a runs root and is no run: MLflow's stores and artefacts, hidden folders
NOT_RUNS = frozenset({"mlruns", "mlartifacts"})
MERGED_MANIFEST = "merged.json"  # marks a folder of merged reports (coord report -o DIR), which is no run either
# events after the last search_end that mean a later coordinator (coord resume) started and died
_ACTIVITY = frozenset({"resumed", "asked", "launched", "ended", "reattached", "retry"})
STATUS_ORDER = ("COMPLETE", "PRUNED", "FAILED", "CANCELLED", "RUNNING", "UNFINISHED")


@dataclass
class RunSummary:
    """One line of ``coord runs``. ``status``: running (a live coordinator holds the lock),
    finished, interrupted (Ctrl-C, SIGTERM), unfinished (its coordinator died) or damaged."""

    run: str  # the directory's name
    path: str
    status: str
    reason: str | None = None  # why it is damaged
    name: str | None = None
    models: list[str] = field(default_factory=list)
    pid: int | None = None
    trials: dict[str, int] = field(default_factory=dict)  # by status, lower case
    planned: int | None = None
    metric: str | None = None
    direction: str | None = None
    best_value: float | None = None
    best_trial: int | None = None
    best_model: str | None = None
    hosts: list[str] = field(default_factory=list)
    started: float | None = None  # epoch seconds: the first event (else run.json's mtime)
    duration_s: float | None = None  # first to last event; a running run: to now

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["started"] = iso_time(self.started) if self.started is not None else None
        return out


def iso_time(t: float) -> str:
    """UTC, to the second: the same text on every machine (the reports' files use it)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_dirs(root: Path) -> list[Path]:
    """The folders under a runs root that may be runs, by name; hidden folders, MLflow's own
    and merged reports (``coord report --all -o runs/merged``) are left out."""
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot read the runs folder {root}: {exc.strerror or exc}") from None
    return [p for p in entries if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_RUNS
            and ((p / RUN_FILE).exists() or not (p / MERGED_MANIFEST).is_file())]


def list_runs(root: Path) -> list[RunSummary]:
    """Every run under ``root``, oldest first (damaged ones, which have no start, last)."""
    found = [summarise(p) for p in run_dirs(root)]
    return sorted(found, key=order_key)


def order_key(s: RunSummary) -> tuple[float, str, str]:
    return (s.started if s.started is not None else math.inf, s.run, s.path)


def summarise(path: Path) -> RunSummary:
    """A run's summary; a run that cannot be read is ``damaged`` with the reason."""
    try:
        return _summarise(path)
    except StoreError as exc:
        return RunSummary(path.name, str(path.absolute()), "damaged", reason=str(exc))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return RunSummary(path.name, str(path.absolute()), "damaged", reason=_why(path, exc))


def _why(path: Path, exc: BaseException) -> str:
    """One line on what is wrong, naming the file when a trial file cannot be parsed."""
    if isinstance(exc, OSError):
        return f"{exc.filename or path}: {exc.strerror or exc}"
    for f in sorted((path / "trials").glob("*/*.json")):
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as bad:
            return f"{f} is damaged ({str(bad).splitlines()[0][:120]})"
    return f"{path}: unreadable run record ({type(exc).__name__}: {str(exc)[:120]})"


def _summarise(path: Path) -> RunSummary:
    store = RunStore.open(path)
    cfg = store.config
    pid = store.live_pid()
    first, last_events = event_ends(path)
    counts: dict[str, int] = {}
    sign = 1 if cfg["directions"][0] == "maximize" else -1
    best: tuple[float, int, str | None] | None = None
    hosts: set[str] = set()
    for rec in store.trials():
        res = rec.result
        state = (res.status if res else TrialStatus.RUNNING if pid else TrialStatus.UNFINISHED).value
        counts[state] = counts.get(state, 0) + 1
        if not res:
            continue
        hosts.update(a.platform for a in res.attempts if a.platform)
        if res.platform:
            hosts.add(res.platform)
        value = res.value
        if res.status == TrialStatus.COMPLETE and isinstance(value, (int, float)) and math.isfinite(value) \
                and (best is None or sign * value > sign * best[0]):
            best = (float(value), rec.number, rec.info.model or rec.info.study)
    started = first.get("t") if first else None
    if not isinstance(started, (int, float)):
        started = (path / RUN_FILE).stat().st_mtime
    status = "running" if pid else run_state(last_events)
    last_t = max((e["t"] for e in last_events if isinstance(e.get("t"), (int, float))), default=started)
    duration = (time.time() if pid else last_t) - started
    ordered = {k.lower(): counts[k] for k in [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
               if k in counts}
    return RunSummary(
        run=path.name, path=str(store.root), status=status, name=cfg["name"], models=study_models(cfg), pid=pid,
        trials=ordered, planned=cfg["trials"] * len(cfg["studies"]), metric=cfg["metrics"][0],
        direction=cfg["directions"][0], best_value=best[0] if best else None, best_trial=best[1] if best else None,
        best_model=best[2] if best else None, hosts=sorted(hosts), started=float(started),
        duration_s=round(max(duration, 0.0), 3))


def study_models(cfg: dict[str, Any]) -> list[str]:
    """The run's models: built-in model names, or the study's name (``custom``) for a script;
    once each (a coord compare run has a study per job)."""
    return list(dict.fromkeys(s.get("model") or s["name"] for s in cfg["studies"]))


def run_state(tail: list[dict[str, Any]]) -> str:
    """finished / interrupted / unfinished, for a run no live coordinator holds, from the
    last events: the last ``search_end`` says how the last coordinator ended, unless a
    later one (a resume) started after it and died."""
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].get("event") == "search_end":
            if any(e.get("event") in _ACTIVITY for e in tail[i + 1:]):
                return "unfinished"
            return "interrupted" if tail[i].get("interrupted") else "finished"
    return "unfinished"


def event_ends(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The first event and the events in the last 64 KiB of the log (lines a crash cut
    short are skipped). Reads at most two small pieces of the file."""
    try:
        fh = open(path / EVENTS, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return None, []
    with fh:
        first = _event(fh.readline())
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size - TAIL_BYTES)
        fh.seek(start)
        chunk = fh.read()
    lines = chunk.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first line of the piece is a part of a line
    events = [e for e in (_event(line) for line in lines) if e is not None]
    return first, events


def _event(line: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def runs_named(root: Path, names: tuple[str, ...]) -> tuple[list[RunSummary], list[RunSummary]]:
    """(readable runs whose run.json name is one of ``names``, damaged runs) under ``root``;
    every readable run when ``names`` is empty."""
    found, damaged = [], []
    for s in list_runs(root):
        if s.status == "damaged":
            damaged.append(s)
        elif not names or s.name in names:
            found.append(s)
    return found, damaged


def render(summaries: list[RunSummary]) -> str:
    """The ``coord runs`` table: one line per run, columns as wide as their contents."""
    from coordinator.reporting.fmt import fmt

    header = ("RUN", "NAME", "MODELS", "STATUS", "TRIALS", "BEST", "HOSTS", "STARTED", "DURATION")
    lines: list[tuple[str, ...]] = [header]
    for s in summaries:
        if s.status == "damaged":
            lines.append((s.run, "-", "-", "damaged", s.reason or "", "", "", "", ""))
            continue
        trials = ", ".join(f"{n} {k}" for k, n in s.trials.items()) or "none"
        best = f"{s.metric} {fmt(s.best_value)} ({(s.direction or '')[:3]}, trial {s.best_trial})" \
            if s.best_value is not None else "-"
        started = datetime.fromtimestamp(s.started).strftime("%Y-%m-%d %H:%M:%S") if s.started is not None else "-"
        status = f"running (pid {s.pid})" if s.status == "running" else s.status
        lines.append((s.run, s.name or "-", ",".join(s.models), status, f"{trials} (of {s.planned})", best,
                      ",".join(s.hosts) or "-", started, duration(s.duration_s)))
    widths = [max(len(row[i]) for row in lines if row[3] != "damaged" or i < 4) for i in range(len(header))]
    out = []
    for row in lines:
        cells = row[:5] if row[3] == "damaged" else row
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip())
    return "\n".join(out)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"
