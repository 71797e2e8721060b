"""Experiment configuration: everything a search needs, resolved and validated once,
before a run directory exists, so bad input never leaves half-written state behind.

Precedence: CLI flag > ``COORD_*`` environment (handled by click) > files > defaults.
"""

from __future__ import annotations

import csv
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator import resources
from coordinator.config import datasets
from coordinator.config.compare import CompareSpec
from coordinator.config.localhost import default_registry
from coordinator.config.models import CUSTOM_MODEL_TYPE, ModelInfo, get_model, needs_of
from coordinator.config.objectives import PRUNERS, SAMPLERS, infer_direction
from coordinator.config.registry import RUNNABLE_CONNECTIONS, Registry, load_registry
from coordinator.config.space import Space, check_space_matches, load_space
from coordinator.errors import ConfigError, DataError, RoutingError
from coordinator.records import Needs

CV_CHOICES = ("holdout", "kfold", "walk-forward")
TASKS = ("auto", "classification", "regression")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchOptions:
    """The user's request, as given (CLI flags and environment)."""

    models: tuple[str, ...] = ()
    command: str | None = None
    model_type: str | None = None
    space: str | None = None
    registry: str | None = None
    trials: int | None = None
    timeout: float | None = None
    budget_cost: float | None = None  # stop starting trials once this much is spent (registry prices)
    budget_machine_hours: float | None = None
    budget_gpu_hours: float | None = None
    goal: float | None = None  # stop once a trial's first objective reaches this
    hard: bool = False  # a budget or goal also stops the running trials (for coord resume)
    priority: int = 0  # on hosts shared with other searches: a higher priority takes freed slots first
    preempt: bool = False  # and stops lower-priority trials for them (checkpoint, requeue)
    notify: str | None = None  # a command told (JSON on stdin) of the search's end, failures, hosts down, budgets
    seed: int = 0
    sampler: str = "tpe"
    metrics: tuple[str, ...] = ()
    direction: str | None = None
    parallel: int | None = None
    data: str | None = None
    target: str | None = None
    positive_class: str | None = None  # a binary target's class that counts as 1 (default: datasets.positive_class)
    task: str = "auto"
    cv: str | None = None
    time_col: str | None = None
    folds: int = 3
    run_dir: str | None = None
    runs_root: str = "runs"
    name: str | None = None
    storage: str | None = None
    max_retries: int = 3
    trial_timeout: float | None = None
    host_retry: float = 30.0  # seconds before a host that went down is tried again
    pruner: str = "none"
    min_resource: int | None = None
    max_resource: int | None = None
    reduction_factor: int = 3
    prune_threshold: float | None = None
    placement: str = "learned"  # learned: where a trial should finish first; static: rule order
    checkpoint_every: float = 30.0  # seconds between a built-in trial's checkpoints
    pbt: bool = False  # population-based training: the trials are the population
    pbt_interval: int | None = None  # steps per PBT segment (default: twice the model's first rung)
    figure_width: float | None = None  # the report's search plots, inches (default: reporting.plots.FIGURE_WIDTH)
    caption_prefix: str = ""  # the report's LaTeX captions start with it (e.g. "Chapter 4: ")
    label_prefix: str = ""  # and its \label{}s (e.g. "ch4:")


def _check_pbt(o: SearchOptions, studies: list[StudyConfig], metrics: tuple[str, ...], trials: int) -> None:
    iterative = [s.model.name for s in studies if s.model is not None and s.model.name in ("xgboost", "mlp")]
    if o.command or len(iterative) != len(studies):
        raise ConfigError("population-based training needs built-in models that train in steps", key="--pbt",
                          valid=("xgboost", "mlp"))
    if len(metrics) > 1 or o.pruner != "none":
        raise ConfigError("population-based training takes one metric and no pruner", key="--pbt")
    if trials < 4:
        raise ConfigError(f"a population of {trials} is too small (the trials are the population)",
                          key="--trials", valid=("4 or more",))


@dataclass(frozen=True)
class StudyConfig:
    name: str
    model: ModelInfo | None
    space: Space
    needs: Needs
    seed: int | None = None  # a comparison job's seed (coord compare); None: derived per trial
    compare: dict[str, Any] | None = None  # a comparison job's ``compare`` object (runners/compare_job.py)


@dataclass(frozen=True)
class Experiment:
    options: SearchOptions
    registry: Registry
    studies: tuple[StudyConfig, ...]
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    command: tuple[str, ...] | None
    data: dict[str, Any] | None  # None: the built-in data set, generated into the run dir
    parallel: int
    trials: int
    name: str
    compare: CompareSpec | None = None  # coord compare: the jobs' configurations, seeds and calibrations

    def snapshot(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = {"options": asdict(self.options), "registry": self.registry.to_json(),
               "studies": [{"name": s.name, "model": s.model.name if s.model else None,
                            "model_type": s.needs.model_type, "space": s.space.to_json()} for s in self.studies],
               "metrics": list(self.metrics), "directions": list(self.directions),
               "command": list(self.command) if self.command else None, "data": self.data,
               "parallel": self.parallel, "trials": self.trials, "name": self.name}
        if self.compare is not None:
            out["compare"] = self.compare.to_json()
        return out


FIGURE_WIDTHS = (2.0, 12.0)  # inches: from a narrow column to a landscape page


def check_figure_width(width: float | None) -> None:
    if width is not None and not FIGURE_WIDTHS[0] <= width <= FIGURE_WIDTHS[1]:
        raise ConfigError(f"{width:g} inches is not a figure width: give {FIGURE_WIDTHS[0]:g} to "
                          f"{FIGURE_WIDTHS[1]:g} inches", key="--figure-width")


def resolve(o: SearchOptions) -> Experiment:
    """Validate every input and return the experiment, or raise a ConfigError subclass."""
    if o.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {o.pruner!r}", key="--pruner", valid=PRUNERS)
    check_figure_width(o.figure_width)
    if o.pruner == "threshold" and o.prune_threshold is None:
        raise ConfigError("the threshold pruner needs --prune-threshold VALUE", key="--prune-threshold")
    if o.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {o.sampler!r}", key="--sampler", valid=SAMPLERS)
    if o.command and o.models:
        raise ConfigError("give either --model or --command, not both", key="--command")
    if o.command and o.positive_class is not None:
        raise ConfigError("a --command script reads its own data; --positive-class is for the built-in models",
                          key="--positive-class")
    if o.direction not in (None, "maximize", "minimize"):
        raise ConfigError(f"unknown direction {o.direction!r}", key="--direction", valid=("maximize", "minimize"))
    registry = load_registry(o.registry) if o.registry else default_registry()
    _check_budget(o, registry)
    if o.notify is not None:
        parse_notify(o.notify)
    for model_type, message in registry.warnings:  # silent for the rule this --command search routes by
        if not (o.command and (o.model_type or CUSTOM_MODEL_TYPE).lower() == model_type.lower()):
            log.warning("%s", message)
    if any(p.connection == "ssh" for p in registry.platforms.values()):  # only then is paramiko imported
        from coordinator.config.knownhosts import check_known_hosts, known_hosts_path

        check_known_hosts(known_hosts_path(registry))  # a malformed line: one error now, not a crash later
    command: tuple[str, ...] | None = None
    if o.command:
        try:
            command = tuple(shlex.split(o.command))
        except ValueError as exc:
            raise ConfigError(f"cannot split the command: {exc}", key="--command") from None
        if not command:
            raise ConfigError("the command is empty", key="--command")
        if not o.space:
            raise ConfigError("a --command search needs --space FILE", key="--space")
        if not o.metrics:
            raise ConfigError("a --command search needs --metric NAME (what the script prints)", key="--metric")
        space = load_space(o.space)
        if space.procs > 1:
            raise space.fail(("procs",), "a --command search's trial is your own program: coord starts it once "
                             "(procs: 1); several processes are for the built-in mlp model", valid=("1",))
        studies = [StudyConfig("custom", None, space, Needs(o.model_type or CUSTOM_MODEL_TYPE))]
    else:
        studies = [_builtin_study(get_model(m), o) for m in (o.models or ("xgboost",))]
        if len({s.name for s in studies}) != len(studies):
            raise ConfigError("a model is named twice", key="--model")
    data = _data_spec(o) if command is None else None
    task = (data or {}).get("task", "classification") if data else "classification"
    metrics = o.metrics or (("auc",) if task != "regression" else ("rmse",))
    if command is None:
        valid = {"auc", "logloss", "brier", "rmse", "mae", "r2", "train_seconds"}
        for m in metrics:
            if m not in valid:
                raise ConfigError(f"built-in runners do not report {m!r}", key="--metric", valid=valid)
    if o.direction and len(metrics) > 1:
        raise ConfigError("--direction applies to one metric; with several, each is inferred from its name",
                          key="--direction")
    directions = tuple(o.direction or infer_direction(m) for m in metrics)
    natural = _natural_direction(metrics[0])
    if o.direction and natural not in (None, o.direction):  # allowed (a metric may be misnamed), but said
        log.warning("--direction %s for %s, which its name says to %s: the search looks for the worst %s",
                    o.direction, metrics[0], natural, metrics[0])
    if len(metrics) > 1 and o.sampler not in ("nsga2", "random", "grid", "qmc", "tpe", "gp"):
        raise ConfigError(f"sampler {o.sampler!r} is single-objective; use nsga2 for several metrics",
                          key="--sampler", valid=("nsga2", "tpe", "random", "grid", "qmc", "gp"))
    for s in studies:  # fail fast: a trial that can never be placed
        reasons = registry.infeasible(s.needs, RUNNABLE_CONNECTIONS)
        if reasons is not None:
            raise RoutingError(s.needs.model_type, reasons)
    slots = sum(p.max_concurrent_jobs for p in registry.platforms.values() if p.connection in RUNNABLE_CONNECTIONS)
    parallel = o.parallel or slots
    if parallel < 1:
        raise ConfigError("must be at least 1", key="--parallel")
    trials = o.trials or 0
    if o.sampler == "grid":
        grid_size = min(_grid_size(s.space) for s in studies)
        trials = min(trials, grid_size) if trials else grid_size
    if trials <= 0:
        trials = 30
    if o.pbt:
        _check_pbt(o, studies, metrics, trials)
    name = o.name or (studies[0].name if len(studies) == 1 else "compare")
    return Experiment(o, registry, tuple(studies), tuple(metrics), directions, command, data, parallel, trials, name)


def _natural_direction(metric: str) -> str | None:
    """The direction a metric's name says, or None when it says neither."""
    try:
        return infer_direction(metric)
    except ConfigError:
        return None


def _grid_size(space: Space) -> int:
    size = 1
    for values in space.grid().values():
        size *= len(values)
    return size


def _builtin_study(model: ModelInfo, o: SearchOptions) -> StudyConfig:
    path = o.space or str(resources.folder("registry") / "spaces" / f"{model.name}.yaml")
    space = load_space(path)
    check_space_matches(space, model.params, model.name, model.distributed)
    return StudyConfig(model.name, model, space, needs_of(model, space.procs, space.gpus_per_proc))


def _data_spec(o: SearchOptions) -> dict[str, Any]:
    if o.task not in TASKS:
        raise ConfigError(f"unknown task {o.task!r}", key="--task", valid=TASKS)
    if o.folds < 2 and o.cv == "kfold":
        raise ConfigError("k-fold needs at least 2 folds", key="--folds")
    if o.folds < 1:
        raise ConfigError("must be at least 1", key="--folds")
    if o.data is None:
        if o.target and o.target != datasets.BUILTIN_TARGET:
            raise DataError(f"the built-in data set has no column {o.target!r}", key="--target",
                            valid=(datasets.BUILTIN_TARGET,))
        cv = o.cv or "walk-forward"
        _check_cv(cv)
        # generated with both classes in every season: no fold check needed
        positive = datasets.positive_class(list(datasets.BUILTIN_CLASSES), o.positive_class, datasets.BUILTIN_TARGET)
        return {"builtin": datasets.BUILTIN_NAME, "target": datasets.BUILTIN_TARGET, "task": "classification",
                "cv": cv, "time_col": o.time_col or datasets.BUILTIN_TIME_COL, "folds": o.folds,
                "split_seed": o.seed, "positive_class": positive, "classes": list(datasets.BUILTIN_CLASSES)}
    path = Path(o.data).expanduser().resolve()
    if not path.is_file():
        raise DataError("data file not found", file=o.data)
    _check_utf8(path, o.data)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the CSV header: {exc}", file=o.data) from None
    if not header:
        raise DataError("the CSV file is empty", file=o.data)
    if not o.target:
        raise DataError("name the column to predict with --target", file=o.data, key="--target", valid=header)
    for flag, col in (("--target", o.target), ("--time-col", o.time_col)):
        if col is not None and col not in header:
            raise DataError(f"no column {col!r}", file=o.data, key=flag, valid=header)
    cv = o.cv or ("walk-forward" if o.time_col else "holdout")
    _check_cv(cv)
    if cv == "walk-forward" and not o.time_col:
        raise ConfigError("walk-forward validation needs --time-col COLUMN", key="--time-col", valid=header)
    try:
        task = _infer_task(path, header.index(o.target), o.task, o.data, o.target)
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit, a stray NUL
        raise DataError(f"cannot parse the CSV file: {exc}", file=o.data) from None
    spec = {"path": str(path), "sha256": datasets.sha256(path), "target": o.target, "task": task, "cv": cv,
            "time_col": o.time_col, "folds": o.folds, "split_seed": o.seed}
    return datasets.check_csv(spec, o.positive_class, o.data)  # the trials' own folds, checked before the run


def _check_utf8(path: Path, file: str) -> None:
    """The runners read the CSV as UTF-8: refuse any other bytes now, naming the line, not
    with a traceback here or a failure in every trial. Streamed, whole lines at a time."""
    lineno, carry = 1, b""
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                block = carry + chunk
                cut = len(block) if not chunk else block.rfind(b"\n") + 1  # UTF-8 never splits at a newline
                block, carry = block[:cut], block[cut:]
                try:
                    block.decode("utf-8")
                except UnicodeDecodeError as exc:
                    start = block.rfind(b"\n", 0, exc.start) + 1
                    raise DataError(f"not UTF-8 text (byte 0x{block[exc.start]:02x} at byte "
                                    f"{exc.start - start + 1} of the line); save the CSV as UTF-8", file=file,
                                    line=lineno + block.count(b"\n", 0, exc.start)) from None
                lineno += block.count(b"\n")
                if not chunk:
                    return
    except OSError as exc:
        raise DataError(f"cannot read the data file: {exc.strerror or exc}", file=file) from None


def _infer_task(path: Path, column: int, task: str, file: str, target: str) -> str:
    """Binary or non-numeric target: classification; otherwise regression. A target with
    more than two classes is refused here, before a run exists (the runners are binary)."""
    values: set[str] = set()
    numeric = True
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if column < len(row) and row[column] != "":
                values.add(row[column])
                if numeric:
                    try:
                        float(row[column])
                    except ValueError:
                        numeric = False
            if len(values) > 2 and (numeric and task == "auto"):
                return "regression"
            if len(values) > 2 and (task == "classification" or not numeric):
                raise DataError(f"target {target!r} has more than two classes ({', '.join(sorted(values)[:5])}, "
                                "...); classification here is binary: recode it or use --task regression",
                                file=file, key="--target")
    if task == "regression" and not numeric:
        raise DataError(f"target {target!r} is not numeric", file=file, key="--task", valid=("classification",))
    return task if task != "auto" else "classification"


def _check_cv(cv: str) -> None:
    if cv not in CV_CHOICES:
        raise ConfigError(f"unknown validation scheme {cv!r}", key="--cv", valid=CV_CHOICES)


def _check_budget(o: SearchOptions, registry: Registry) -> None:
    """A cost budget needs a price to count against; --hard needs something to stop on."""
    if o.budget_cost is not None and not any(
            p.cost_per_hour is not None or p.gpu_cost_per_hour is not None or p.watts is not None
            for p in registry.platforms.values()):
        raise ConfigError(f"no platform of the registry ({registry.source}) has a price; give "
                          "cost_per_hour, gpu_cost_per_hour or watts with tariff_per_kwh (docs/usage.md, "
                          "'Usage and cost'), or budget in --budget-machine-hours", key="--budget-cost")
    if o.hard and all(v is None for v in (o.budget_cost, o.budget_machine_hours, o.budget_gpu_hours, o.goal)):
        raise ConfigError("it stops running trials when a budget or goal is reached; give one "
                          "(--budget-cost, --budget-machine-hours, --budget-gpu-hours or --goal)", key="--hard")


def parse_notify(command: str) -> list[str]:
    """--notify's command as argv (split as a shell would, run without one)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"cannot split the command: {exc}", key="--notify") from None
    if not argv:
        raise ConfigError("an empty command", key="--notify")
    return argv
