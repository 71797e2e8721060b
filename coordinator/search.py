"""The Optuna ask/tell adapter: Optuna decides *what* to try; trials run elsewhere.

A ``Search`` is one Optuna study over one space. The loop asks for parameters, launches
the trial wherever the router says, and tells the result by Optuna trial number, so the
adapter works the same after a coordinator restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from coordinator.errors import ConfigError
from coordinator.space import Space

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2")
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


def make_sampler(name: str, seed: int | None, parallel: int, space: Space, n_objectives: int) -> Any:
    import optuna

    s = optuna.samplers
    if name == "tpe":
        # constant_liar keeps parallel workers from all sampling the same promising point
        return s.TPESampler(seed=seed, constant_liar=parallel > 1, multivariate=True)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "grid":
        return _AskTellGrid(space.grid(), seed=seed)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed)
    if name == "gp":
        return s.GPSampler(seed=seed)
    if name == "qmc":
        return s.QMCSampler(seed=seed, scramble=True)
    if name == "nsga2":
        return s.NSGAIISampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}", key="--sampler", valid=SAMPLERS)


def _ask_tell_grid_class() -> Any:
    import optuna

    class AskTellGrid(optuna.samplers.GridSampler):
        """GridSampler calls ``study.stop()`` once the grid is exhausted, which raises
        outside ``study.optimize``; in ask/tell the loop caps trials at the grid size."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGrid


def _AskTellGrid(grid: dict[str, list[Any]], seed: int | None) -> Any:  # noqa: N802
    return _ask_tell_grid_class()(grid, seed=seed)


def open_storage(run_dir: Path, url: str | None) -> Any:
    """The embedded default is Optuna's journal file: one append-only file, safe for
    several processes, ~6x cheaper per trial than SQLite. A database URL also works."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url:
        return optuna.storages.RDBStorage(url)
    return optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))


@dataclass
class Search:
    """One study: ``ask() -> (optuna number, params)``, ``tell(number, values|None)``."""

    name: str
    study: optuna.Study
    space: Space
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    n_trials: int

    @classmethod
    def create(cls, *, name: str, storage: Any, sampler: Any, space: Space, metrics: tuple[str, ...],
               directions: tuple[str, ...], n_trials: int) -> Search:
        import optuna

        study = optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                                    directions=cast(Any, list(directions)), load_if_exists=True)
        return cls(name, study, space, metrics, directions, n_trials)

    def ask(self) -> tuple[int, dict[str, Any]]:
        trial = self.study.ask(self.space.distributions())
        return trial.number, {**trial.params, **self.space.fixed}

    def tell(self, number: int, values: list[float] | None) -> None:
        """Complete with values, or fail (values None). Telling twice is a no-op."""
        from optuna.trial import TrialState

        if values is None:
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(number, values if len(values) > 1 else values[0], skip_if_finished=True)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.directions[0] == "maximize" else a < b
