"""What a search can optimise and with what: the sampler and pruner names, and the
direction of a metric told from its name. Plain data and rules, so that validating the
options never imports Optuna."""

from __future__ import annotations

from coordinator.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2")
PRUNERS = ("none", "median", "percentile", "asha", "hyperband", "threshold", "patient")
MAXIMIZE_HINTS = ("auc", "acc", "accuracy", "r2", "f1", "precision", "recall", "score", "roi", "ndcg", "map")
MINIMIZE_HINTS = ("loss", "error", "err", "rmse", "mse", "mae", "brier", "time", "seconds", "perplexity",
                  "cost", "mape")


def infer_direction(metric: str) -> str:
    """'maximize' or 'minimize' from the metric's name; ConfigError if it says neither."""
    name = metric.lower()
    for hint in MINIMIZE_HINTS:
        if hint in name:
            return "minimize"
    for hint in MAXIMIZE_HINTS:
        if hint in name:
            return "maximize"
    raise ConfigError(f"cannot tell whether {metric!r} should be maximised or minimised; "
                      "give --direction", key="--metric", valid=("maximize", "minimize"))
