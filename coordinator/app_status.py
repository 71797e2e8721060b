"""``coord status``: a run's state, counts, best value and usage, read from its directory
(live or dead; never through a coordinator)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from coordinator.records import TrialStatus
from coordinator.reporting.runs import event_ends, run_state
from coordinator.store.rundir import RunStore
from coordinator.store.usage import run_usage


def run_status(path: Path) -> dict[str, Any]:
    """Counts and best value of any run, live or dead, read from its directory."""
    store = RunStore.open(path)
    pid = store.live_pid()
    run = store.run
    counts: dict[str, int] = {}
    best: tuple[float, int] | None = None
    sign = 1 if run.maximize else -1
    for rec in store.trials():
        status = rec.result.status if rec.result else TrialStatus.RUNNING if pid else TrialStatus.UNFINISHED
        counts[status.value] = counts.get(status.value, 0) + 1
        value = rec.result.value if rec.result else None
        if value is not None and (best is None or sign * value > sign * best[0]):
            best = (value, rec.number)
    # the words coord runs uses (interrupted: Ctrl-C/SIGTERM; unfinished: its coordinator
    # died), from the log's last 64 KiB, not the whole log
    tail = event_ends(store.root)[1]
    how = run_state(tail)
    ended_by = next((e.get("ended_by") for e in reversed(tail) if e.get("event") == "search_end"), None)
    state = f"live (coordinator pid {pid})" if pid else "finished" if how == "finished" else \
        f"{how} (coord resume {shlex.quote(str(path))} continues it)"
    use = run_usage(store, live=pid is not None)
    if ended_by and not pid:
        state += f": {ended_by}"  # what ended it (a budget, the goal), as the summary said
    return {"run": str(path), "state": state, "name": run.name, "metric": run.metrics[0],
            "planned": run.trials * len(run.studies), **{k.lower(): v for k, v in sorted(counts.items())},
            "best_value": best[0] if best else None, "best_trial": best[1] if best else None,
            "machine_hours": round(use.total.machine_hours, 6), "gpu_hours": round(use.total.gpu_hours, 6),
            "cost": None if use.total.cost is None else round(use.total.cost, 6), "currency": use.currency}
