"""Hardware-aware placement on a simulated heterogeneous pool (fake backend, virtual clock):
makespan with learned speeds (expected-finish routing + sufferage) against the static
model-type rules with fallback (the user's TaskDispatcher), same trials, same pool.

Pool: laptop 4 CPU slots, GPU box 2 slots. True durations: XGBoost 10 s on the GPU box,
60 s on the laptop; random forest 30 s on the laptop, 25 s on the GPU box; +-10% noise.
Rules: XGBoost -> GPU box then laptop; random forest -> laptop then GPU box.
Usage: python benchmarks/sim_placement.py [TRIALS_PER_MODEL] [SEEDS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from tests.test_loop_virtual import TRUE_S, _pool, _run, pool_script  # noqa: E402


def lower_bound(n: int) -> float:
    """Best split of random-forest trials between the two hosts, XGBoost all on the GPU."""
    best = float("inf")
    for x in range(n + 1):  # x random-forest trials on the GPU box
        gpu = (n * TRUE_S[("XGBoost", "gpu")] + x * TRUE_S[("RandomForest", "gpu")]) / 2
        laptop = (n - x) * TRUE_S[("RandomForest", "laptop")] / 4
        best = min(best, max(gpu, laptop))
    return best


def main() -> None:
    n, seeds = (int(a) for a in (sys.argv[1:3] + ["40", "5"][len(sys.argv[1:3]):]))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = []
    for salt in range(seeds):
        script = partial(pool_script, salt=salt)
        with tempfile.TemporaryDirectory() as tmp:
            plans = [("xgb", "XGBoost", n), ("rf", "RandomForest", n)]
            *_, static_clock = _run(Path(tmp) / "s", script, _pool(), plans, 6)
            *_, learned_clock = _run(Path(tmp) / "l", script, _pool(), plans, 6, speed=True)
        rows.append({"seed": salt, "static_s": round(static_clock(), 1), "learned_s": round(learned_clock(), 1),
                     "ratio": round(learned_clock() / static_clock(), 3)})
    print(json.dumps({"trials_per_model": n, "runs": rows, "median_ratio": statistics.median(r["ratio"] for r in rows),
                      "lower_bound_s": lower_bound(n)}, indent=2))


if __name__ == "__main__":
    main()
