"""`coord runs` (the registry: run.json, the results, the event log's two ends) against
`coord status` on every run (which reads each whole event log), side by side.

One real run of T fast `--command` trials is made, copied R times under one runs root, and
its event log padded with P further copies of its own events (a long run's log: retries,
resumes, prune decisions); then both listings run K times each, interleaved, median.
Usage: python benchmarks/runs_listing.py [T] [R] [P] [K]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from coordinator.app import run_search, run_status
from coordinator.config.experiment import SearchOptions
from coordinator.reporting.runs import list_runs


def main() -> None:
    t, r, p, k = (int(a) for a in (sys.argv[1:] + ["50", "20", "20", "5"][len(sys.argv) - 1:])[:4])
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "t.py").write_text("print('[coord-metric] {\"loss\": 0.5}')\n")
        (base / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
        out = run_search(SearchOptions(command=f"{sys.executable} -S {base / 't.py'}", space=str(base / "space.yaml"),
                                       metrics=("loss",), trials=t, sampler="random", run_dir=str(base / "one")))
        one = Path(out["run_dir"])
        events = (one / "events.jsonl").read_text().splitlines()
        (one / "events.jsonl").write_text("\n".join(events[:1] + events[1:-1] * (p + 1) + events[-1:]) + "\n")
        root = base / "runs"
        for i in range(r):
            shutil.copytree(one, root / f"run-{i:03d}", ignore=shutil.ignore_patterns("lock"))
        log_bytes = (one / "events.jsonl").stat().st_size
        registry, status = [], []
        for _ in range(k):
            t0 = time.perf_counter()
            listed = list_runs(root)
            registry.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            states = [run_status(d) for d in sorted(root.iterdir())]
            status.append(time.perf_counter() - t0)
        assert len(listed) == len(states) == r and all(s.status == "finished" for s in listed)
    med_reg, med_status = statistics.median(registry), statistics.median(status)
    print(json.dumps({"trials_per_run": t, "runs": r, "event_log_bytes_per_run": log_bytes, "repeats": k,
                      "coord_runs_s": round(med_reg, 4), "status_every_run_s": round(med_status, 4),
                      "ratio": round(med_reg / med_status, 3)}, indent=2))


if __name__ == "__main__":
    main()
