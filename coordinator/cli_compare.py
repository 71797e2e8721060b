"""The options of ``coord compare`` and its help layout (the command itself is in cli.py,
which prints its summary like a search's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from coordinator.config.compare import CALIBRATIONS

COMPARE_SECTIONS = [
    ("What to compare", ["models", "runs_from", "top", "params", "calibrations", "seeds", "seed", "odds_col"]),
    ("Data", ["data", "target", "positive_class", "cv", "time_col", "folds"]),
    ("Significance", ["resamples", "bootstrap_seed"]),
    ("Where it runs", ["registry", "parallel", "split_folds", "max_retries", "trial_timeout"]),
    ("Output", ["runs_root", "run_dir", "name", "quiet", "as_json"]),
]
COMPARE_EXAMPLES = [
    "coord compare --model glm --model xgboost --seeds 3",
    "coord compare --from runs/xgboost-20250101-120000 --model xgboost --model glm --top 2",
    "coord compare --model glm --data games.csv --target home_win --time-col season --odds-col odds_home",
]


def compare_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Every option of ``coord compare``, in the order --help shows them within a section."""
    options = [
        click.option("--model", "models", multiple=True,
                     help="Built-in model to compare: glm, xgboost, random_forest, mlp (repeat). Default with "
                     "--from: every model the searches ran."),
        click.option("--from", "runs_from", multiple=True, metavar="RUN",
                     help="A search's run directory (or its name under --runs): each model's configuration is "
                     "its best trial there (repeat to pool searches). Default: the models' own defaults."),
        click.option("--top", type=click.IntRange(min=1), metavar="K",
                     help="Compare each model's best K configurations of the --from searches "
                     "(named MODEL, MODEL-top2, ...)."),
        click.option("--param", "params", multiple=True, metavar="MODEL.NAME=VALUE",
                     help="Set a parameter in every configuration of MODEL, e.g. random_forest.n_estimators=100 "
                     "(repeat)."),
        click.option("--calibration", "calibrations", multiple=True, default=CALIBRATIONS, show_default=True,
                     metavar="NAME", help="none, platt or isotonic (repeat); fitted on each training window's "
                     "last season, never on the test season."),
        click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Seeds per configuration: the tables show mean ± std over them."),
        click.option("--seed", type=int, default=0, show_default=True, help="The first seed (then +1, +2, ...)."),
        click.option("--odds-col", metavar="COL", help="Decimal odds of the positive class: adds ROI. Never a "
                     "feature."),
        click.option("--data", type=click.Path(), help="CSV file (default: the built-in team-features data)."),
        click.option("--target", help="Column to predict."),
        click.option("--positive-class", help="The target's class that counts as positive."),
        click.option("--cv", type=click.Choice(["holdout", "kfold", "walk-forward"]),
                     help="Validation (default: walk-forward with --time-col, else holdout)."),
        click.option("--time-col", help="Season column: each of the last --folds seasons is a test season."),
        click.option("--folds", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Walk-forward test seasons (or k-fold folds)."),
        click.option("--resamples", type=click.IntRange(min=1), default=2000, show_default=True,
                     help="Paired season-block bootstrap resamples."),
        click.option("--bootstrap-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap."),
        click.option("--registry", envvar="COORD_REGISTRY", type=click.Path(),
                     help="Hardware registry YAML [env COORD_REGISTRY] (default: this machine)."),
        click.option("--parallel", type=click.IntRange(min=1), envvar="COORD_PARALLEL",
                     help="Jobs at once (default: every slot)."),
        click.option("--split-folds", is_flag=True, help="One job per fold instead of per configuration x seed "
                     "(more jobs to spread over hosts; the same predictions)."),
        click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True,
                     help="Retries of a failed job (elsewhere when another host can run it)."),
        click.option("--trial-timeout", type=click.FloatRange(min=0), help="Kill a job after SECONDS."),
        click.option("-o", "--runs", "runs_root", default="runs", show_default=True, envvar="COORD_RUNS_DIR",
                     help="Where run directories go [env COORD_RUNS_DIR]."),
        click.option("--run-dir", type=click.Path(), help="Exact run directory (default: RUNS/<name>-<time>)."),
        click.option("--name", help="Run name (default: compare)."),
        click.option("--quiet", is_flag=True, help="Only the final summary."),
        click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
