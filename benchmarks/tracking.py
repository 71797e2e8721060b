"""MLflow tracking: what it costs the search, and how long a replay takes.

overhead N S R: N one-second sleep trials (a --command script, a fresh ``python -S`` per
trial) on S local slots, R rounds; each round runs the search with tracking off and on
(a fresh SQLite store, as a first search under a new runs folder has it: MLflow's import
and the database's creation happen during the search), in alternating order. Reported,
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


def overhead(n: int, s: int, r: int) -> None:
    loops: dict[str, list[float]] = {"off": [], "on": []}
    wholes: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(r):
        for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                tracking = TrackingOptions(uri=f"sqlite:///{root / 'mlflow.db'}") if mode == "on" else None
                loop, whole, out = _search(root, SLEEP, n, s, tracking)
                if mode == "on":
                    assert out["tracking"]["complete"], out["tracking"]
            loops[mode].append(loop)
            wholes[mode].append(whole)
    med = {m: statistics.median(v) for m, v in loops.items()}
    whole = {m: statistics.median(v) for m, v in wholes.items()}
    print(json.dumps({"trials": n, "slots": s, "rounds": r, "ideal_s": n / s,
                      "loop_s": {m: [round(x, 3) for x in v] for m, v in loops.items()},
                      "whole_s": {m: [round(x, 3) for x in v] for m, v in wholes.items()},
                      "median_loop_off_s": round(med["off"], 3), "median_loop_on_s": round(med["on"], 3),
                      "loop_ratio_on_off": round(med["on"] / med["off"], 4),
                      "loop_overhead_pct": round(100 * (med["on"] - med["off"]) / med["off"], 2),
                      "median_whole_off_s": round(whole["off"], 3), "median_whole_on_s": round(whole["on"], 3),
                      "whole_ratio_on_off": round(whole["on"] / whole["off"], 4)}, indent=2))


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
