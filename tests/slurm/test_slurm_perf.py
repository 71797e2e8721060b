"""The SLURM benchmark's measurement (benchmarks/slurm.py; docs/performance.md quotes its
figures) is right on a few trials: both modes complete, the pilot mode uses one job per
slot, the per-trial mode one job per trial, and the latencies are real. Not a timing test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests import slurmcluster

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "slurm.py"


def test_the_benchmark_measures_both_modes(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_slurm", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    job = bench.one(tmp_path, False, 4, slurm)
    pilot = bench.one(tmp_path, True, 4, slurm)
    assert job["jobs"] == 4 and pilot["jobs"] == 2, (job, pilot)
    for row in (job, pilot):
        assert 0 < row["latency_median_s"] <= row["latency_max_s"] < 60, row
        assert row["wall_s"] > row["ideal_s"] == 2.0, row
