"""Compute saved by early stopping on the built-in XGBoost (and MLP) search: total trial
compute (the sum of every attempt's duration) and the best score, with no pruning, ASHA
and Hyperband; same data, space, sampler seeds and trial budget. In the same run, plain
Optuna ``study.optimize(n_jobs=2)`` with the same sampler and pruner, training with the
same runner code in-process, is the reference.

Usage: python benchmarks/pruning.py [TRIALS] [SEEDS] [MODEL] [PRUNERS]
PRUNERS is a comma list, e.g. none,asha,hyperband or none,asha:1,asha:2 (``:R`` sets the
minimum resource instead of the model's default); OPTUNA=0 skips the reference.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "runners"))

from coordinator.app import run_search  # noqa: E402
from coordinator.config import datasets  # noqa: E402
from coordinator.config.experiment import SearchOptions, resolve  # noqa: E402
from coordinator.search import make_pruner, make_sampler  # noqa: E402


def coord(model: str, pruner: str, seed: int, trials: int, data: Path, root: Path) -> dict[str, Any]:
    name, _, min_resource = pruner.partition(":")
    out = run_search(SearchOptions(models=(model,), data=str(data), target="home_win", time_col="season",
                                   trials=trials, parallel=2, seed=seed, pruner=name,
                                   min_resource=int(min_resource) if min_resource else None, runs_root=str(root)))
    results = [json.loads(p.read_text()) for p in Path(out["run_dir"]).glob("trials/*/result.json")]
    spec = json.loads(next(Path(out["run_dir"]).glob("trials/0/attempt-1/spec.json")).read_text())
    return {"compute_s": sum(r["total_s"] for r in results), "best": out["best_value"], "pruned": out["pruned"],
            "wall_s": out["elapsed_s"], "data": spec["data"]}


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(name, dist.choices)


def plain_optuna(model: str, pruner: str, seed: int, trials: int, data: dict[str, Any], root: Path) -> dict[str, Any]:
    """The reference: one process, ``study.optimize(n_jobs=2)``, the runner's training code
    called in-process; a pruned trial stops at the step its pruning was decided at, as under coord."""
    import optuna
    import trialkit

    name, _, min_resource = pruner.partition(":")
    exp = resolve(SearchOptions(models=(model,), seed=seed, pruner=name))
    space, info = exp.studies[0].space, exp.studies[0].model
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed, 2, space, 1),
                                pruner=make_pruner(name, int(min_resource) if min_resource else
                                                   info.min_resource if info else None, 3, None, None, "maximize"))
    compute: list[float] = []
    lock = threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        params = {n: _suggest(trial, n, dist) for n, dist in space.distributions().items()} | space.fixed
        adir = root / f"t{trial.number}"
        adir.mkdir(parents=True)
        spec = {"number": trial.number, "attempt": 1, "params": params, "seed": seed + trial.number, "model": model,
                "data": data, "metrics": ["auc"], "attempt_dir": str(adir), "threads": 1, "device": "cpu"}
        state = {"pruned": False, "final": None}

        class Hook:
            def write(self, line: str) -> None:
                if not line.startswith(trialkit.METRIC_PREFIX):
                    return
                values = json.loads(line[len(trialkit.METRIC_PREFIX):])
                if "step" in values and "auc" in values:
                    trial.report(values["auc"], int(values["step"]))
                    if not state["pruned"] and trial.should_prune():
                        state["pruned"] = True
                        (adir / "prune").touch()
                elif "train_seconds" in values:
                    state["final"] = values["auc"]

            def flush(self) -> None:
                return None

        t0 = time.perf_counter()
        trialkit.run_spec(spec, Hook())
        with lock:
            compute.append(time.perf_counter() - t0)
        if state["pruned"]:
            raise optuna.TrialPruned()
        return float(state["final"])

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=2)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {"compute_s": sum(compute), "best": study.best_value, "pruned": pruned,
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    args = sys.argv[1:]
    trials, seeds = int(args[0]) if args else 30, int(args[1]) if len(args) > 1 else 2
    model = args[2] if len(args) > 2 else "xgboost"
    pruners = args[3].split(",") if len(args) > 3 else ["none", "asha", "hyperband"]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = datasets.generate(Path(tmp) / "team_features.csv")
        for seed in range(seeds):
            spec_data = None
            for pruner in pruners:  # interleaved per seed: noise hits every configuration alike
                r = coord(model, pruner, seed, trials, data, Path(tmp) / f"c-{pruner}{seed}")
                spec_data = r.pop("data")
                rows.setdefault(f"coord {pruner}", []).append(r)
            for pruner in pruners if os.environ.get("OPTUNA", "1") != "0" else []:
                rows.setdefault(f"optuna {pruner}", []).append(
                    plain_optuna(model, pruner, seed, trials, spec_data or {}, Path(tmp) / f"o-{pruner}{seed}"))
    base = {k: statistics.median(r["compute_s"] for r in rows[f"{k} none"]) for k in ("coord", "optuna")
            if f"{k} none" in rows}
    print(json.dumps({"model": model, "trials": trials, "seeds": seeds, **{
        name: {"median_compute_s": round(statistics.median(r["compute_s"] for r in rs), 1),
               "compute_vs_none": round(statistics.median(r["compute_s"] for r in rs) / base[name.split()[0]], 3)
               if name.split()[0] in base else None,
               "best_auc": [round(r["best"], 4) for r in rs], "pruned": [r["pruned"] for r in rs],
               "wall_s": [round(r["wall_s"], 1) for r in rs]} for name, rs in rows.items()}}, indent=2))


if __name__ == "__main__":
    main()
