"""Overhead over the ideal makespan and slot-refill latency, local slots.

N one-second sleep trials (a user --command: a fresh process per trial) on S slots.
Ideal makespan = N/S seconds. Dispatch latency = time from a slot freeing (the end of a
trial seen by the backend) to the next trial's process running on that slot, read from
events.jsonl. Median of R runs. Usage: python benchmarks/overhead.py [N] [S] [R]
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


def one_run(n: int, s: int, root: Path) -> tuple[float, list[float], float]:
    script = root / "sleep.py"
    script.write_text("import time\ntime.sleep(1.0)\nprint('[coord-metric] {\"loss\": 1.0}')\n")
    space = root / "space.yaml"
    space.write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    t0 = time.perf_counter()
    out = run_search(SearchOptions(command=f"{sys.executable} -S {script}", space=str(space), metrics=("loss",),
                                   trials=n, parallel=s, sampler="random", runs_root=str(root / "runs")))
    makespan = time.perf_counter() - t0
    events = [json.loads(line) for line in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
    slot_of: dict[int, int] = {}
    freed: dict[int, float] = {}
    gaps = []
    for e in events:
        if e["event"] == "launched":
            if e["slot"] in freed:
                gaps.append((e["mono"] - freed.pop(e["slot"])) * 1000)
            slot_of[e["number"]] = e["slot"]
        elif e["event"] == "ended":
            freed[slot_of[e["number"]]] = e["mono"]
    monos = [e["mono"] for e in events if e["event"] in ("launched", "ended")]
    return makespan, gaps, max(monos) - min(monos)  # first launch to last end: the loop alone


def main() -> None:
    n, s, r = (int(a) for a in (sys.argv[1:] + ["20", "2", "3"][len(sys.argv) - 1:])[:3])
    ideal = n / s
    makespans, latencies, loops = [], [], []
    for _ in range(r):
        with tempfile.TemporaryDirectory() as tmp:
            m, gaps, loop = one_run(n, s, Path(tmp))
        makespans.append(m)
        loops.append(loop)
        latencies.extend(gaps)
    med = statistics.median(makespans)
    print(json.dumps({"trials": n, "slots": s, "runs": r, "ideal_s": ideal, "makespans_s": [round(x, 3) for x in makespans],
                      "median_makespan_s": round(med, 3), "overhead_pct": round(100 * (med - ideal) / ideal, 2),
                      "loop_makespan_s": round(statistics.median(loops), 3),
                      "loop_overhead_pct": round(100 * (statistics.median(loops) - ideal) / ideal, 2),
                      "refill_latency_ms_median": round(statistics.median(latencies), 2),
                      "refill_latency_ms_p90": round(sorted(latencies)[int(0.9 * (len(latencies) - 1))], 2)}, indent=2))


if __name__ == "__main__":
    main()
