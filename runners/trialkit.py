"""Shared trial-side code for the built-in runners: spec, data, validation splits, metrics.

Runs on any host with Python and the ML libraries; it never imports ``coordinator``.
A trial is a pure function of (spec, data): same spec and data file, same numbers.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import checkpoint
import dataprep
import ddp
from dataprep import DataProblem  # raised here too; run_spec maps it to EXIT_DATAERR

METRIC_PREFIX = "[coord-metric]"
EXIT_OK, EXIT_FAIL, EXIT_DATAERR, EXIT_PERMANENT, EXIT_REQUEUE = 0, 1, 65, 78, 75
CLASSIFICATION_METRICS = ("auc", "logloss", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
HIGHER_IS_BETTER = ("auc", "r2")
DECISION_WAIT_S = 5.0  # the longest a runner waits at a rung for the pruner's answer


class ParamError(ValueError):
    """The parameters cannot work for this model (permanent: never retried)."""


def emit(values: dict[str, Any], out: Any = None) -> None:
    clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in values.items()}
    stream = out or sys.stdout
    stream.write(f"{METRIC_PREFIX} {json.dumps(clean)}\n")
    stream.flush()


@dataclass
class Context:
    """What a model's ``fit_predict`` gets besides the data."""

    task: str
    seed: int
    threads: int
    device: str


@dataclass
class Dataset:
    X: Any  # pandas DataFrame of numeric features
    y: Any  # numpy array
    task: str
    folds: list[tuple[Any, Any]]


_DATA_CACHE: dict[str, Dataset] = {}


def load_dataset(data: dict[str, Any]) -> Dataset:
    """Read, encode and split the data once per process (warm workers reuse it): the
    rows, target and folds as ``dataprep`` defines them (the coordinator checked the same
    before the run), string columns one-hot encoded, the target and the drop and time
    columns left out of the features."""
    key = json.dumps(data, sort_keys=True)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    import numpy as np
    import pandas as pd

    frame = dataprep.read_frame(data)
    target, time_col = data["target"], data.get("time_col")
    raw_y = frame[target]
    task = data.get("task") or "auto"
    if task == "auto":
        numeric = pd.api.types.is_numeric_dtype(raw_y)
        task = "classification" if (not numeric or raw_y.nunique() <= 2) else "regression"
    y = dataprep.encode_target(raw_y, task, data.get("positive_class"))
    drop = [target] + list(data.get("drop") or []) + ([time_col] if time_col else [])
    X = pd.get_dummies(frame.drop(columns=[c for c in drop if c in frame.columns]), dtype=np.float64)
    X = X.astype(np.float64)
    X.columns = [str(c) for c in X.columns]
    times = frame[time_col].to_numpy() if time_col else None
    folds = dataprep.make_folds(data, y, times, task)
    bad = dataprep.unscorable_fold(data, folds, raw_y, times) if task == "classification" else None
    if bad is not None:
        raise DataProblem(f"{bad[2]}: a binary model needs both classes in every fold")
    _DATA_CACHE[key] = Dataset(X, y, task, folds)
    return _DATA_CACHE[key]


def score(task: str, y_true: Any, pred: Any) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as m

    pred = np.asarray(pred, dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        return {name: float("nan") for name in
                (CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS)}
    if task == "classification":
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        auc = m.roc_auc_score(y_true, p) if len(set(y_true.tolist())) == 2 else float("nan")
        return {"auc": float(auc), "logloss": float(m.log_loss(y_true, p, labels=[0.0, 1.0])),
                "brier": float(m.brier_score_loss(y_true, p))}
    return {"rmse": float(math.sqrt(m.mean_squared_error(y_true, pred))),
            "mae": float(m.mean_absolute_error(y_true, pred)), "r2": float(m.r2_score(y_true, pred))}


def impute(train: Any, valid: Any) -> tuple[Any, Any]:
    """Fill missing values with the training fold's medians (no look-ahead)."""
    med = train.median().fillna(0.0)
    return train.fillna(med), valid.fillna(med)


def run_spec(spec: dict[str, Any], out: Any = None) -> int:
    """Train and evaluate one trial; print metric lines; return the exit code. A spec with a
    ``compare`` object is a comparison job (``compare_job.py``)."""
    import importlib

    if spec.get("compare") is not None:
        import compare_job

        return int(compare_job.run(spec, out))

    started = time.perf_counter()
    try:
        module = importlib.import_module(f"model_{spec['model']}")
        ds = load_dataset(spec["data"])
        ctx = Context(ds.task, int(spec["seed"]), int(spec.get("threads", 1)), spec.get("device", "cpu"))
        ddp.init(ctx.device)  # one of several processes (procs: N): join the others
        if not ddp.is_main():  # rank 0 alone reports; the others train their shards
            out = open(os.devnull, "w")  # noqa: SIM115 (the process ends with the trial)
        objective = (spec.get("metrics") or [None])[0]
        per_fold = _run_folds(module, dict(spec["params"]), ds, ctx, objective, spec, out)
        if per_fold is None:  # stopped on request (pruned): the last step's report stands
            return EXIT_OK
        if per_fold == "requeue":  # asked to stop (SIGTERM): checkpointed, run me again
            return EXIT_REQUEUE
        final = {k: sum(f[k] for f in per_fold) / len(per_fold) for k in per_fold[0]}
        final["train_seconds"] = time.perf_counter() - started
        emit(final, out)
        return EXIT_OK
    except (ParamError, TypeError) as exc:
        print(f"coord: invalid parameters for {spec.get('model')}: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    except ImportError as exc:
        print(f"coord: missing library on this host: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    except DataProblem as exc:
        print(f"coord: data error: {exc}", file=sys.stderr)
        return EXIT_DATAERR
    except Exception:
        traceback.print_exc()
        return EXIT_FAIL


def _run_folds(module: Any, params: dict[str, Any], ds: Dataset, ctx: Context, objective: str | None,
               spec: dict[str, Any], out: Any) -> Any:
    """Train every fold; models with ``fit_steps`` advance all folds in lockstep and report
    the objective's mean over folds at each step (the fidelity pruners need). Between steps
    a ``prune`` file in the attempt directory stops the trial (returns None); a checkpoint
    of every fold is written every ``checkpoint_every_s`` seconds and after the last step,
    and a later attempt starts from the newest valid one. SIGTERM checkpoints and returns
    "requeue"."""
    folds = []
    for train_idx, valid_idx in ds.folds:
        Xt, Xv = ds.X.iloc[train_idx], ds.X.iloc[valid_idx]
        if getattr(module, "NEEDS_IMPUTE", False):
            Xt, Xv = impute(Xt, Xv)
        folds.append((Xt, ds.y[train_idx], Xv, ds.y[valid_idx]))
    if not hasattr(module, "fit_steps"):
        return [score(ds.task, yv, module.fit_predict(params, Xt, yt, Xv, ctx)) for Xt, yt, Xv, yv in folds]
    ckpt_dir, key = spec.get("checkpoint_dir"), checkpoint.params_key(spec["params"])
    restored = checkpoint.load_latest(ckpt_dir, key) if ckpt_dir else None
    states: list[Any] = [None] * len(folds)
    best, inherited = None, 0
    if restored is not None and len(restored[1].get("folds", [])) == len(folds):
        print(f"coord: resuming from the checkpoint at step {restored[0]}", file=sys.stderr)
        states, best = restored[1]["folds"], restored[1].get("best")
        if restored[1].get("key", key) != key:
            # a PBT exploit: another member's checkpoint, re-keyed for these parameters. Its best
            # so far, and the model it saved, came from the donor's parameters: only the steps
            # trained from here on, with these, can be this trial's result
            best, inherited = None, restored[0]
    else:
        restored = None
    gens = [module.fit_steps(dict(params), Xt, yt, Xv, ctx, **({"resume": st} if st is not None else {}))
            for (Xt, yt, Xv, _), st in zip(folds, states, strict=True)]
    term = _TermFlag()
    try:
        return _steps(gens, folds, ds, objective, spec, out, term, restored[0] if restored else 0, best, inherited)
    finally:
        term.restore()


def _steps(gens: list[Any], folds: list[Any], ds: Dataset, objective: str | None, spec: dict[str, Any], out: Any,
           term: _TermFlag, saved_step: int, best: Any, inherited: int = 0) -> Any:
    """The lockstep loop of ``_run_folds``: report, check for stop requests, checkpoint.

    As ``xgb.cv`` picks the best iteration, the trial's result is its best step by the
    objective's mean over folds (recorded as ``best_step``), and each report carries the
    best value so far: the curve the pruner sees never falls below what the trial ends with.
    Steps up to ``inherited`` (a donor's, after a PBT exploit) are neither scored nor reported.
    """
    ckpt_dir, key = spec.get("checkpoint_dir"), checkpoint.params_key(spec["params"])
    writer = ddp.is_main()  # of several processes, rank 0 alone writes checkpoints
    every_s = float(spec.get("checkpoint_every_s", 30.0))
    attempt_dir = spec.get("attempt_dir")
    stop = os.path.join(attempt_dir, "prune") if attempt_dir else None
    last: list[Any] = [None] * len(gens)
    savers: list[Any] = [None] * len(gens)
    saved_at, done = time.monotonic(), saved_step
    previous = saved_step
    while True:
        step = None
        for i, gen in enumerate(gens):
            item = next(gen, None)
            if item is not None:
                step, last[i], savers[i] = item
        if step is None:
            break
        done = step
        if objective in CLASSIFICATION_METRICS + REGRESSION_METRICS and step > inherited:
            scores = [score(ds.task, f[3], pred)[objective] for f, pred in zip(folds, last, strict=True)]
            value = sum(scores) / len(scores)
            sign = 1.0 if objective in HIGHER_IS_BETTER else -1.0
            if best is None or (math.isfinite(value) and sign * value > sign * best[0]):
                best = (value, step, list(last))
            emit({"step": step, objective: best[0]}, out)
            if stop and writer and _decision_due(spec.get("decisions") or {}, previous, step):
                _await_decision(attempt_dir, step, float(spec.get("decision_wait_s", DECISION_WAIT_S)))
        previous = step
        # several processes (procs: N) stop at the same step or not at all: any rank's flag is all's
        termed, pruned = ddp.agree(term.set, bool(stop and os.path.exists(stop)))
        if pruned:
            emit({"pruned_step": step}, out)  # the coordinator records PRUNED, even after a restart
            return None
        if ckpt_dir and writer and step != saved_step and (termed or time.monotonic() - saved_at >= every_s):
            checkpoint.save(ckpt_dir, step, {"folds": [s() for s in savers], "best": best, "key": key}, key, out)
            saved_at, saved_step = time.monotonic(), step
        if termed:
            return "requeue"
        if spec.get("stop_at") and step >= int(spec["stop_at"]):  # PBT: the end of a segment
            if ckpt_dir and writer and step != saved_step:
                checkpoint.save(ckpt_dir, step, {"folds": [s() for s in savers], "best": best, "key": key}, key, out)
            emit({"segment_step": step}, out)
            return "requeue"
    if ckpt_dir and writer and done != saved_step:  # the trained model: the best trial's is kept
        checkpoint.save(ckpt_dir, done, {"folds": [s() for s in savers], "best": best, "key": key}, key, out)
    preds = best[2] if best is not None else last
    results = [score(ds.task, f[3], pred) for f, pred in zip(folds, preds, strict=True)]
    for r in results:
        r["best_step"] = float(best[1] if best is not None else done)
    return results


def _decision_due(decisions: dict[str, Any], previous: int, step: int) -> bool:
    """The coordinator's Decisions.due, on the trial's side (the same rule, both ends)."""
    if decisions.get("every_from") is not None:
        return step >= int(decisions["every_from"])
    return any(previous < int(r) <= step for r in decisions.get("rungs") or ())


def _await_decision(attempt_dir: str, step: int, wait_s: float) -> None:
    """At a rung, wait for the pruner's answer (``prune`` or ``go-<step>`` in the attempt
    directory) before training on, so a pruned trial stops at the rung itself. The answer is
    a round trip of milliseconds; a coordinator that does not answer (it died) costs at most
    ``wait_s``, and the trial goes on."""
    deadline = time.monotonic() + wait_s
    answers = (os.path.join(attempt_dir, "prune"), os.path.join(attempt_dir, "go-%d" % step))
    while not any(os.path.exists(a) for a in answers) and time.monotonic() < deadline:
        time.sleep(0.001)


_EARLY = {"term": False}  # a SIGTERM that came while the libraries and data were loading


def catch_term_early() -> None:
    """Called first by run_trial.py: a SIGTERM before the step loop's flag exists (SLURM's
    --signal can come while xgboost or the data loads, seconds under load) is remembered
    instead of killing the trial, and its first step checkpoints and exits 75 (a requeue,
    not a failure)."""
    def remember(signum: int, frame: Any) -> None:
        _EARLY["term"] = True
    try:
        signal.signal(signal.SIGTERM, remember)
    except ValueError:  # not the main thread
        pass


class _TermFlag:
    """SIGTERM (a scheduler preempting the job) sets a flag the step loop checks: the
    trial checkpoints and exits 75, and its next attempt resumes there."""

    def __init__(self) -> None:
        self.set = _EARLY["term"]
        try:
            self._old: Any = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (tests): no handler
            self._old = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.set = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def read_spec(path: str | None = None) -> dict[str, Any]:
    with open(path or os.environ["COORD_SPEC"], encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    return spec
