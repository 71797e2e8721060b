"""Built-in XGBoost search: coord (warm runners, one per slot) against plain Optuna
``study.optimize(n_jobs=S)`` in one process, side by side, interleaved A B A B.

Same data (the built-in data set), same space (registry/spaces/xgboost.yaml), same TPE
seed, same trial budget, same concurrency, same training code (runners/trialkit.py).
Reports wall time and summed trial compute (train_seconds); with the random sampler both
contenders train the same configurations. Also times `coord --help`.
Usage: python benchmarks/vs_optuna.py [TRIALS] [SLOTS] [ROUNDS] [SAMPLERS, e.g. random,tpe]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coordinator import resources
from coordinator.app import run_search
from coordinator.config import datasets
from coordinator.config.experiment import SearchOptions

RUNNERS = resources.folder("runners")
SPACES = RUNNERS.parent / "registry" / "spaces"
FIXED_SPACE = """params:
  reg_lambda: {type: float, low: 1.0, high: 1.000001}
fixed: {n_estimators: 200, max_depth: 6, learning_rate: 0.1}
"""


def space_path(sampler: str, tmp: Path) -> Path:
    """'fixed' = equal-cost trials (overhead alone); otherwise the shipped xgboost space."""
    if sampler != "fixed":
        return SPACES / "xgboost.yaml"
    path = tmp / "fixed.yaml"
    path.write_text(FIXED_SPACE)
    return path


def run_coord(trials: int, slots: int, data: Path, root: Path, sampler: str) -> dict[str, float]:
    t0 = time.perf_counter()
    out = run_search(SearchOptions(models=("xgboost",), data=str(data), target="home_win", time_col="season",
                                   cv="walk-forward", trials=trials, parallel=slots, seed=0,
                                   sampler="random" if sampler == "fixed" else sampler,
                                   space=str(space_path(sampler, data.parent)), runs_root=str(root)))
    wall = time.perf_counter() - t0
    results = [json.loads(p.read_text()) for p in Path(out["run_dir"]).glob("trials/*/result.json")]
    return {"wall": wall, "best": out["best_value"],
            "compute": sum(r["metrics"]["train_seconds"] for r in results)}


def run_plain_optuna(trials: int, slots: int, data: Path, sampler: str) -> dict[str, float]:
    """A fresh process, as a user would run a script: imports count, as they do for coord."""
    code = f"""
import sys, time, io
t0 = time.perf_counter()
sys.path.insert(0, {str(RUNNERS)!r}); sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import optuna, trialkit, json
from coordinator.config.space import load_space
optuna.logging.set_verbosity(optuna.logging.ERROR)
space = load_space({str(space_path(sampler, data.parent))!r})
data = {{"path": {str(data)!r}, "target": "home_win", "time_col": "season", "cv": "walk-forward", "folds": 3,
        "split_seed": 0, "task": "classification"}}
def objective(trial):
    params = {{**{{n: trial._suggest(n, d) for n, d in space.distributions().items()}}, **space.fixed}}
    buf = io.StringIO()
    code = trialkit.run_spec({{"model": "xgboost", "params": params, "seed": trial.number, "threads": 1,
                              "data": data}}, buf)
    line = [l for l in buf.getvalue().splitlines() if l.startswith("[coord-metric]")][-1]
    metrics = json.loads(line.split(" ", 1)[1])
    COMPUTE.append(metrics["train_seconds"])
    return metrics["auc"]
COMPUTE = []
sampler = (optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True) if {sampler!r} == "tpe"
           else optuna.samplers.RandomSampler(seed=0))
study = optuna.create_study(direction="maximize", sampler=sampler)
study.optimize(objective, n_trials={trials}, n_jobs={slots})
print(json.dumps({{"wall": time.perf_counter() - t0, "best": study.best_value, "compute": sum(COMPUTE)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return res


def help_time(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["coord", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    trials, slots, rounds = (int(a) for a in (sys.argv[1:4] + ["16", "2", "3"][len(sys.argv[1:4]):])[:3])
    samplers = sys.argv[4].split(",") if len(sys.argv) > 4 else ["fixed", "random", "tpe"]
    report: dict[str, object] = {"trials": trials, "slots": slots, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        data = datasets.generate(Path(tmp) / "team_features.csv")
        for sampler in samplers:
            runs: dict[str, list[dict[str, float]]] = {"coord": [], "optuna": []}
            for i in range(rounds):  # interleaved: A B A B
                runs["coord"].append(run_coord(trials, slots, data, Path(tmp) / f"{sampler}{i}", sampler))
                runs["optuna"].append(run_plain_optuna(trials, slots, data, sampler))
            summary = {}
            for name, rs in runs.items():
                summary[name] = {"wall_s": [round(r["wall"], 2) for r in rs],
                                 "median_wall_s": round(statistics.median(r["wall"] for r in rs), 2),
                                 "median_compute_s": round(statistics.median(r["compute"] for r in rs), 2),
                                 "best_auc": [round(r["best"], 4) for r in rs]}
            summary["coord_over_optuna_wall"] = round(summary["coord"]["median_wall_s"] /
                                                      summary["optuna"]["median_wall_s"], 3)
            report[sampler] = summary
    report["coord_help_s"] = round(help_time(), 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
