"""What ``coord compare`` compares, resolved before a run directory exists: each model's
configurations (a search's best trials, or the model's defaults), the seeds, the
calibrations, and the jobs they make: one per configuration x seed (x fold with
``--split-folds``), each a one-trial study the coordinator's loop runs like any trial.

The resolved ``CompareSpec`` is written into run.json, so ``coord resume`` runs exactly
the same jobs even when the searches the configurations came from are gone.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.errors import ConfigError, DataError

CALIBRATIONS = ("none", "platt", "isotonic")  # runners/calibrate.py's methods


@dataclass(frozen=True)
class CompareRequest:
    """``coord compare`` as the user gave it (the data and run options mean what they mean
    for ``coord search``)."""

    models: tuple[str, ...] = ()
    runs_from: tuple[str, ...] = ()  # --from: searches whose best trials give the configurations
    top: int | None = None  # the best K configurations of each model in those searches
    params: tuple[str, ...] = ()  # --param MODEL.NAME=VALUE: set in every configuration of MODEL
    calibrations: tuple[str, ...] = CALIBRATIONS
    seeds: int = 1
    seed: int = 0  # the first seed; jobs use seed, seed + 1, ...
    odds_col: str | None = None
    split_folds: bool = False  # one job per fold (more parallel work, joined again by the analysis)
    resamples: int = 2000
    bootstrap_seed: int = 0
    data: str | None = None
    target: str | None = None
    positive_class: str | None = None
    time_col: str | None = None
    cv: str | None = None
    folds: int = 3
    registry: str | None = None
    runs_root: str = "runs"
    run_dir: str | None = None
    name: str | None = None
    parallel: int | None = None
    max_retries: int = 3
    trial_timeout: float | None = None


@dataclass(frozen=True)
class CompareConfig:
    """One entry of the comparison: a model with one configuration."""

    name: str  # the entry's name in every output: the model, or <model>-top<k>
    model: str
    params: dict[str, Any]
    source: str  # where the configuration came from, in words

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "params": self.params, "source": self.source}


@dataclass(frozen=True)
class Job:
    """One comparison job: a configuration, a seed and (split by fold) one fold."""

    study: str
    config: CompareConfig
    seed: int
    fold: int | None
    compare: dict[str, Any]  # the job's ``compare`` object, as runners/compare_job.py reads it


@dataclass(frozen=True)
class CompareSpec:
    configs: tuple[CompareConfig, ...]
    calibrations: tuple[str, ...]
    seeds: tuple[int, ...]
    odds_col: str | None = None
    folds: tuple[int, ...] | None = None  # split by fold: these folds, one job each
    resamples: int = 2000
    bootstrap_seed: int = 0
    notes: tuple[str, ...] = field(default=())  # what the user should know about the configurations

    def jobs(self) -> list[Job]:
        """Every job, seed by seed (an interrupted comparison has whole seeds first)."""
        out = []
        for seed in self.seeds:
            for config in self.configs:
                for fold in self.folds or (None,):
                    study = f"{config.name}-seed{seed}" + (f"-fold{fold}" if fold is not None else "")
                    job: dict[str, Any] = {"calibration": list(self.calibrations), "name": config.name}
                    if self.odds_col:
                        job["odds_col"] = self.odds_col
                    if fold is not None:
                        job["folds"] = [fold]
                    out.append(Job(study, config, seed, fold, job))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"configs": [c.to_json() for c in self.configs], "calibrations": list(self.calibrations),
                "seeds": list(self.seeds), "odds_col": self.odds_col,
                "folds": list(self.folds) if self.folds is not None else None, "resamples": self.resamples,
                "bootstrap_seed": self.bootstrap_seed, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CompareSpec:
        return cls(tuple(CompareConfig(str(c["name"]), str(c["model"]), dict(c["params"]), str(c.get("source", "")))
                         for c in d["configs"]), tuple(d["calibrations"]), tuple(int(s) for s in d["seeds"]),
                   d.get("odds_col"), tuple(d["folds"]) if d.get("folds") is not None else None,
                   int(d.get("resamples", 2000)), int(d.get("bootstrap_seed", 0)), tuple(d.get("notes") or ()))


def entry_name(model: str, rank: int) -> str:
    """The best configuration is the model's own name; the next ones <model>-top<k>."""
    return model if rank == 1 else f"{model}-top{rank}"


def check_calibrations(names: tuple[str, ...], task: str) -> tuple[str, ...]:
    """The calibrations, once each, in the order given; refused: an unknown one, or any
    but ``none`` for a regression target (calibration maps probabilities)."""
    if not names:
        raise ConfigError("give at least one calibration", key="--calibration", valid=CALIBRATIONS)
    for name in names:
        if name not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration {name!r}", key="--calibration", valid=CALIBRATIONS)
    chosen = tuple(dict.fromkeys(names))
    if task == "regression" and chosen != ("none",):
        raise ConfigError("calibration maps probabilities; this target is regression: use --calibration none",
                          key="--calibration", valid=("none",))
    return chosen


def check_odds_col(odds_col: str | None, data: dict[str, Any], file: str | None) -> None:
    """The odds column must be in the CSV (never the target or the time column); the
    built-in data set has none."""
    if odds_col is None:
        return
    if "builtin" in data:
        raise DataError("the built-in data set has no odds column; give your CSV with --data FILE --target COL",
                        key="--odds-col")
    if odds_col in (data.get("target"), data.get("time_col")):
        raise DataError(f"{odds_col!r} is the {'target' if odds_col == data.get('target') else 'time column'}; "
                        "the odds column holds decimal odds of the positive class", file=file, key="--odds-col")
    with open(Path(data["path"]), newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    if odds_col not in header:
        raise DataError(f"no column {odds_col!r}", file=file, key="--odds-col", valid=header)


def parse_params(items: tuple[str, ...], models: tuple[str, ...], accepted: dict[str, frozenset[str]]
                 ) -> dict[str, dict[str, Any]]:
    """``--param MODEL.NAME=VALUE`` items, by model; VALUE is read as a YAML scalar (50,
    0.1, true, gini). Refused: a model not compared, a parameter the model does not take."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        model, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise ConfigError(f"{item!r} is not MODEL.NAME=VALUE (e.g. random_forest.n_estimators=100)",
                              key="--param")
        if model not in models:
            raise ConfigError(f"{item!r}: {model!r} is not compared", key="--param", valid=models)
        if name not in accepted[model]:
            raise ConfigError(f"{item!r}: {model} has no parameter {name!r}", key="--param", valid=accepted[model])
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{item!r}: the value must be one number, true/false or a word", key="--param")
        out.setdefault(model, {})[name] = value
    return out
