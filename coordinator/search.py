"""The Optuna ask/tell adapter: Optuna decides *what* to try; trials run elsewhere.

A ``Search`` is one Optuna study over one space. The loop asks for parameters, launches
the trial wherever the router says, and tells the result by Optuna trial number, so the
adapter works the same after a coordinator restart.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from coordinator.config.objectives import PRUNERS, SAMPLERS
from coordinator.config.space import Space
from coordinator.errors import ConfigError
from coordinator.store.files import disk_full, writing
from coordinator.store.rundir import JOURNAL, RunStore

if TYPE_CHECKING:
    import optuna

def sampler_seed(seed: int | None, name: str, asked_before: int) -> int | None:
    """The sampler's seed for a search that already asked ``asked_before`` trials.

    A sampler restarted with its original seed replays its first draws: after a resume,
    TPE's random start-up trials would propose again what the run already tried. So a
    resumed search seeds by how far it got (deterministically: the same interruptions give
    the same run). QMC and grid keep theirs: they index their sequence by the trials in the
    storage, and a new seed would scramble the sequence half-way."""
    if seed is None or asked_before == 0 or name in ("qmc", "grid"):
        return seed
    return (seed * 1_000_003 + asked_before * 7919) % 2**32


def count_trials(storage: Any, study: str) -> int:
    """Trials a study already holds in the storage (0 if there is no such study yet)."""
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


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


def make_pruner(name: str, min_resource: int | None, reduction_factor: int, max_resource: int | None,
                threshold: float | None, direction: str) -> Any:
    """An Optuna pruner by name. Resources are the runner's steps (boosting rounds, epochs)."""
    import optuna

    p = optuna.pruners
    if name == "none":
        return p.NopPruner()
    if name == "median":
        return p.MedianPruner(n_startup_trials=5, n_warmup_steps=min_resource or 0)
    if name == "percentile":
        return p.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=min_resource or 0)
    if name == "asha":
        return p.SuccessiveHalvingPruner(min_resource=min_resource or "auto", reduction_factor=reduction_factor)
    if name == "hyperband":
        return p.HyperbandPruner(min_resource=min_resource or 1, max_resource=max_resource or "auto",
                                 reduction_factor=reduction_factor)
    if name == "threshold":
        if threshold is None:
            raise ConfigError("the threshold pruner needs --prune-threshold VALUE", key="--prune-threshold")
        return p.ThresholdPruner(lower=threshold) if direction == "maximize" else p.ThresholdPruner(upper=threshold)
    if name == "patient":
        return p.PatientPruner(p.MedianPruner(n_startup_trials=5), patience=2)
    raise ConfigError(f"unknown pruner {name!r}", key="--pruner", valid=PRUNERS)


@dataclass(frozen=True)
class Decisions:
    """Where a pruner decides, so a built-in runner can wait briefly there for the answer and
    a pruned trial stops at the step the decision was made at (as in plain Optuna), not one
    report later. ASHA and Hyperband decide at their rungs (min_resource x factor^k: every
    Hyperband bracket's rungs are among them); the other pruners at every report from
    ``every_from`` on."""

    rungs: tuple[int, ...] = ()
    every_from: int | None = None

    def due(self, previous: int | None, step: int) -> bool:
        """True when the report at ``step`` (the one before was at ``previous``) is a decision."""
        if self.every_from is not None:
            return step >= self.every_from
        return any((previous is None or previous < r) and r <= step for r in self.rungs)

    def to_json(self) -> dict[str, Any]:
        return {"rungs": list(self.rungs), "every_from": self.every_from}


def decisions(pruner: str, min_resource: int | None, reduction_factor: int, limit: int = 10**6) -> Decisions:
    if pruner in ("asha", "hyperband"):
        if not min_resource:
            return Decisions()  # "auto": the rungs are only known once trials have run
        out, step = [], min_resource
        while step <= limit:
            out.append(step)
            step *= reduction_factor
        return Decisions(tuple(out))
    if pruner in ("median", "percentile"):
        return Decisions(every_from=min_resource or 0)
    if pruner in ("threshold", "patient"):
        return Decisions(every_from=0)
    return Decisions()


def open_storage(run_dir: Path, url: str | None, store: RunStore | None = None) -> Any:
    """The embedded default is Optuna's journal file: one append-only file, safe for
    several processes, ~6x cheaper per trial than SQLite. A database URL also works (and
    is left to the database: nothing here repairs it). ``store``: the run this process
    drives (holding its lock), whose journal is repaired first and fails whole on a full
    disk; without it (reading a finished run), Optuna's plain journal."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url:
        return open_database(url)
    path = run_dir / JOURNAL
    if store is None:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    store.repair_journal()
    with writing(path, store.root):
        return optuna.storages.JournalStorage(_journal_backend(path, store.root))


SCHEMA_TRIES = 5  # a database whose tables another coordinator is creating right now
STORAGE_VALID = ("sqlite:///path/to/file.db", "postgresql://user@host/db", "mysql://user@host/db")


def open_database(url: str) -> Any:
    """Optuna's storage in the database at ``url``, or ``ConfigError`` on ``--storage`` if it
    cannot be used (not a URL, no driver, not reachable): raised before a run directory is
    made, so a bad URL leaves nothing for ``coord status`` or ``resume`` to find."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()  # the driver, which the URL names or implies
    except sqlalchemy.exc.ArgumentError:  # also an unknown scheme (NoSuchModuleError)
        raise ConfigError(f"{url!r} is not a database URL (leave --storage out for the run's own journal "
                          "file, study.journal)", key="--storage",
                          valid=STORAGE_VALID) from None
    except ImportError as exc:
        raise ConfigError(f"cannot use {parsed.render_as_string(hide_password=True)}: its driver "
                          f"{parsed.get_driver_name()} is not installed ({exc})", key="--storage") from None
    for attempt in range(SCHEMA_TRIES):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # coordinators on several machines starting at once on an empty database race to
            # create Optuna's tables (PostgreSQL: a duplicate key in pg_type); the loser
            # finds them made a moment later
            if attempt + 1 == SCHEMA_TRIES:
                why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise ConfigError(f"cannot use {parsed.render_as_string(hide_password=True)}: {why}",
                                  key="--storage") from None
            time.sleep(0.2 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ConfigError(f"cannot use {parsed.render_as_string(hide_password=True)}: {why}",
                              key="--storage") from None
    raise AssertionError("unreachable")


def _journal_backend(path: Path, run: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend

    class RunJournal(JournalFileBackend):
        """Optuna's journal file, whose append fails whole: a full disk mid-append cuts the
        file back to where the append began (the run's lock guarantees no other writer) and
        raises ``DiskFull`` naming the journal, so a torn record never reaches the next append."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            size = path.stat().st_size
            try:
                super().append_logs(logs)
            except OSError as exc:
                with contextlib.suppress(OSError):  # truncating frees space: it does not fail for want of it
                    os.truncate(path, size)
                full = disk_full(exc, path, run)
                if full is None:
                    raise
                raise full from None

    return RunJournal(str(path))


@dataclass
class Search:
    """One study: ``ask() -> (optuna number, params)``, ``tell(number, values|None)``."""

    name: str
    study: optuna.Study
    space: Space
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    n_trials: int

    prunes: bool = False
    storage: Any = None  # the study's optuna BaseStorage (public methods only)
    trials: dict[int, Any] = field(default_factory=dict)  # optuna number -> the asked Trial
    reported: dict[int, set[int]] = field(default_factory=dict)  # optuna number -> steps reported

    @classmethod
    def create(cls, *, name: str, storage: Any, sampler: Any, space: Space, metrics: tuple[str, ...],
               directions: tuple[str, ...], n_trials: int, pruner: Any = None) -> Search:
        import optuna

        backend = optuna.storages.get_storage(storage)  # a URL or a storage object: one object either way
        study = optuna.create_study(storage=backend, sampler=sampler, pruner=pruner, study_name=name,
                                    directions=cast(Any, list(directions)), load_if_exists=True)
        prunes = pruner is not None and not isinstance(pruner, optuna.pruners.NopPruner) and len(metrics) == 1
        return cls(name, study, space, metrics, directions, n_trials, prunes, backend)

    def ask(self) -> tuple[int, dict[str, Any]]:
        trial = self.study.ask(self.space.distributions())
        self.trials[trial.number] = trial
        return trial.number, {**trial.params, **self.space.fixed}

    def adopt(self, number: int) -> None:
        """Take back a trial asked before a restart, so its reports reach the pruner again."""
        import optuna

        study_id = self.storage.get_study_id_from_name(self.name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.trials[number] = optuna.trial.Trial(self.study, trial_id)
        self.reported[number] = set(self.storage.get_trial(trial_id).intermediate_values)

    def unfinished(self) -> list[int]:
        """Optuna numbers of the trials that were asked and never told."""
        from optuna.trial import TrialState

        return [t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                                                TrialState.WAITING))]

    def report(self, number: int, step: int, value: float) -> bool:
        """Record an intermediate value; True when the pruner says stop this trial. A step
        reported before a restart (its output is replayed on re-attach) is not reported again."""
        trial = self.trials.get(number)
        if not self.prunes or trial is None:
            return False
        seen = self.reported.setdefault(number, set())
        if step not in seen:
            seen.add(step)
            trial.report(value, step)
        return bool(trial.should_prune())

    def tell(self, number: int, values: list[float] | None, pruned: bool = False) -> None:
        """Complete with values, prune, or fail (values None). Telling twice is a no-op."""
        from optuna.trial import TrialState

        self.trials.pop(number, None)
        self.reported.pop(number, None)
        if pruned:
            self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        elif values is None:
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(number, values if len(values) > 1 else values[0], skip_if_finished=True)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.directions[0] == "maximize" else a < b
