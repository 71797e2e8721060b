"""MLflow tracking: what it costs the search, and how long a replay takes.

overhead N S R: N one-second sleep trials (a --command script, a fresh ``python -S`` per
trial) on S local slots, R rounds; each round runs the search with tracking off, on with a
fresh SQLite store (as a first search under a new runs folder has it: the database's
creation happens during the search) and on with a store an earlier search made ("warm"),
in rotating order. MLflow's import is the tracking process's in every case. Reported,
median over rounds, side by side: the loop's makespan (first launch to last end, from
events.jsonl: what tracking must not slow), and the whole ``run_search`` (with tracking on,
that includes the final pass: the searches' end logged; a script has no model to refit).

sync N: a run of N quick trials (each prints 5 step reports and a final metric), searched
with tracking off, then ``coord sync`` into a fresh SQLite store (every trial new), and
again (every trial already there: the idempotent no-op).

Usage: python benchmarks/tracking.py overhead [N] [S] [R]
       python benchmarks/tracking.py sync [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.tracking.follower import sync_run
from coordinator.tracking.settings import TrackingOptions

SLEEP = "import time\ntime.sleep(1.0)\nprint('[coord-metric] {\"loss\": 1.0}')\n"
QUICK = ("import json\nfor s in range(1, 6):\n    print('[coord-metric] ' + json.dumps({'step': s, 'loss': 1.0 / s}))\n"
         "print('[coord-metric] ' + json.dumps({'loss': 0.2, 'extra': 3.0}))\n")


def _search(root: Path, body: str, n: int, s: int, tracking: TrackingOptions | None) -> tuple[float, float, dict]:
    script = root / "trial.py"
    script.write_text(body)
    space = root / "space.yaml"
    space.write_text("params:\n  x: {type: float, low: 0, high: 1}\n  y: {type: int, low: 1, high: 9}\n")
    t0 = time.perf_counter()
    out = run_search(SearchOptions(command=f"{sys.executable} -S {script}", space=str(space), metrics=("loss",),
                                   trials=n, parallel=s, sampler="random", runs_root=str(root / "runs")),
                     tracking=tracking)
    whole = time.perf_counter() - t0
    events = [json.loads(line) for line in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
    monos = [e["mono"] for e in events if e["event"] in ("launched", "ended")]
    return max(monos) - min(monos), whole, out


MODES = ("off", "on", "warm")


def _ratios(loops: dict[str, list[float]], wholes: dict[str, list[float]]) -> dict[str, float]:
    med = {m: statistics.median(v) for m, v in loops.items()}
    whole = {m: statistics.median(v) for m, v in wholes.items()}
    out = {}
    for m in MODES:
        out[f"median_loop_{m}_s"] = round(med[m], 3)
        out[f"median_whole_{m}_s"] = round(whole[m], 3)
    for m in MODES[1:]:
        out[f"loop_ratio_{m}_off"] = round(med[m] / med["off"], 4)
        out[f"loop_overhead_{m}_pct"] = round(100 * (med[m] - med["off"]) / med["off"], 2)
        out[f"whole_ratio_{m}_off"] = round(whole[m] / whole["off"], 4)
    return out


def overhead(n: int, s: int, r: int) -> None:
    """Three modes per round, the order rotated: off; on with a new store (MLflow imported
    and the database created during the search: a first search under a runs folder); on
    with a store an earlier search made (created and opened once before, untimed: every
    later search)."""
    loops: dict[str, list[float]] = {m: [] for m in MODES}
    wholes: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(r):
        for mode in MODES[i % 3:] + MODES[:i % 3]:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                uri = f"sqlite:///{root / 'mlflow.db'}"
                if mode == "warm":
                    _warm(uri)
                tracking = TrackingOptions(uri=uri) if mode != "off" else None
                loop, whole, out = _search(root, SLEEP, n, s, tracking)
                if mode != "off":
                    assert out["tracking"]["complete"], out["tracking"]
            loops[mode].append(loop)
            wholes[mode].append(whole)
    print(json.dumps({"trials": n, "slots": s, "rounds": r, "ideal_s": n / s,
                      "loop_s": {m: [round(x, 3) for x in v] for m, v in loops.items()},
                      "whole_s": {m: [round(x, 3) for x in v] for m, v in wholes.items()},
                      **_ratios(loops, wholes)}, indent=2))


def _warm(uri: str) -> None:
    """The store as an earlier search leaves it: created, migrated (in a process of its own,
    so this one never imports MLflow)."""
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from coordinator.tracking import settings, worker; "
            "settings.prepare_environment(); worker.client(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, uri, str(Path(__file__).resolve().parents[1])], check=True)


def sync(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        _, _, out = _search(root, QUICK, n, 2, None)
        searched = time.perf_counter() - t0
        uri = f"sqlite:///{root / 'mlflow.db'}"
        t0 = time.perf_counter()
        first = sync_run(Path(out["run_dir"]), uri)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = sync_run(Path(out["run_dir"]), uri)
        second_s = time.perf_counter() - t0
    assert first["created"] == n and second["created"] == 0, (first, second)
    print(json.dumps({"trials": n, "search_s": round(searched, 2), "first_sync_s": round(first_s, 2),
                      "first_sync_ms_per_trial": round(1000 * first_s / n, 2), "second_sync_s": round(second_s, 2),
                      "second_sync_ms_per_trial": round(1000 * second_s / n, 2)}, indent=2))


if __name__ == "__main__":
    mode, args = (sys.argv[1] if len(sys.argv) > 1 else "overhead"), [int(a) for a in sys.argv[2:]]
    if mode == "sync":
        sync(*(args or [1000]))
    else:
        overhead(*(args + [20, 2, 5][len(args):]))
