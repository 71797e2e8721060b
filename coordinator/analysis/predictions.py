"""Predictions files: what a comparison job (``runners/compare_job.py``) writes, read and
checked here, and grouped into the entries a comparison reports (model x calibration,
one run per seed).

A file (``predictions.json``, format ``coord-predictions/1``) holds one model, one seed
and one or more calibrations: ``columns`` (``fold``, ``season``, ``row``, ``y``, ``odds``,
one value per test row) and ``p`` (per calibration, the probabilities of the same rows).
The job's last checkpoint (``step-*.ckpt``) carries the same document and is read too.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coordinator import protocol
from coordinator.analysis.metrics import Array
from coordinator.errors import DataError

FORMAT = "coord-predictions/1"
CALIBRATION_ORDER = ("none", "platt", "isotonic")


@dataclass(frozen=True, eq=False)
class Predictions:
    """One model x calibration x seed: its out-of-sample predictions, rows in file order."""

    model: str
    calibration: str
    seed: int
    task: str
    fold: Array
    season: tuple[Any, ...]  # the test season of each row (None without a time column)
    row: Array
    y: Array
    p: Array
    odds: Array | None
    params: dict[str, Any]
    time_col: str | None
    source: str

    @property
    def blocks(self) -> tuple[Any, ...]:
        """The bootstrap's block of each row: its season, else its fold."""
        return self.season if all(s is not None for s in self.season) else tuple(int(f) for f in self.fold)


@dataclass(frozen=True, eq=False)
class Entry:
    """One model x calibration: a run per seed, all on the same rows in the same order."""

    model: str
    calibration: str
    runs: tuple[Predictions, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in self.runs)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.calibration}"


class _NoClasses(pickle.Unpickler):
    """A checkpoint's payload is plain data: refuse anything that would run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def read_document(path: Path) -> dict[str, Any]:
    """The predictions document in a ``predictions.json`` or a job's checkpoint file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the predictions: {exc.strerror or exc}", file=str(path)) from None
    if data.startswith(protocol.CKPT_MAGIC):
        if not protocol.checkpoint_ok(data):
            raise DataError("damaged checkpoint (its checksum does not match)", file=str(path))
        try:
            state = _NoClasses(io.BytesIO(data.partition(b"\n")[2])).load()
            doc = state["document"]
        except (pickle.UnpicklingError, KeyError, TypeError, EOFError, ValueError) as exc:
            raise DataError(f"not a comparison job's checkpoint: {exc}", file=str(path)) from None
    else:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise DataError(f"not a predictions file (JSON): {exc}", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"not a predictions file (format {FORMAT!r} expected)", file=str(path))
    return doc


def from_document(doc: dict[str, Any], source: str) -> list[Predictions]:
    """One Predictions per calibration in the document; its columns checked."""
    try:
        cols, n = doc["columns"], len(doc["columns"]["y"])
        task, model, seed = str(doc["task"]), str(doc["model"]), int(doc["seed"])
        fold = np.asarray(cols["fold"], dtype=np.float64)
        row = np.asarray(cols["row"], dtype=np.float64)
        y = np.asarray(cols["y"], dtype=np.float64)
        odds_raw = [math.nan if v is None else float(v) for v in cols["odds"]]
        season = tuple(cols["season"])
        probs = {str(k): np.asarray(v, dtype=np.float64) for k, v in doc["p"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed predictions file: {exc}", file=source) from None
    lengths = [len(fold), len(row), len(odds_raw), len(season), *(len(v) for v in probs.values())]
    if any(k != n for k in lengths):
        raise DataError("the predictions file's columns differ in length", file=source)
    if task == "classification" and not np.all((y == 0) | (y == 1)):
        raise DataError("a classification target must be 0 or 1 in every row", file=source)
    if len(set(zip(fold.tolist(), row.tolist(), strict=True))) != n:
        raise DataError("a row appears twice in one fold", file=source)
    odds = None if doc.get("odds_col") is None else np.asarray(odds_raw, dtype=np.float64)
    out = []
    for cal, p in probs.items():
        if not np.all(np.isfinite(p)) or (task == "classification" and not np.all((p >= 0) & (p <= 1))):
            raise DataError(f"calibration {cal}: predictions must be finite probabilities in [0, 1]", file=source)
        out.append(Predictions(model, cal, seed, task, fold, season, row, y, p, odds, dict(doc.get("params") or {}),
                               doc.get("time_col"), source))
    return out


def _files(path: Path) -> list[Path]:
    """A file itself; in a folder, at any depth, every ``predictions.json`` and, in a
    folder holding a job's checkpoints but no ``predictions.json`` (what the coordinator
    copied home from a host), its newest whole checkpoint."""
    if not path.is_dir():
        return [path]
    found = set(path.rglob("predictions.json"))
    have = {f.parent for f in found}
    for folder in sorted({c.parent for c in path.rglob("step-*.ckpt")} - have):
        for ckpt in sorted(folder.glob("step-*.ckpt"), reverse=True):
            if protocol.checkpoint_ok(ckpt.read_bytes()):
                found.add(ckpt)
                break
    if not found:
        raise DataError("no predictions.json (or comparison job checkpoint) under this directory", file=str(path))
    return sorted(found)


def load(paths: Iterable[Path]) -> list[Predictions]:
    """Every (model, calibration, seed) in the given files and folders (see ``_files``),
    in sorted order within a folder."""
    out: list[Predictions] = []
    for path in paths:
        for f in _files(path):
            out.extend(from_document(read_document(f), str(f)))
    return out


def merge(preds: Sequence[Predictions]) -> list[Predictions]:
    """One Predictions per (model, calibration, seed): the parts of a run split into
    jobs by fold (``compare.folds``) joined, in the order given. The same fold twice is
    refused."""
    parts: dict[tuple[str, str, int], list[Predictions]] = {}
    for p in preds:
        parts.setdefault((p.model, p.calibration, p.seed), []).append(p)
    out = []
    for (model, cal, seed), mine in parts.items():
        owner: dict[float, str] = {}
        for p in mine:
            for f in sorted(set(p.fold.tolist())):
                if f in owner:
                    raise DataError(f"{model} / {cal} / seed {seed}: fold {int(f)} is also in {owner[f]}",
                                    file=p.source)
                owner[f] = p.source
        if len(mine) == 1:
            out.append(mine[0])
            continue
        first = mine[0]
        with_odds = [p.odds for p in mine if p.odds is not None]
        odds = np.concatenate(with_odds) if len(with_odds) == len(mine) else None
        out.append(Predictions(model, cal, seed, first.task, np.concatenate([p.fold for p in mine]),
                               tuple(s for p in mine for s in p.season), np.concatenate([p.row for p in mine]),
                               np.concatenate([p.y for p in mine]), np.concatenate([p.p for p in mine]), odds,
                               first.params, first.time_col, "; ".join(p.source for p in mine)))
    return out


def group(preds: Sequence[Predictions], models: Sequence[str] | None = None) -> list[Entry]:
    """Entries in table order (``models`` as given, else by name; calibrations none, platt,
    isotonic; seeds ascending), every run aligned to one row order. Refused: a repeated
    (model, calibration, seed) fold, runs of different tasks, or runs not on the same rows."""
    if not preds:
        raise DataError("no predictions to compare")
    preds = merge(preds)
    tasks = {p.task for p in preds}
    if len(tasks) > 1:
        raise DataError(f"the predictions mix tasks ({', '.join(sorted(tasks))})")
    order = list(models) if models else sorted({p.model for p in preds})
    missing = sorted({p.model for p in preds} - set(order))
    order += missing
    ref = preds[0]
    ref_key = _row_keys(ref)
    ref_pos = {k: i for i, k in enumerate(ref_key)}
    ref_y = ref.y
    entries = []
    for model in order:
        cals = sorted({p.calibration for p in preds if p.model == model},
                      key=lambda c: (CALIBRATION_ORDER.index(c) if c in CALIBRATION_ORDER else 99, c))
        for cal in cals:
            runs = sorted((p for p in preds if p.model == model and p.calibration == cal), key=lambda p: p.seed)
            entries.append(Entry(model, cal, tuple(_aligned(r, ref, ref_pos, ref_y) for r in runs)))
    return entries


def _row_keys(p: Predictions) -> list[tuple[float, float]]:
    return list(zip(p.fold.tolist(), p.row.tolist(), strict=True))


def _aligned(p: Predictions, ref: Predictions, ref_pos: dict[tuple[float, float], int], ref_y: Array) -> Predictions:
    keys = _row_keys(p)
    if len(keys) != len(ref_pos) or any(k not in ref_pos for k in keys):
        raise DataError(f"{p.model} / {p.calibration} / seed {p.seed} was tested on other rows than "
                        f"{ref.model} / {ref.calibration} / seed {ref.seed} ({ref.source}); a comparison needs the "
                        "same data and folds for every model", file=p.source)
    idx = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        idx[ref_pos[k]] = i
    y = p.y[idx]
    if not np.array_equal(y, ref_y):
        raise DataError(f"{p.model} / {p.calibration} / seed {p.seed}: the labels differ from {ref.source}'s on the "
                        "same rows (another data file?)", file=p.source)
    return Predictions(p.model, p.calibration, p.seed, p.task, p.fold[idx], tuple(p.season[i] for i in idx),
                       p.row[idx], y, p.p[idx], None if p.odds is None else p.odds[idx], p.params, p.time_col,
                       p.source)
