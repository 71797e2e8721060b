"""SLURM: one job per attempt vs pilot jobs, on the real one-node test cluster
(tests/slurmcluster.py: slurmctld + slurmd on loopback, 2 CPUs), coord on the login node.

For each mode, ROUNDS rounds (the modes alternate, so a load change hits both):
``coord search`` of TRIALS one-second trials (a --command script: a metric line at its
start, one second of sleep, its loss) on 2 slots. Per round:

- makespan: the search's wall time, from the coord process's start to its exit, and its
  overhead over the ideal makespan (TRIALS x 1 s / 2 slots);
- queue latency per trial: from the attempt's submission record (``slurm.json``, written
  when sbatch answered, or when the attempt was placed in a pilot's inbox) to the trial's
  first metric line (its own clock).

Prints one JSON line per round and a summary of medians over the rounds.

Usage: PYTHONPATH=$PWD python benchmarks/slurm.py [ROUNDS] [TRIALS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import slurmcluster  # noqa: E402

TRIAL = """\
import json, os, time
print('[coord-metric] ' + json.dumps({'started': time.time()}), flush=True)
time.sleep(1)
print('[coord-metric] ' + json.dumps({'loss': json.load(open(os.environ['COORD_SPEC']))['params']['x']}))
"""


def registry(tmp: Path, pilot: bool) -> None:
    (tmp / "reg.yaml").write_text(f"""\
platforms:
  cluster:
    connection: slurm
    python: {sys.executable}
    work_dir: {tmp / 'shared'}
    specs: {{cpu_cores: 2, memory_gb: 1}}
    max_concurrent_jobs: 2
    slurm:
      partition: {slurmcluster.PARTITION}
      time_limit: "00:10:00"
      mem: 100M
      pilot: {str(pilot).lower()}
task_routing_rules:
  - model_type: custom
    route_to: [cluster]
allow_local_fallback: false
""")


def one(base: Path, pilot: bool, trials: int, cluster: slurmcluster.Cluster) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(dir=base))
    registry(tmp, pilot)
    (tmp / "t.py").write_text(TRIAL)
    (tmp / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 100}\n")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "coordinator", "search", "--command", f"python3 {tmp / 't.py'}",
                           "--space", "space.yaml", "--metric", "loss", "--trials", str(trials), "--parallel", "2",
                           "--registry", "reg.yaml", "--run-dir", "run", "--quiet"], cwd=tmp,
                          env={**cluster.env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"search failed: {done.stderr[-2000:]}")
    res = [json.loads(p.read_text()) for p in (tmp / "run").glob("trials/*/result.json")]
    assert len(res) == trials and all(r["status"] == "COMPLETE" for r in res)
    placed = {int(p.parent.parent.name): p.stat().st_mtime for p in (tmp / "run").glob("trials/*/attempt-1/slurm.json")}
    lat = sorted(r["metrics"]["started"] - placed[r["number"]] for r in res)
    jobs = {json.loads(p.read_text())["job"] for p in (tmp / "run").glob("trials/*/attempt-*/slurm.json")}
    ideal = trials / 2
    return {"wall_s": round(wall, 2), "ideal_s": ideal, "overhead_pct": round(100 * (wall - ideal) / ideal, 1),
            "latency_median_s": round(lat[len(lat) // 2], 3), "latency_max_s": round(lat[-1], 3),
            "jobs": len(jobs)}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    base = Path(tempfile.mkdtemp(prefix="coord-bench-slurm-"))
    cluster = slurmcluster.Cluster(base / "cluster")
    cluster.start()
    out: dict[str, list[dict[str, float]]] = {"job": [], "pilot": []}
    try:
        for r in range(rounds):
            for mode in (("job", "pilot") if r % 2 == 0 else ("pilot", "job")):
                row = one(base, mode == "pilot", trials, cluster)
                out[mode].append(row)
                print(json.dumps({"round": r + 1, "mode": mode, **row}), flush=True)
    finally:
        cluster.stop()
        slurmcluster.remove(base)
    summary = {mode: {k: statistics.median(row[k] for row in rows) for k in rows[0]} for mode, rows in out.items()}
    print(json.dumps({"trials": trials, "slots": 2, "rounds": rounds, "load": os.getloadavg()[0], "median": summary}))


if __name__ == "__main__":
    main()
