"""What a person (or a script) sees while a search runs.

- a live rich table on a terminal: done / running / failed, best so far, busy slots per
  platform, elapsed and ETA;
- one plain line per finished trial when stdout is not a terminal (logs, CI);
- ``--json``: one JSON object per line, per event, for scripts;
- ``--quiet``: nothing until the final summary.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from coordinator.config.datasets import describe
from coordinator.records import Result, TrialStatus
from coordinator.reporting.fmt import fmt  # the one value format: progress, summary and status agree
from coordinator.tracking.tracker import Snapshot, Tracker


def _which(info: dict[str, Any]) -> bool:
    """Whether progress lines name each trial's study: in a search of several models, a
    trial number alone does not say which model it was."""
    return len(info.get("studies") or ()) > 1


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def gpu_line(util: tuple[float | None, ...] | None) -> str:
    """The host's GPU utilisation as nvidia-smi last reported it there ("" without one)."""
    if not util:
        return ""
    return ", GPU " + " ".join("?" if u is None else f"{u:.0f}%" for u in util)


class LiveDisplay(Tracker):
    """A rich live panel, refreshed a few times a second."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        self.last: list[str] = []
        self.several = False

    def on_search_start(self, info: dict[str, Any]) -> None:
        self.several = _which(info)
        line = describe(info.get("data"))
        if line:
            self.console.print(line, markup=False, highlight=False)

    def on_trial_end(self, result: Result) -> None:
        study = f" {result.study}" if self.several else ""
        self.last = ([f"#{result.number}{study} {result.status.value.lower()} {fmt(result.value)} on "
                      f"{result.platform} in {result.duration_s:.1f}s"] + self.last)[:5]

    def on_tick(self, snap: Snapshot) -> None:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_row("[bold]trials[/]", f"{snap.done}/{snap.total} done, {snap.running} running, "
                                         f"[red]{snap.failed} failed[/], {snap.retries} retries")
        if snap.best_value is not None:
            table.add_row("[bold]best[/]", f"{snap.metric} = [green]{fmt(snap.best_value)}[/] "
                                           f"(trial #{snap.best_number})")
        for name, (busy, slots) in snap.busy.items():
            table.add_row(f"[bold]{name}[/]", "█" * busy + "░" * (slots - busy) + f" {busy}/{slots} busy"
                          + gpu_line(snap.gpu.get(name)))
        table.add_row("[bold]time[/]", f"{_clock(snap.elapsed_s)} elapsed, ETA {_clock(snap.eta_s)}")
        if snap.used:
            table.add_row("[bold]used[/]", snap.used)
        if snap.waiting_reason and snap.running == 0:
            table.add_row("[bold]waiting[/]", snap.waiting_reason)
        for line in self.last:
            table.add_row("", f"[dim]{line}[/]")
        self.live.update(table)

    def close(self) -> None:
        self.live.stop()


class PlainLines(Tracker):
    """One line per finished trial (stdout is not a terminal)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout  # looked up now: a default bound at import outlives a swapped stdout
        self.snap: Snapshot | None = None
        self.several = False

    def on_search_start(self, info: dict[str, Any]) -> None:
        self.several = _which(info)
        line = describe(info.get("data"))
        if line:
            self.out.write(line + "\n")
            self.out.flush()

    def on_tick(self, snap: Snapshot) -> None:
        self.snap = snap

    def on_trial_end(self, result: Result) -> None:
        extra = "" if result.status == TrialStatus.COMPLETE else f" ({result.kind})"
        value = f" {fmt(result.value)}" if result.value is not None else ""
        study = f" ({result.study})" if self.several else ""
        gpu = gpu_line(self.snap.gpu.get(result.platform)) if self.snap is not None else ""
        self.out.write(f"trial {result.number}{study} {result.status.value}{extra}{value} on "
                       f"{result.platform} in {result.duration_s:.1f}s{f' ({gpu[2:]})' if gpu else ''}\n")
        self.out.flush()


class JsonLines(Tracker):
    """Machine-readable events on stdout, one JSON object a line."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def _emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, default=str) + "\n")
        self.out.flush()

    def on_search_start(self, info: dict[str, Any]) -> None:
        self._emit({"event": "search_start", **info})

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None:
        self._emit({"event": "trial_start", "number": number, **info})

    def on_trial_end(self, result: Result) -> None:
        self._emit({"event": "trial_end", "number": result.number, "study": result.study,
                    "status": result.status.value,
                    "values": result.values, "platform": result.platform, "duration_s": result.duration_s})
