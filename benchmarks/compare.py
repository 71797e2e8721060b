"""The multi-model comparison on the built-in data set (22 seasons x 400 games), one core.

1. The comparison jobs (runners/compare_job.py): GLM, XGBoost, random forest and MLP with
   their runner defaults, SEEDS seeds, none + platt + isotonic from one job per model and
   seed, walk-forward over the last FOLDS seasons, run one after another in one warm
   process (what one slot's worker does): seconds per job.
2. write_comparison on their predictions: every CSV, JSON, LaTeX table, figure and the
   HTML report (2000 bootstrap resamples).
3. The season-block bootstrap (AUC + Brier of 12 entries x SEEDS seeds): the vectorised
   weighted metrics against a loop calling scikit-learn on each resample's rows; median
   of R runs side by side, and their ratio.

Usage: python benchmarks/compare.py [SEEDS] [FOLDS] [R]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from coordinator import resources
from coordinator.analysis import bootstrap
from coordinator.analysis.compare import write_comparison
from coordinator.analysis.predictions import Entry, group, load
from coordinator.config import datasets

MODELS = ("glm", "xgboost", "random_forest", "mlp")
DRIVER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import compare_job
times = []
for spec in json.load(open(sys.argv[2])):
    t = time.perf_counter(); code = compare_job.run(spec); times.append([spec["model"], time.perf_counter() - t, code])
json.dump(times, open(sys.argv[3], "w"))
"""


def jobs(root: Path, seeds: int, folds: int) -> list[list[object]]:
    data = datasets.generate(root / "team_features.csv")
    specs = [{"model": m, "params": {}, "seed": s, "threads": 1,
              "data": {"path": str(data), "target": "home_win", "time_col": "season", "cv": "walk-forward",
                       "folds": folds, "task": "classification"},
              "compare": {"calibration": ["none", "platt", "isotonic"]},
              "checkpoint_dir": str(root / "jobs" / f"{m}-{s}")} for m in MODELS for s in range(seeds)]
    (root / "specs.json").write_text(json.dumps(specs))
    subprocess.run([sys.executable, "-c", DRIVER, str(resources.folder("runners")), str(root / "specs.json"),
                    str(root / "times.json")], check=True, capture_output=True)
    times: list[list[object]] = json.loads((root / "times.json").read_text())
    return times


def naive_bootstrap(entries: list[Entry], resamples: int, seed: int) -> None:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    blocks = np.asarray(entries[0].runs[0].blocks)
    names = sorted(set(blocks.tolist()))
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        rows = np.concatenate([np.flatnonzero(blocks == names[i]) for i in rng.integers(0, len(names), len(names))])
        for e in entries:
            for r in e.runs:
                roc_auc_score(r.y[rows], r.p[rows])
                brier_score_loss(r.y[rows], r.p[rows])


def main() -> None:
    seeds, folds, runs = (int(a) for a in (sys.argv[1:] + ["3", "5", "3"][len(sys.argv) - 1:])[:3])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        times = jobs(root, seeds, folds)
        jobs_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_comparison([root / "jobs"], root / "out")
        outputs_s = time.perf_counter() - t0
        entries = group(load([root / "jobs"]))
        fast, slow = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            bootstrap.paired_bootstrap(entries, resamples=200, seed=0)
            fast.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            naive_bootstrap(entries, 200, 0)
            slow.append(time.perf_counter() - t0)
    per_model = {m: round(statistics.median(float(t[1]) for t in times if t[0] == m), 2)
                 for m in MODELS}
    print(json.dumps({"rows": 8800, "test_seasons": folds, "seeds": seeds, "jobs": len(times),
                      "exit_codes": sorted({t[2] for t in times}), "median_job_s": per_model,
                      "all_jobs_one_core_s": round(jobs_s, 1), "outputs_s": round(outputs_s, 2),
                      "bootstrap_200_vectorised_s": round(statistics.median(fast), 3),
                      "bootstrap_200_sklearn_loop_s": round(statistics.median(slow), 3),
                      "bootstrap_ratio": round(statistics.median(slow) / statistics.median(fast), 1)}, indent=2))


if __name__ == "__main__":
    main()
