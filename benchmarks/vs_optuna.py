"""Built-in XGBoost search: coord (warm runners, one per slot) against plain Optuna
``study.optimize(n_jobs=S)`` in one process, side by side, interleaved A B A B.

Same data (the built-in data set), same space (registry/spaces/xgboost.yaml), same TPE
seed, same trial budget, same concurrency, same training code (runners/trialkit.py).
Also times `coord --help`. Usage: python benchmarks/vs_optuna.py [TRIALS] [SLOTS] [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coordinator import datasets, resources
from coordinator.app import run_search
from coordinator.config import SearchOptions
from coordinator.space import load_space

RUNNERS = resources.folder("runners")


def run_coord(trials: int, slots: int, data: Path, root: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = run_search(SearchOptions(models=("xgboost",), data=str(data), target="home_win", time_col="season",
                                   cv="walk-forward", trials=trials, parallel=slots, seed=0,
                                   runs_root=str(root)))
    return time.perf_counter() - t0, out["best_value"]


def run_plain_optuna(trials: int, slots: int, data: Path) -> tuple[float, float]:
    """A fresh process, as a user would run a script: imports count, as they do for coord."""
    code = f"""
import sys, time, io
t0 = time.perf_counter()
sys.path.insert(0, {str(RUNNERS)!r}); sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import optuna, trialkit, json
from coordinator.space import load_space
optuna.logging.set_verbosity(optuna.logging.ERROR)
space = load_space({str(RUNNERS.parent / 'registry' / 'spaces' / 'xgboost.yaml')!r})
data = {{"path": {str(data)!r}, "target": "home_win", "time_col": "season", "cv": "walk-forward", "folds": 3,
        "split_seed": 0, "task": "classification"}}
def objective(trial):
    params = {{n: trial._suggest(n, d) for n, d in space.distributions().items()}}
    buf = io.StringIO()
    code = trialkit.run_spec({{"model": "xgboost", "params": params, "seed": trial.number, "threads": 1,
                              "data": data}}, buf)
    line = [l for l in buf.getvalue().splitlines() if l.startswith("[coord-metric]")][-1]
    return json.loads(line.split(" ", 1)[1])["auc"]
study = optuna.create_study(direction="maximize",
                            sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True))
study.optimize(objective, n_trials={trials}, n_jobs={slots})
print(json.dumps({{"elapsed": time.perf_counter() - t0, "best": study.best_value}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    return res["elapsed"], res["best"]


def help_time(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["coord", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    trials, slots, rounds = (int(a) for a in (sys.argv[1:] + ["16", "2", "3"][len(sys.argv) - 1:])[:3])
    load_space(RUNNERS.parent / "registry" / "spaces" / "xgboost.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        data = datasets.generate(Path(tmp) / "team_features.csv")
        coord_t, optuna_t, coord_best, optuna_best = [], [], [], []
        for i in range(rounds):
            t, b = run_coord(trials, slots, data, Path(tmp) / f"runs{i}")
            coord_t.append(t)
            coord_best.append(b)
            t, b = run_plain_optuna(trials, slots, data)
            optuna_t.append(t)
            optuna_best.append(b)
    c, o = statistics.median(coord_t), statistics.median(optuna_t)
    print(json.dumps({"trials": trials, "slots": slots, "rounds": rounds,
                      "coord_s": [round(x, 2) for x in coord_t], "optuna_n_jobs_s": [round(x, 2) for x in optuna_t],
                      "coord_median_s": round(c, 2), "optuna_median_s": round(o, 2),
                      "coord_over_optuna": round(c / o, 3), "coord_best_auc": coord_best,
                      "optuna_best_auc": optuna_best, "coord_help_s": round(help_time(), 3)}, indent=2))


if __name__ == "__main__":
    main()
