"""A run directory, as MLflow runs: one MLflow experiment per run name, one parent run per
search (study), one child run per committed trial.

Everything logged is a function of the run directory alone, so logging again changes
nothing: runs are found by their tags (``coord.run_id``, ``coord.study``, ``coord.trial``),
metric points carry timestamps from the run's events (the same point twice is one point),
parameters are written once. A child run is complete when it carries ``coord.synced``; a
trial whose logging was cut short (a server that went down, a full disk) is filled in by the
next pass on the same MLflow run.

Per trial: its parameters; each per-step report (the ``[coord-metric]`` lines with a
``step`` in each attempt's stdout) as a metric at that step; its final metrics; status
(COMPLETE -> FINISHED, PRUNED and CANCELLED -> KILLED, FAILED -> FAILED, and the tag
``coord.status``); tags for where and how it ran; artefacts: each attempt's stdout/stderr
tail and the trial's spec. Per search: the options as parameters, the resolved
configuration (run.json, passwords in URLs removed) as an artefact, the best value.
Environment variables are never read, so no secret they hold can reach MLflow.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from coordinator.records import Result, TrialInfo
from coordinator.store.files import read_json
from coordinator.store.rundir import TrialRecord
from coordinator.store.usage import RunUsage, Usage, run_usage, trial_usage
from coordinator.tracking.runview import KEY, KIND, STUDY, SYNCED, TRIAL, RunView, clean_name, redacted_config


class Syncer:
    """Brings one run's MLflow record up to date with its run directory. ``client`` is an
    ``MlflowClient``; each method may raise whatever MLflow raises (the caller retries)."""

    def __init__(self, client: Any, view: RunView, artifact_location: str | None) -> None:
        self.client, self.view, self.artifact_location = client, view, artifact_location
        self.experiment_id: str | None = None
        self.parents: dict[str, str] = {}  # study -> MLflow run id
        self.children: dict[int, tuple[str, bool]] = {}  # trial -> (MLflow run id, complete)
        self.created = 0  # child runs made by this syncer (for messages and tests)
        self.loaded = False

    def _experiment(self) -> str:
        if self.experiment_id is None:
            name = str(self.view.config.get("name") or "coord")
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                try:
                    self.experiment_id = self.client.create_experiment(name, artifact_location=self.artifact_location,
                                                                       tags={"coord.run_name": name})
                except Exception:  # made meanwhile by another coordinator sharing the store
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None:
                        raise
                    self.experiment_id = exp.experiment_id
            else:
                self.experiment_id = exp.experiment_id
        return self.experiment_id

    def load(self) -> None:
        """Find what earlier passes (or an earlier coordinator, or ``coord sync``) logged."""
        exp, token = self._experiment(), None
        self.parents.clear()
        self.children.clear()
        while True:
            page = self.client.search_runs([exp], filter_string=f"tags.`{KEY}` = '{self.view.key}'",
                                           max_results=1000, page_token=token)
            for run in page:
                tags = run.data.tags
                if tags.get(KIND) == "study":
                    self.parents.setdefault(tags.get(STUDY, ""), run.info.run_id)
                elif tags.get(TRIAL, "").isdigit():
                    self.children.setdefault(int(tags[TRIAL]), (run.info.run_id, tags.get(SYNCED) == "1"))
            token = page.token
            if not token:
                break
        self.loaded = True

    def ensure_parents(self) -> None:
        from mlflow.entities import Param

        if not self.loaded:
            self.load()
        for study in self.view.studies:
            name = str(study.get("name"))
            if name in self.parents:
                continue
            multi = len(self.view.studies) > 1
            run = self.client.create_run(self._experiment(), start_time=self.view.timeline.started,
                                         tags=self.view.study_tags(study),
                                         run_name=f"{self.view.store.root.name}/{name}" if multi
                                         else self.view.store.root.name)
            self.parents[name] = run.info.run_id
            params = [Param(k, v) for k, v in self.view.study_params(study).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run.info.run_id, params=params[i:i + 100])
            self.client.log_text(run.info.run_id, redacted_config(self.view.config), "run.json")

    def pending(self) -> list[TrialRecord]:
        """Committed trials not (completely) logged yet, in order. A trial logged before is
        skipped without touching its files: a pass over a long run costs one directory listing."""
        base = self.view.store.root / "trials"
        try:
            numbers = sorted(int(e.name) for e in os.scandir(base) if e.name.isdigit())
        except FileNotFoundError:
            return []
        out = []
        for n in numbers:
            if self.children.get(n, ("", False))[1]:
                continue
            d = base / str(n)
            try:
                result = read_json(d / "result.json")
                info = read_json(d / "trial.json")
            except (OSError, ValueError):  # not committed yet (result.json is written atomically)
                continue
            out.append(TrialRecord(n, TrialInfo.from_json(info), Result.from_json(result)))
        return out

    def sync_trial(self, rec: TrialRecord) -> None:
        """Four calls per trial: the run (with its tags), the artefacts, its end, and one
        batch of parameters, metrics and the completion tag (a single transaction in
        MLflow's stores), so a run carries ``coord.synced`` only once all of it is there."""
        from mlflow.entities import Metric, Param, RunTag

        log = self.view.trial_log(rec)
        parent = self.parents.get(log.tags[STUDY])
        tags = {**log.tags, **({"mlflow.parentRunId": parent} if parent else {})}
        run_id = self.children.get(rec.number, ("", False))[0]
        retag: list[Any] = []
        if not run_id:
            run_id = self.client.create_run(self._experiment(), start_time=log.start_ms, tags=tags,
                                            run_name=log.name).info.run_id
            self.children[rec.number] = (run_id, False)
            self.created += 1
        else:  # a pass cut short: the same run, filled in (tags and points are idempotent)
            retag = [RunTag(k, v) for k, v in tags.items()]
        with tempfile.TemporaryDirectory(prefix="coord-mlflow-") as tmp:
            for name, text in log.artefacts.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            self.client.log_artifacts(run_id, tmp)
        self.client.set_terminated(run_id, log.status, end_time=log.end_ms)
        params = [Param(k, v[:6000]) for k, v in log.params.items()]
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in log.metrics]
        if rec.result is not None:  # what the trial used, every attempt of it (store/usage.py)
            use = trial_usage(rec.result.attempts, (self.view.config.get("registry") or {}).get("platforms") or {})
            metrics += [Metric(k, v, log.end_ms or 0, 0) for k, v in _usage_metrics(use)]
        batches = []  # MLflow's limits per batch: 100 parameters, 1000 metrics, 100 tags
        while params or metrics or retag:
            batches.append((params[:100], metrics[:1000], retag[:99]))
            params, metrics, retag = params[100:], metrics[1000:], retag[99:]
        batches = batches or [([], [], [])]
        for i, (ps, ms, ts) in enumerate(batches):
            last = [RunTag(SYNCED, "1")] if i == len(batches) - 1 else []
            self.client.log_batch(run_id, metrics=ms, params=ps, tags=ts + last)
        self.children[rec.number] = (run_id, True)

    def finish(self) -> None:
        """The searches' end: status (FINISHED, or KILLED when interrupted; RUNNING while
        live) and the best value per study."""
        from mlflow.entities import Metric

        tl = self.view.timeline
        metric = clean_name((self.view.config.get("metrics") or ["value"])[0])
        used: RunUsage | None = None
        for study, run_id in self.parents.items():
            best = self.best(study)
            if best is not None and best.result:
                value = float(best.result.values[0]) if best.result.values else float("nan")
                self.client.log_batch(run_id, metrics=[Metric(f"best_{metric}", value, tl.ended or 0, 0)])
                self.client.set_tag(run_id, "coord.best_trial", str(best.number))
            if tl.ended is not None:
                if used is None:
                    used = run_usage(self.view.store, live=False)
                mine = used.by_study.get(study)
                if mine is not None:
                    self.client.log_batch(run_id, metrics=[Metric(k, v, tl.ended, 0) for k, v in _usage_metrics(mine)])
                self.client.set_terminated(run_id, "KILLED" if tl.interrupted else "FINISHED", end_time=tl.ended)

    def best(self, study: str) -> TrialRecord | None:
        """The study's best complete trial by the first objective (the lowest number on a tie)."""
        sign = -1.0 if (self.view.config.get("directions") or ["minimize"])[0] == "maximize" else 1.0
        done = [(r.result.value, r) for r in self.view.store.trials() if r.result and r.result.status == "COMPLETE"
                and r.result.study == study and r.result.value is not None and math.isfinite(float(r.result.value))]
        return min(done, key=lambda vr: (sign * float(vr[0]), vr[1].number))[1] if done else None


def _usage_metrics(use: Usage) -> list[tuple[str, float]]:
    """``coord_machine_hours``, ``coord_gpu_hours``, ``coord_attempts`` and, where priced, ``coord_cost``."""
    out = [("coord_machine_hours", use.machine_hours), ("coord_gpu_hours", use.gpu_hours),
           ("coord_attempts", float(use.attempts))]
    return out + ([("coord_cost", use.cost)] if use.cost is not None else [])
