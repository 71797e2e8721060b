"""A comparison job: one built-in model with one configuration and seed, trained on every
validation fold (walk-forward by season), its test predictions calibrated on an inner
split of each training window (``calibrate.py``), written as one predictions file.

Run as ``COORD_SPEC=spec.json python compare_job.py`` or through ``trialkit.run_spec``
(a spec with a ``compare`` object), so the warm workers run it as they run a trial. The
spec is a trial's spec plus::

    "compare": {"calibration": ["none", "platt", "isotonic"],  # or one name; default none
                "odds_col": "odds_home",     # optional: decimal odds of the positive class
                "inner_seasons": 1,          # calibration set: the window's last seasons
                "inner_fraction": 0.25,      # ... or this share of it (no time column)
                "folds": [1, 3],             # optional: only these folds (1-based)
                "out": "/path/predictions.json",  # default: checkpoint_dir (else attempt_dir)
                "name": "xgboost-top2"}      # the entry's name in the tables (default: the model)

The odds column is never a feature. An iterative model trains its configured steps
(``n_estimators``, ``epochs``): no step is chosen on the test season.

After each fold the predictions so far are a checkpoint (``checkpoint.py``, carried home
and to the next host like any), so a retried job resumes at the next fold; the last one
holds the whole file. The job prints one metric line: ``auc``, ``logloss``, ``brier``
(``rmse``, ``mae``, ``r2`` for regression) pooled over its test rows for the first
calibration, the same suffixed ``_<calibration>`` for each, ``rows``, ``folds`` and
``train_seconds``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import calibrate  # noqa: E402
import checkpoint  # noqa: E402
import dataprep  # noqa: E402
import trialkit  # noqa: E402

FORMAT = "coord-predictions/1"
FILE_NAME = "predictions.json"
_KNOWN = {"calibration", "odds_col", "inner_seasons", "inner_fraction", "folds", "out", "name"}


def run(spec: dict[str, Any], out: Any = None) -> int:
    """Run the job; print its metric line; return the protocol's exit code."""
    started = time.perf_counter()
    try:
        doc = predict(spec, out)
        if doc is None:
            return trialkit.EXIT_REQUEUE
        path = _write(doc, spec)
        print("coord: predictions written to %s" % path, file=sys.stderr)
        line = summary(doc)
        line["train_seconds"] = time.perf_counter() - started
        trialkit.emit(line, out)
        return trialkit.EXIT_OK
    except (trialkit.ParamError, calibrate.CalibrationProblem, TypeError) as exc:
        print("coord: invalid comparison job for %s: %s" % (spec.get("model"), exc), file=sys.stderr)
        return trialkit.EXIT_PERMANENT
    except ImportError as exc:
        print("coord: missing library on this host: %s" % exc, file=sys.stderr)
        return trialkit.EXIT_PERMANENT
    except dataprep.DataProblem as exc:
        print("coord: data error: %s" % exc, file=sys.stderr)
        return trialkit.EXIT_DATAERR
    except Exception:
        traceback.print_exc()
        return trialkit.EXIT_FAIL


def options(spec: dict[str, Any]) -> dict[str, Any]:
    cmp = dict(spec.get("compare") or {})
    unknown = sorted(set(cmp) - _KNOWN)
    if unknown:
        raise trialkit.ParamError("unknown compare key(s) %s (valid: %s)"
                                  % (", ".join(unknown), ", ".join(sorted(_KNOWN))))
    cmp["calibration"] = calibrate.check_methods(cmp.get("calibration"))
    cmp["inner_seasons"] = int(cmp.get("inner_seasons", 1))
    cmp["inner_fraction"] = float(cmp.get("inner_fraction", 0.25))
    return cmp


def predict(spec: dict[str, Any], out: Any = None) -> dict[str, Any] | None:
    """The predictions document (None: stopped by SIGTERM after a checkpoint)."""
    import numpy as np

    cmp = options(spec)
    data = dict(spec["data"])
    odds_col = cmp.get("odds_col")
    if odds_col:
        data["drop"] = list(data.get("drop") or []) + [odds_col]
    ds = trialkit.load_dataset(data)
    frame = dataprep.read_frame(data)
    methods = cmp["calibration"]
    if ds.task != "classification" and methods != ["none"]:
        raise trialkit.ParamError("calibration %s is for classification; this target is regression"
                                  % "/".join(m for m in methods if m != "none"))
    time_col = data.get("time_col")
    times = frame[time_col].to_numpy() if time_col else None
    odds = _odds(frame, odds_col, data["path"]) if odds_col else None
    chosen = [int(k) for k in cmp.get("folds") or range(1, len(ds.folds) + 1)]
    bad = [k for k in chosen if not 1 <= k <= len(ds.folds)]
    if bad:
        raise trialkit.ParamError("compare.folds %s: there are folds 1 to %d" % (bad, len(ds.folds)))
    module = importlib.import_module("model_%s" % spec["model"])
    ctx = trialkit.Context(ds.task, int(spec["seed"]), int(spec.get("threads", 1)), spec.get("device", "cpu"))
    params = dict(spec.get("params") or {})

    def train_predict(train_rows: Any, predict_rows: Any) -> Any:
        Xt, Xp = ds.X.iloc[train_rows], ds.X.iloc[predict_rows]
        if getattr(module, "NEEDS_IMPUTE", False):
            Xt, Xp = trialkit.impute(Xt, Xp)
        if hasattr(module, "fit_steps"):
            last = None
            for _, pred, _ in module.fit_steps(dict(params), Xt, ds.y[train_rows], Xp, ctx):
                last = pred
            return np.asarray(last, dtype=np.float64)
        return np.asarray(module.fit_predict(dict(params), Xt, ds.y[train_rows], Xp, ctx), dtype=np.float64)

    walk = data.get("cv") == "walk-forward"
    ckpt_dir = spec.get("checkpoint_dir")
    key = checkpoint.params_key({"model": spec["model"], "params": params, "seed": ctx.seed,
                                 "compare": {k: v for k, v in cmp.items() if k != "out"},
                                 "data": {k: v for k, v in data.items() if k != "path"}})
    doc = _empty(spec, ds.task, data, cmp, params)
    restored = checkpoint.load_latest(ckpt_dir, key) if ckpt_dir else None
    if restored is not None:
        doc = restored[1]["document"]
        print("coord: resuming after fold %s" % ", ".join(map(str, doc["folds_done"])), file=sys.stderr)
    term = trialkit._TermFlag()
    try:
        for k in chosen:
            if k in doc["folds_done"]:
                continue
            window, test = ds.folds[k - 1]
            probs, how = calibrate.calibrated_test(
                methods, train_predict, window, test, ds.y, times if walk else None, cmp["inner_seasons"],
                cmp["inner_fraction"], ctx.seed) if ds.task == "classification" else \
                ({"none": train_predict(window, test)}, "regression: uncalibrated")
            _append(doc, k, test, ds.y, frame, times, odds, probs, how)
            if ckpt_dir:
                checkpoint.save(ckpt_dir, len(doc["folds_done"]), {"document": doc}, key, out)
            if term.set:
                return None
    finally:
        term.restore()
    return doc


def _empty(spec: dict[str, Any], task: str, data: dict[str, Any], cmp: dict[str, Any],
           params: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "model": cmp.get("name") or spec["model"], "runner": spec["model"], "params": params,
            "seed": int(spec["seed"]), "task": task,
            "target": data["target"], "time_col": data.get("time_col"), "cv": data.get("cv", "holdout"),
            "odds_col": cmp.get("odds_col"), "calibrations": cmp["calibration"], "number": spec.get("number"),
            "data_sha256": data.get("sha256"), "folds_done": [], "inner": {},
            "columns": {"fold": [], "season": [], "row": [], "y": [], "odds": []},
            "p": {m: [] for m in cmp["calibration"]}}


def _append(doc: dict[str, Any], k: int, test: Any, y: Any, frame: Any, times: Any, odds: Any,
            probs: dict[str, Any], how: str) -> None:
    import numpy as np

    cols = doc["columns"]
    n = len(test)
    cols["fold"] += [k] * n
    cols["season"] += times[test].tolist() if times is not None else [None] * n
    cols["row"] += [int(i) for i in frame.index.to_numpy()[test]]
    cols["y"] += [float(v) for v in y[test]]
    cols["odds"] += [None if odds is None or not np.isfinite(odds[i]) else float(odds[i]) for i in test]
    for method, p in probs.items():
        doc["p"][method] += [float(v) for v in p]
    doc["inner"][str(k)] = how
    doc["folds_done"].append(k)


def _odds(frame: Any, col: str, path: str) -> Any:
    import numpy as np
    import pandas as pd

    if col not in frame.columns:
        raise dataprep.DataProblem("odds column %r not in %s (columns: %s)" % (col, path, ", ".join(frame.columns)))
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isfinite(values) & (values <= 1.0))
    if len(bad):
        raise dataprep.DataProblem("odds column %r holds decimal odds, which are > 1; row %d has %r"
                                   % (col, int(frame.index[bad[0]]) + 2, float(values[bad[0]])))
    return values


def summary(doc: dict[str, Any]) -> dict[str, float]:
    """The job's metric line: pooled over its test rows (the analysis recomputes every
    metric from the file; this is what the loop records for the job)."""
    import numpy as np

    y = np.asarray(doc["columns"]["y"], dtype=np.float64)
    line: dict[str, float] = {}
    for i, method in enumerate(doc["calibrations"]):
        scores = trialkit.score(doc["task"], y, np.asarray(doc["p"][method], dtype=np.float64))
        if i == 0:
            line.update(scores)
        line.update({"%s_%s" % (k, method): v for k, v in scores.items()})
    line.update(rows=float(len(y)), folds=float(len(doc["folds_done"])))
    return line


def _write(doc: dict[str, Any], spec: dict[str, Any]) -> str:
    cmp = spec.get("compare") or {}
    where = spec.get("checkpoint_dir") or spec.get("attempt_dir") or "."
    path = cmp.get("out") or os.path.join(where, FILE_NAME)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, sort_keys=True, separators=(",", ":"))
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    sys.exit(run(trialkit.read_spec()))
