"""``coord rerun``: train a recorded trial again from its recipe and say whether it matches.

The recipe (``trials/<n>/attempt-<k>/recipe.json``) is location-free: the same parameters,
seeds and data (checked by sha256 first: a changed file is refused with both hashes) run
on any platform of the registry, through the same backend as a search. The rerun works in
a scratch directory of its own: the finished run is only read, never written (no
checkpoint of the rerun can land in it, and no stored model is resumed).

What "exact" means: every metric the trial reported, bit for bit, except its timings. Some
trials cannot match bit for bit and the output says why (``why_not_exact``).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator import protocol, resources
from coordinator.app import run_cwd
from coordinator.backends.base import EndEvent, Handle, MetricEvent
from coordinator.backends.registry import BackendContext
from coordinator.backends.registry import build as build_backend
from coordinator.backends.registry import runnable as backend_connections
from coordinator.config import datasets
from coordinator.config.knownhosts import known_hosts_path
from coordinator.config.localhost import default_registry
from coordinator.config.registry import Platform, Registry, load_registry
from coordinator.errors import ConfigError, DataError
from coordinator.records import Allocation, Recipe, TrialStatus
from coordinator.reporting.fmt import fmt
from coordinator.store.files import read_json
from coordinator.store.rundir import RunStore, TrialRecord

RESUMED_KINDS = {"requeue", "interrupted", "migrated", "segment"}  # an attempt that left a checkpoint behind
STATEFUL_MODELS = {"xgboost", "mlp"}  # resumed from a checkpoint mid-training: their random state differs


@dataclass
class Check:
    """One trial's rerun: the recorded and the new value of each metric, and the verdict."""

    number: int
    model: str | None
    params: dict[str, Any]
    recorded_on: str
    rerun_on: str
    metrics: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    verdict: str = "pending"  # exact | differs | failed | skipped
    why_not_exact: str = ""  # why this trial cannot be expected to match bit for bit ("" = it must)
    error: str = ""

    @property
    def bad(self) -> bool:
        """A failure, or a difference where an exact match was due."""
        return self.verdict == "failed" or (self.verdict == "differs" and not self.why_not_exact)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "metrics": [{"name": n, "recorded": a, "rerun": b}
                                                        for n, a, b in self.metrics]}


def _timing(name: str) -> bool:
    return name.endswith(("_seconds", "_s"))


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def choose_registry(store: RunStore, path: str | None) -> Registry:
    """``--registry`` if given; else the registry file the run was started with, if it is
    still there; else this machine's default."""
    if path:
        return load_registry(path)
    recorded = (store.config.get("options") or {}).get("registry")
    if isinstance(recorded, str):
        full = Path(recorded).expanduser()
        full = full if full.is_absolute() else Path(run_cwd(store.config)) / full
        if full.is_file():
            return load_registry(full)
    return default_registry()


def _recipe(store: RunStore, rec: TrialRecord) -> tuple[Recipe, dict[str, Any]]:
    """The recipe of the attempt the trial's result came from, and that attempt's spec.json
    (its threads and device), made ready to run from scratch."""
    assert rec.result is not None
    adir = store.attempt_dir(rec.number, rec.result.attempt)
    path = adir / "recipe.json"
    if not path.is_file():
        raise ConfigError(f"trial {rec.number} has no recipe ({path} is missing: a run made by a coord before "
                          "recipes were recorded cannot be rerun)", key="TRIAL")
    recipe = Recipe.from_json(read_json(path))
    spec = read_json(adir / "spec.json") if (adir / "spec.json").is_file() else {}
    # from scratch, to the end: no pruner to wait for, no PBT segment end, no time limit
    return dataclasses.replace(recipe, decisions=None, stop_at=None, timeout_s=None), spec


def _check_data(recipe: Recipe, number: int) -> None:
    data = recipe.data or {}
    if not data.get("path"):
        return
    path = Path(str(data["path"]))
    if not path.is_file():
        raise DataError(f"trial {number} was trained on {path}, which is gone; restore it to rerun", key="data")
    now = datasets.sha256(path)
    if data.get("sha256") and now != data["sha256"]:
        raise DataError(f"the data file {path} changed since trial {number} ran: recorded sha256 "
                        f"{data['sha256']}, now {now}; restore the original file to rerun it", key="data")


def _why_not_exact(rec: TrialRecord, recipe: Recipe, spec: dict[str, Any], threads: int, gpu: bool) -> str:
    res = rec.result
    assert res is not None
    if recipe.command:
        return "a --command script: coord cannot know whether the script is deterministic"
    if spec.get("device") == "cuda" or gpu:
        return ("trained on a GPU: CUDA kernels (XGBoost's histogram sums, cuDNN's convolutions) are not "
                "bitwise deterministic")
    if recipe.model in STATEFUL_MODELS and any(a.kind in RESUMED_KINDS for a in res.attempts[:-1]):
        return "resumed from a checkpoint: the random state after a resume is not the uninterrupted one"
    if recipe.model in STATEFUL_MODELS and spec.get("threads") not in (None, threads):
        return (f"trained with {spec.get('threads')} threads, rerun with {threads}: floating-point sums "
                "depend on the thread count")
    return ""


def _target(registry: Registry, host: str | None, recorded: str) -> Platform:
    runnable = {k: p for k, p in registry.platforms.items() if p.connection in backend_connections()}
    if host is not None:
        if host not in runnable:
            raise ConfigError(f"no platform {host!r} in {registry.source}", key="--host", valid=runnable)
        return runnable[host]
    if recorded in runnable:
        return runnable[recorded]
    local = [p for p in runnable.values() if p.connection == "local"]
    if not local:
        raise ConfigError(f"the trial ran on {recorded!r}, which {registry.source} does not have; name a "
                          "platform to rerun it on", key="--host", valid=runnable)
    return local[0]


def _slots(p: Platform, gpu: bool) -> list[tuple[int, int | None]]:
    """The target's slots, those of the trial's kind (GPU or CPU) first."""
    gpus: list[tuple[int, int | None]] = [(s, g.index) for s in range(p.gpu_slots)
                                          if (g := p.slot_gpu(s)) is not None]
    cpus: list[tuple[int, int | None]] = [(s, None) for s in range(p.gpu_slots, p.max_concurrent_jobs)]
    return (gpus or cpus) if gpu else (cpus or gpus)


def rerun(run: Path, numbers: list[int] | None, host: str | None = None, registry_path: str | None = None,
          keep: Path | None = None) -> list[Check]:
    """Rerun trials ``numbers`` of ``run`` (None: every COMPLETE trial) and compare."""
    store = RunStore.open(run.resolve())
    records = {t.number: t for t in store.trials()}
    chosen = numbers if numbers is not None else sorted(n for n, t in records.items() if t.result is not None
                                                         and t.result.status == TrialStatus.COMPLETE)
    registry = choose_registry(store, registry_path)
    checks: list[Check] = []
    jobs: list[Job] = []
    for n in chosen:
        rec = records.get(n)
        if rec is None:
            have = f"it has trials {min(records)}-{max(records)}" if records else "it has no trials"
            raise ConfigError(f"{store.root} has no trial {n} ({have})", key="TRIAL")
        res = rec.result
        if res is None:
            raise ConfigError(f"trial {n} has no result yet (still running, or its run was interrupted: coord "
                              "resume finishes it)", key="TRIAL")
        platform = _target(registry, host, res.platform)
        check = Check(n, res.model, res.params, res.platform, platform.key)
        checks.append(check)
        if res.status != TrialStatus.COMPLETE:
            check.verdict, check.error = "skipped", f"{res.status.value}: only a complete trial has metrics to match"
            continue
        if res.lineage:
            check.verdict = "skipped"
            check.error = "a PBT member: its weights came from other members' checkpoints, so it cannot run alone"
            continue
        recipe, spec = _recipe(store, rec)
        _check_data(recipe, n)  # before anything runs: a changed file is refused, with both hashes
        gpu = bool(res.attempts and res.attempts[-1].gpu is not None) and platform.gpu_slots > 0
        check.why_not_exact = _why_not_exact(rec, recipe, spec, platform.threads_per_slot(), gpu)
        check.metrics = [(k, v, None) for k, v in sorted(res.metrics.items()) if not _timing(k)]
        jobs.append(Job(check, recipe, platform, gpu))
    if jobs:
        _run_jobs(store, registry, jobs, keep)
    return checks


@dataclass(frozen=True)
class Job:
    check: Check
    recipe: Recipe
    platform: Platform
    gpu: bool  # the trial had a GPU, and its target has one


def _run_jobs(store: RunStore, registry: Registry, jobs: list[Job], keep: Path | None) -> None:
    """Run the jobs on their platforms' slots, as many at once as each has, through the
    search's own backend, in a scratch directory."""
    scratch = Path(tempfile.mkdtemp(prefix="coord-rerun-")) if keep is None else keep.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    metrics = frozenset(store.config.get("metrics") or ()) if store.config.get("command") else frozenset()
    platforms = {j.platform.key: j.platform for j in jobs}
    backend = build_backend(platforms, BackendContext(
        known_hosts_path(registry), resources.folder("runners"), f"rerun-{store.root.name}-{int(time.time())}",
        scratch, lambda: protocol.MetricParser(wanted=metrics), cwd=run_cwd(store.config)))
    try:
        for key in platforms:
            backend.prepare(key)  # a host that cannot be reached: one HostError naming it
        waiting = list(jobs)
        taken: set[tuple[str, int]] = set()
        running: dict[str, tuple[Job, dict[str, float]]] = {}
        while waiting or running:
            for job in list(waiting):
                free = [(s, g) for s, g in _slots(job.platform, job.gpu) if (job.platform.key, s) not in taken]
                # a trial of several processes: as many slots (and GPUs) as it had, one per process
                want = 1 if job.platform.slurm is not None else job.recipe.procs
                if len(free) < min(want, len(_slots(job.platform, job.gpu))) or not free:
                    continue
                waiting.remove(job)
                mine, key = free[:want], job.platform.key
                taken.update((key, s) for s, _ in mine)
                gpus = tuple(g for _, g in mine if g is not None)
                handle: Handle = backend.launch(job.recipe, 1, Allocation(
                    key, mine[0][0], gpus[0] if gpus else None, "coord rerun",
                    extra_slots=tuple(s for s, _ in mine[1:]), extra_gpus=gpus[1:]))
                running[handle.key] = (job, {})
            for ev in backend.poll(1.0):
                job, seen = running[ev.handle.key]
                if isinstance(ev, MetricEvent):
                    seen.update(protocol.split_control(ev.values)[0])
                elif isinstance(ev, EndEvent):
                    del running[ev.handle.key]
                    taken.difference_update((ev.handle.allocation.platform, s) for s in ev.handle.allocation.slots)
                    _finish(job.check, seen, ev)
    finally:
        backend.close()
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _finish(check: Check, seen: dict[str, float], ev: EndEvent) -> None:
    out = ev.outcome
    check.metrics = [(k, a, seen.get(k)) for k, a, _ in check.metrics]
    if out.exit_code != 0:
        how = f"exit {out.exit_code}" if out.exit_code is not None else f"signal {out.signal}"
        check.verdict = "failed"
        check.error = f"the rerun ended with {how}: {(out.error or out.stderr).strip()[-500:] or 'no error output'}"
    else:
        check.verdict = "exact" if all(_same(a, b) for _, a, b in check.metrics) else "differs"


def _value(v: float | None) -> str:
    return "-" if v is None else repr(float(v))  # every digit: "exact" is about bits


def render(run: Path, checks: list[Check]) -> str:
    """One trial: its metrics side by side. Several: a line each, then the summary."""
    if len(checks) == 1 and checks[0].verdict != "skipped":
        c = checks[0]
        params = ", ".join(f"{k}={fmt(v)}" for k, v in c.params.items())
        out = [f"trial {c.number} of {run} ({c.model or 'command'}; {params or 'no parameters'})",
               f"  recorded on {c.recorded_on}, rerun on {c.rerun_on}"]
        width = max([len(n) for n, _, _ in c.metrics] + [6])
        out.append(f"  {'metric':<{width}}  {'recorded':<22}  {'rerun':<22}")
        for name, a, b in c.metrics:
            mark = "same" if _same(a, b) else "DIFFERS"
            out.append(f"  {name:<{width}}  {_value(a):<22}  {_value(b):<22}  {mark}")
        out.append(_verdict(c))
        return "\n".join(out)
    out = [f"{'trial':>5}  {'model':<14} {'rerun on':<14} verdict"]
    for c in checks:
        out.append(f"{c.number:>5}  {(c.model or 'command'):<14} {c.rerun_on:<14} {_verdict(c).strip()}")
    counts = {v: sum(c.verdict == v for c in checks) for v in ("exact", "differs", "failed", "skipped")}
    expected = sum(c.verdict == "differs" and bool(c.why_not_exact) for c in checks)
    out.append(f"{len(checks)} trials: {counts['exact']} exact, {counts['differs']} differ"
               f"{f' ({expected} as expected)' if expected else ''}, {counts['failed']} failed, "
               f"{counts['skipped']} skipped")
    return "\n".join(out)


def _verdict(c: Check) -> str:
    if c.verdict == "exact":
        return "  exact: every metric is bit for bit the recorded one"
    if c.verdict == "differs":
        n = sum(not _same(a, b) for _, a, b in c.metrics)
        why = f" (expected: {c.why_not_exact})" if c.why_not_exact else " (NOT expected: this trial should match)"
        return f"  differs: {n} metric{'s' if n != 1 else ''}{why}"
    return f"  {c.verdict}: {c.error}"
