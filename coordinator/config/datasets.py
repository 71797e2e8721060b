"""The built-in data set, and the checks a user's CSV gets before a run exists.

The built-in data set is a generated, seasonal, team-features table shaped like the
user's ``asof_team_features_enhanced_2025.csv`` (a ``season`` column, numeric features,
a binary ``home_win`` target). No download; the same seed gives the same bytes.

The signal is realistic for sports prediction (AUC around 0.7 is reachable): mostly
linear in rating differences, with interactions and a threshold effect that trees can
find and a GLM cannot, plus drift across seasons so walk-forward validation matters.

A user's CSV is read, its target encoded and its folds made by ``runners/dataprep.py``,
the trial side's own definition, loaded by path: a fold the trials could not score is
refused here, with the fold and what would work, instead of failing every trial.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from coordinator import resources
from coordinator.errors import ConfigError, DataError

BUILTIN_NAME = "team_features"
BUILTIN_TARGET = "home_win"
BUILTIN_TIME_COL = "season"
BUILTIN_CLASSES = (0, 1)  # home_win; the positive class is 1 unless --positive-class 0


def generate(path: Path, seasons: range = range(2003, 2025), games_per_season: int = 400,
             seed: int = 2025) -> Path:
    """Write the data set as CSV to ``path`` (atomically) and return it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for season in seasons:
        drift = (season - seasons.start) / max(1, len(seasons) - 1)
        n = games_per_season
        elo = rng.normal(0, 100, n)
        off = rng.normal(0, 5, n) + 0.02 * elo
        deff = rng.normal(0, 5, n) - 0.015 * elo
        rest = rng.integers(-3, 4, n)
        travel = rng.gamma(2.0, 400.0, n)
        win_pct = np.clip(0.5 + elo / 400 + rng.normal(0, 0.08, n), 0, 1)
        injuries = rng.poisson(1.2, n) - rng.poisson(1.2, n)
        pace = rng.normal(100, 4, n)
        noise = rng.normal(0, 1, (n, 4))
        logit = (0.25 + 0.006 * elo + 0.05 * off - 0.04 * deff + 0.08 * rest
                 - 0.0002 * travel * (rest < 0) - 0.15 * injuries
                 + 0.5 * np.tanh((win_pct - 0.5) * 6) * (1 + drift)
                 + 0.35 * (off > 4) * (deff < -2) - 0.3 * drift * (pace > 104))
        home_win = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        for i in range(n):
            rows.append((season, round(elo[i], 1), round(off[i], 3), round(deff[i], 3), int(rest[i]),
                         round(travel[i], 1), round(win_pct[i], 4), int(injuries[i]), round(pace[i], 2),
                         *[round(v, 4) for v in noise[i]], int(home_win[i])))
    header = ("season,elo_diff,off_rating_diff,def_rating_diff,rest_days_diff,travel_km,win_pct_diff,"
              "injury_diff,pace,noise_1,noise_2,noise_3,noise_4,home_win")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(header + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r) + "\n")
    tmp.replace(path)
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dataprep() -> Any:
    return resources.runner_module("dataprep")


def positive_class(classes: list[Any], chosen: str | None, target: str, file: str | None = None) -> Any:
    """The positive class: ``--positive-class`` matched to a class (by its text, or as a
    number or boolean: '1' names 1.0, 'true' names True), else the last of ``classes``."""
    if chosen is None:
        return classes[-1]
    for value in classes:
        if str(value) == chosen:
            return value
    for value in classes:
        if isinstance(value, bool) and chosen.strip().lower() == str(value).lower():
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                if float(chosen) == value:
                    return value
            except ValueError:
                pass
    raise DataError(f"{chosen!r} is not a class of target {target!r}", file=file, key="--positive-class",
                    valid=[str(v) for v in classes])


def describe(data: dict[str, Any] | None) -> str | None:
    """The line a search prints at its start about a binary target (None otherwise)."""
    if not data or "positive_class" not in data:
        return None
    classes = ", ".join(str(c) for c in data.get("classes", ()))
    return (f"target {data['target']!r}: positive class {data['positive_class']!r} (classes {classes}; "
            "--positive-class chooses)")


def check_csv(spec: dict[str, Any], chosen: str | None, file: str) -> dict[str, Any]:
    """Read ``spec``'s CSV as the trials will and return the spec with its positive class
    and classes (classification); refuse, naming the fold, a split the trials could not
    train or score on."""
    prep = _dataprep()
    target, task = spec["target"], spec["task"]
    try:
        frame = prep.read_frame(spec)
    except prep.DataProblem as exc:
        raise DataError(str(exc), file=file) from None
    raw_y = frame[target]
    if task == "classification":
        classes = prep.classes(raw_y)
        if len(classes) != 2:
            raise DataError(f"target {target!r} has {len(classes)} class{'es' * (len(classes) != 1)} "
                            f"({', '.join(map(str, classes))}); a binary target needs two", file=file, key="--target")
        spec = {**spec, "positive_class": positive_class(classes, chosen, target, file), "classes": classes}
    elif chosen is not None:
        raise ConfigError(f"the task is regression (target {target!r}); a positive class is for a binary "
                          "classification", file=file, key="--positive-class")
    try:
        y = prep.encode_target(raw_y, task, spec.get("positive_class"))
    except prep.DataProblem as exc:
        raise DataError(str(exc), file=file, key="--target") from None
    times = frame[spec["time_col"]].to_numpy() if spec.get("time_col") else None
    key = "--cv" if spec["cv"] == "holdout" else "--folds"
    try:
        folds = prep.make_folds(spec, y, times, task)
    except prep.DataProblem as exc:
        raise DataError(str(exc), file=file, key=key) from None
    bad = prep.unscorable_fold(spec, folds, raw_y, times) if task == "classification" else None
    if bad is not None:
        number, side, what = bad
        why = ("the classification metrics (AUC) need both classes in every validation fold" if side == "validates"
               else "a model needs both classes to learn from")
        raise DataError(f"{what}; {why}; {_remedy(prep, spec, y, raw_y, times, number, side, task)}", file=file,
                        key=key)
    return spec


def _remedy(prep: Any, spec: dict[str, Any], y: Any, raw_y: Any, times: Any, number: int, side: str,
            task: str) -> str:
    """What would work: the largest smaller --folds whose folds are all fine, if any."""
    cv, k = spec["cv"], int(spec["folds"])
    if cv == "walk-forward" and side == "validates" and number == k:
        col, last = spec["time_col"], max(times.tolist())
        return (f"fewer --folds cannot help (the last {col} always validates): leave {col} {last} out of the "
                f"file, add rows to it, or use --cv kfold")
    lowest = {"walk-forward": 1, "kfold": 2}.get(cv, k)  # holdout has no number of folds
    for fewer in range(k - 1, lowest - 1, -1):
        smaller = {**spec, "folds": fewer}
        try:
            folds = prep.make_folds(smaller, y, times, task)
        except prep.DataProblem:
            continue
        if prep.unscorable_fold(smaller, folds, raw_y, times) is None:
            return f"use --folds {fewer}, or add data"
    return "add rows of the rarer class" + (", or use --cv kfold" if cv == "walk-forward" else "")
