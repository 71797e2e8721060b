"""Overhead of the per-trial-job mode: 20 one-second trials on 2 slots of the test cluster
(docs/performance.md quotes what this prints)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests import slurmcluster
from tests.slurm.test_slurm_search import coord, registry, results

TRIAL = """\
import json, os, time
print('[coord-metric] ' + json.dumps({'started': time.time()}), flush=True)
time.sleep(1)
print('[coord-metric] ' + json.dumps({'loss': json.load(open(os.environ['COORD_SPEC']))['params']['x']}))
"""


def test_twenty_one_second_trials_on_two_slots(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    registry(tmp_path)
    (tmp_path / "t.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 100}\n")
    t0 = time.monotonic()
    done = coord(tmp_path, "search", "--command", f"python3 {tmp_path / 't.py'}", "--space", "space.yaml",
                 "--metric", "loss", "--trials", "20", "--parallel", "2", "--registry", "reg.yaml",
                 "--run-dir", "run", "--quiet", timeout=600)
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    res = results(tmp_path / "run")
    assert len(res) == 20 and all(r["status"] == "COMPLETE" for r in res)
    subs = {int(p.parent.parent.name): p.stat().st_mtime for p in (tmp_path / "run").glob("trials/*/attempt-1/slurm.json")}
    lat = sorted(r["metrics"]["started"] - subs[r["number"]] for r in res)
    print(json.dumps({"wall_s": round(wall, 1), "ideal_s": 10.0, "overhead_s": round(wall - 10.0, 1),
                      "queue_latency_median_s": round(lat[len(lat) // 2], 2), "queue_latency_max_s": round(lat[-1], 2)}))
    assert wall < 10.0 * 12  # a loose bound: catches a poll loop that stalls, not a slow machine
