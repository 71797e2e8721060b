"""Compute saved by early stopping on the built-in XGBoost search: total trial compute
(sum of attempt durations) and best score, with no pruning, ASHA and Hyperband, same
data, space, sampler seeds and trial budget.
Usage: python benchmarks/pruning.py [TRIALS] [SEEDS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator import datasets  # noqa: E402
from coordinator.app import run_search  # noqa: E402
from coordinator.config import SearchOptions  # noqa: E402


def one(pruner: str, seed: int, trials: int, data: Path, root: Path) -> dict[str, float]:
    out = run_search(SearchOptions(models=("xgboost",), data=str(data), target="home_win", time_col="season",
                                   trials=trials, parallel=2, seed=seed, pruner=pruner, runs_root=str(root)))
    results = [json.loads(p.read_text()) for p in Path(out["run_dir"]).glob("trials/*/result.json")]
    return {"compute_s": sum(r["total_s"] for r in results), "best": out["best_value"], "pruned": out["pruned"],
            "wall_s": out["elapsed_s"]}


def main() -> None:
    trials, seeds = (int(a) for a in (sys.argv[1:3] + ["30", "2"][len(sys.argv[1:3]):]))
    rows: dict[str, list[dict[str, float]]] = {"none": [], "asha": [], "hyperband": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = datasets.generate(Path(tmp) / "team_features.csv")
        for seed in range(seeds):
            for pruner in rows:  # interleaved per seed
                rows[pruner].append(one(pruner, seed, trials, data, Path(tmp) / f"{pruner}{seed}"))
    base = statistics.median(r["compute_s"] for r in rows["none"])
    print(json.dumps({"trials": trials, "seeds": seeds, **{
        p: {"median_compute_s": round(statistics.median(r["compute_s"] for r in rs), 1),
            "compute_vs_none": round(statistics.median(r["compute_s"] for r in rs) / base, 3),
            "best_auc": [round(r["best"], 4) for r in rs], "pruned": [r["pruned"] for r in rs],
            "wall_s": [round(r["wall_s"], 1) for r in rs]} for p, rs in rows.items()}}, indent=2))


if __name__ == "__main__":
    main()
