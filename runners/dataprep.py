"""How a data file becomes a training problem, defined once for both sides: the rows
kept, the binary target's encoding (which class is positive) and the validation folds.

The trial side (``trialkit``) trains on it; the coordinator loads this file by path
before a run exists (it never imports ``runners``) to check the very folds the trials
will get. Standard library here; numpy, pandas and scikit-learn where they are needed.
"""

from __future__ import annotations

from typing import Any


class DataProblem(ValueError):
    """The data file cannot be used as configured (permanent)."""


def read_frame(data: dict[str, Any]) -> Any:
    """The CSV as a DataFrame, rows with a missing target dropped."""
    import pandas as pd

    try:
        frame = pd.read_csv(data["path"])
    except (OSError, ValueError) as exc:
        raise DataProblem(f"cannot read data file {data['path']}: {exc}") from None
    target, time_col = data["target"], data.get("time_col")
    for col in [target] + ([time_col] if time_col else []):
        if col not in frame.columns:
            raise DataProblem(f"column {col!r} not in {data['path']} (columns: {', '.join(frame.columns)})")
    return frame.dropna(subset=[target])


def classes(raw_y: Any) -> list[Any]:
    """The target's distinct values, the default positive class last: numbers (and
    booleans) in numeric order, so 1 of 0/1 and True of False/True; anything else in
    string order, so 'yes' of no/yes. Plain Python values (they go into JSON specs)."""
    values = raw_y.unique().tolist()
    if all(isinstance(v, (int, float)) for v in values):
        return sorted(values)
    return sorted(values, key=str)


def encode_target(raw_y: Any, task: str, positive: Any = None) -> Any:
    """The target as float64: 1.0 for the positive class (default: the last of
    ``classes``), 0.0 for the other; regression targets as numbers."""
    import numpy as np
    import pandas as pd

    if task == "classification":
        found = classes(raw_y)
        if len(found) != 2:
            raise DataProblem(f"the target has {len(found)} classes ({', '.join(map(str, found[:5]))}); "
                              "classification here is binary")
        chosen = found[-1] if positive is None else positive
        if chosen not in found:
            raise DataProblem(f"the positive class {chosen!r} is not a class of the target ({found[0]!r}, "
                              f"{found[1]!r})")
        return (raw_y == chosen).to_numpy(dtype=np.float64)
    y = pd.to_numeric(raw_y, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(y).any():
        raise DataProblem("the target is not numeric; use --task classification")
    return y


def make_folds(data: dict[str, Any], y: Any, times: Any, task: str) -> list[tuple[Any, Any]]:
    """(training rows, validation rows) per fold. Walk-forward: each of the last ``folds``
    distinct time values validates once, trained on every earlier one."""
    import numpy as np

    cv, k, seed = data.get("cv", "holdout"), int(data.get("folds", 5)), int(data.get("split_seed", 0))
    idx = np.arange(len(y))
    if cv == "walk-forward":
        values = sorted(set(times.tolist()))
        if len(values) < k + 1:
            raise DataProblem(f"walk-forward with {k} folds needs {k + 1} distinct time values, got {len(values)}")
        return [(idx[times < v], idx[times == v]) for v in values[-k:]]
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    try:
        with warnings.catch_warnings():  # a class too rare for k folds: unscorable_fold names the fold
            warnings.simplefilter("ignore", UserWarning)
            if cv == "kfold":
                splitter = (StratifiedKFold if task == "classification" else KFold)(k, shuffle=True,
                                                                                    random_state=seed)
                return [(a, b) for a, b in splitter.split(idx, y)]
            a, b = train_test_split(idx, test_size=float(data.get("holdout", 0.2)), random_state=seed,
                                    stratify=y if task == "classification" else None)
    except ValueError as exc:
        raise DataProblem(f"{cv}: cannot split {len(y)} rows: {exc}") from None
    return [(np.sort(a), np.sort(b))]


def unscorable_fold(data: dict[str, Any], folds: list[tuple[Any, Any]], raw_y: Any,
                    times: Any) -> tuple[int, str, str] | None:
    """The first fold a binary classifier cannot be trained or scored on (one class among
    its training or its validation rows: AUC is undefined, a model cannot learn) as
    (fold number, "trains" or "validates", a description); None if every fold is fine."""
    cv, time_col = data.get("cv", "holdout"), data.get("time_col")
    scheme = {"walk-forward": "walk-forward", "kfold": "k-fold"}.get(cv, "holdout")
    for number, (train, valid) in enumerate(folds, 1):
        for side, rows in (("validates", valid), ("trains", train)):
            found = classes(raw_y.iloc[rows])
            if len(found) >= 2:
                continue
            where = f"{len(rows)} rows"
            if cv == "walk-forward" and time_col:
                values = sorted(set(times[rows].tolist()))
                span = str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"
                where = f"{time_col} {span}: {len(rows)} row{'s' * (len(rows) != 1)}"
            plural = "class" if len(found) == 1 else "classes"
            return number, side, (f"{scheme} fold {number} of {len(folds)} {side} on {where}, {len(found)} "
                                  f"{plural} ({', '.join(map(str, found))})")
    return None
