"""Data for the comparison tests: the built-in generator's small table with decimal odds
of a home win (a noisy market with a 5% margin), and synthetic predictions documents for
tests that need no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coordinator.config import datasets

FORMAT = "coord-predictions/1"


def odds_csv(path: Path, seasons: range = range(2015, 2021), games: int = 120, seed: int = 7) -> Path:
    datasets.generate(path, seasons=seasons, games_per_season=games, seed=seed)
    frame = pd.read_csv(path)
    rng = np.random.default_rng(seed + 1)
    market = 1 / (1 + np.exp(-(0.25 + 0.006 * frame["elo_diff"] + rng.normal(0, 0.3, len(frame)))))
    frame["odds_home"] = np.round(1 / (market * 1.05), 3).clip(1.01)
    frame.to_csv(path, index=False)
    return path


def synthetic_doc(model: str, seed: int, calibrations: dict[str, Any], y: Any, seasons: Any,
                  odds: Any = None, task: str = "classification") -> dict[str, Any]:
    """A predictions document as compare_job writes it, from given columns."""
    n = len(y)
    values = sorted(set(seasons))
    return {"format": FORMAT, "model": model, "params": {}, "seed": seed, "task": task, "target": "y",
            "time_col": "season", "cv": "walk-forward", "odds_col": "odds" if odds is not None else None,
            "calibrations": list(calibrations), "folds_done": list(range(1, len(values) + 1)), "inner": {},
            "columns": {"fold": [values.index(s) + 1 for s in seasons], "season": list(seasons),
                        "row": list(range(n)), "y": [float(v) for v in y],
                        "odds": [None] * n if odds is None else [float(v) for v in odds]},
            "p": {k: [float(v) for v in p] for k, p in calibrations.items()}}


def write_doc(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def synthetic_set(root: Path, seed: int = 0) -> list[Path]:
    """Three models x two calibrations x two seeds on 4 seasons of 60 rows: ``good`` is
    informative, ``fair`` less so, ``noise`` not at all; deterministic."""
    rng = np.random.default_rng(seed)
    seasons = np.repeat([2021, 2022, 2023, 2024], 60)
    signal = rng.normal(0, 1, len(seasons))
    y = (rng.random(len(seasons)) < 1 / (1 + np.exp(-1.5 * signal))).astype(float)
    odds = np.round(1 / (np.clip(1 / (1 + np.exp(-signal)) + rng.normal(0, 0.1, len(y)), 0.05, 0.95) * 1.04), 3)
    paths = []
    for model, strength in (("good", 1.5), ("fair", 0.6), ("noise", 0.0)):
        for s in (0, 1):
            r = np.random.default_rng(1000 + 100 * s + int(strength * 10))
            raw = 1 / (1 + np.exp(-(strength * signal + r.normal(0, 0.5, len(y)))))
            platt = 1 / (1 + np.exp(-(0.8 * np.log(raw / (1 - raw)))))
            doc = synthetic_doc(model, s, {"none": raw, "platt": platt}, y, seasons.tolist(), odds)
            paths.append(write_doc(root / f"{model}-{s}" / "predictions.json", doc))
    return paths
