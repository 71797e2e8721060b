"""Wiring: turns validated options into a run (store, searches, backend, loop, report).
Kept apart from ``cli.py`` so tests and scripts can call it without click."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coordinator import app_compare, provenance, resources
from coordinator.backends.base import Backend
from coordinator.backends.hosts import foreign_gpus, given, local_facts, probe
from coordinator.backends.hostwatch import EVERY_S
from coordinator.backends.kubejob import plan_line as kube_plan_line
from coordinator.backends.leasing import Sharing
from coordinator.backends.registry import BackendContext
from coordinator.backends.registry import build as build_backend
from coordinator.config import datasets
from coordinator.config.compare import CompareRequest, CompareSpec
from coordinator.config.experiment import Experiment, SearchOptions, resolve
from coordinator.config.knownhosts import known_hosts_path
from coordinator.config.localhost import default_registry, detect_memory_gb
from coordinator.config.models import BUILTIN, get_model, needs_of
from coordinator.config.registry import RUNNABLE_CONNECTIONS, Registry, load_registry
from coordinator.config.space import check_space_matches, load_space
from coordinator.errors import DiskFull, HostError, SearchFailed, StoreError
from coordinator.protocol import MetricParser
from coordinator.reporting.fmt import plural
from coordinator.reporting.tables import write_report
from coordinator.schedule import decide
from coordinator.schedule.budget import Budget
from coordinator.schedule.loop import Coordinator
from coordinator.schedule.plans import Limits, StudyPlan
from coordinator.schedule.routing import plan_lines
from coordinator.schedule.speed import SpeedModel
from coordinator.search import (
    Search,
    count_trials,
    decisions,
    make_pruner,
    make_sampler,
    open_database,
    open_storage,
    sampler_seed,
)
from coordinator.store.files import disk_full, writing
from coordinator.store.rundir import RunStore
from coordinator.store.usage import run_usage
from coordinator.tracking.follower import Follower, start_tracking
from coordinator.tracking.notify import Notifier
from coordinator.tracking.settings import TrackingOptions, check_uris
from coordinator.tracking.tracker import Tracker, Trackers

log = logging.getLogger(__name__)


def _tracker(mode: str) -> Tracker:
    from coordinator.tracking import progress

    if mode == "live":
        return progress.LiveDisplay()
    if mode == "plain":
        return progress.PlainLines()
    if mode == "json":
        return progress.JsonLines()
    return Tracker()


def run_search(opts: SearchOptions, mode: str = "quiet", tracking: TrackingOptions | None = None) -> dict[str, Any]:
    """Validate, create the run, search, report. Returns the summary with file paths."""
    exp = resolve(opts)  # every input error surfaces here, before anything is written
    if opts.storage:  # a database that cannot be used, too (the check connects: not resolve's to do)
        open_database(opts.storage)
    if tracking is not None and tracking.enabled:
        check_uris(tracking.uri)
    snapshot = exp.snapshot()
    snapshot["provenance"] = provenance.run(snapshot["registry"], os.getcwd())
    store = RunStore.create(Path(opts.runs_root), exp.name, {**snapshot, "cwd": os.getcwd()},
                            Path(opts.run_dir) if opts.run_dir else None)
    store.lock()
    return _drive(exp, store, _data(exp, store), mode, resume=False, tracking=tracking)


def run_compare(req: CompareRequest, mode: str = "quiet") -> dict[str, Any]:
    """``coord compare``: validate, choose the configurations, run every job through the
    search loop (routing, retries, checkpoints, resume), then write the comparison."""
    exp = app_compare.resolve_compare(req)  # every input error here, before anything is written
    store = RunStore.create(Path(req.runs_root), exp.name, {**exp.snapshot(), "cwd": os.getcwd()},
                            Path(req.run_dir) if req.run_dir else None)
    store.lock()
    return _drive(exp, store, _data(exp, store), mode, resume=False)


def run_cwd(cfg: dict[str, Any]) -> str:
    """The directory a run was started in (its trials start there), or this one if it is gone."""
    cwd = cfg.get("cwd")
    return str(cwd) if isinstance(cwd, str) and Path(cwd).is_dir() else os.getcwd()


def resume_run(path: Path, mode: str = "quiet", tracking: TrackingOptions | None = None,
               budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """Continue a run whose coordinator stopped or died, with the options it was started with
    (``budget``: budget options that replace the run's for this resume)."""
    store = RunStore.open(path.resolve())
    cfg = store.config
    known = {f.name for f in dataclasses.fields(SearchOptions)}  # a run from an older version: its options only
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["options"].items()
                              if k in known}
    # relative paths mean what they meant where the run was started: the files against that
    # directory, the trials' commands by starting there (no chdir: the process keeps its own)
    base = run_cwd(cfg)
    for key in ("registry", "space", "data"):
        if isinstance(fields.get(key), str) and not Path(fields[key]).expanduser().is_absolute():
            fields[key] = str(Path(base) / fields[key])
    opts = SearchOptions(**{**fields, **(budget or {})})
    if app_compare.is_compare_run(cfg):  # the same jobs as it started with; a comparison is not tracked
        exp, tracking = app_compare.experiment(opts, CompareSpec.from_json(cfg["compare"])), None
    else:
        exp = resolve(opts)
    if tracking is not None and tracking.enabled:
        check_uris(tracking.uri)
    store.lock()
    data = _data(exp, store)
    started = next((e for e in store.events_read() if e.get("event") == "search_start"), None)
    if started and started.get("data") and data and started["data"].get("sha256") != data.get("sha256"):
        raise StoreError(f"the data file {data.get('path')} changed since the run started (sha256 "
                         f"{started['data'].get('sha256')}); restore it, or start a new run")
    return _drive(exp, store, data, mode, resume=True, tracking=tracking)


def _data(exp: Experiment, store: RunStore) -> dict[str, Any] | None:
    data = exp.data
    if data is not None and "builtin" in data:  # generated once per run, into the run directory
        path = store.root / "data" / f"{datasets.BUILTIN_NAME}.csv"
        if not path.exists():
            with writing(path, store.root):
                datasets.generate(path)
        data = {**{k: v for k, v in data.items() if k != "builtin"}, "path": str(path),
                "sha256": datasets.sha256(path)}
    return data


def _drive(exp: Experiment, store: RunStore, data: dict[str, Any] | None, mode: str,
           resume: bool, tracking: TrackingOptions | None = None) -> dict[str, Any]:
    import optuna

    from coordinator.schedule.resume import recover

    opts = exp.options
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(store.root, opts.storage, store)
    plans = []
    for study in exp.studies:
        seed = sampler_seed(opts.seed, opts.sampler, count_trials(storage, study.name) if resume else 0)
        sampler = make_sampler(opts.sampler, seed, exp.parallel, study.space, len(exp.metrics))
        min_resource = opts.min_resource or (study.model.min_resource if study.model else None)
        pruner = make_pruner(opts.pruner, min_resource, opts.reduction_factor, opts.max_resource,
                             opts.prune_threshold, exp.directions[0])
        search = Search.create(name=study.name, storage=storage, sampler=sampler, space=study.space,
                               metrics=exp.metrics, directions=exp.directions, n_trials=exp.trials, pruner=pruner)
        # fidelity-aware placement: a trial that reaches the second rung may move to a faster host
        promote = min_resource * opts.reduction_factor if opts.pruner in ("asha", "hyperband") and min_resource \
            and study.model is not None else None
        plans.append(StudyPlan(search, study.needs, study.model.name if study.model else None, exp.command,
                               data, opts.seed, promote_step=promote,
                               decisions=decisions(opts.pruner, min_resource, opts.reduction_factor),
                               compare=study.compare, job_seed=study.seed))
    backend = build_backend(exp.registry.platforms, BackendContext(
        known_hosts_path(exp.registry), resources.folder("runners"), store.root.name, store.root,
        _parser_factory(exp), run_cwd(store.config),
        Sharing.for_run(store.root.name, str(store.root), opts.priority, opts.preempt)))
    # MLflow: a thread that follows the run directory (None: tracking off, the API's default)
    follower: Follower | None = start_tracking(store.root, tracking) if tracking is not None else None
    notifier = [Notifier(opts.notify, str(store.root))] if opts.notify else []
    tracker = Trackers([_tracker(mode), *([follower.events] if follower else []), *notifier])
    try:
        coordinator = _coordinator(exp, store, plans, backend, tracker, data, resume)
        if resume:
            recover(coordinator)
        summary = coordinator.run()
    except (DiskFull, OSError) as exc:
        full = disk_full(exc, run=store.root)
        if full is None:
            raise
        backend.detach()  # as a crash leaves them: the trials go on; no report (nothing new to show)
        store.close()
        raise full from None
    finally:
        tracker.close()
    try:
        # interrupted: the tables now, the figures (seconds of drawing) by ``coord report`` later
        # - Ctrl-C means "stop now", and a user waited 7 s of plotting for their prompt
        files = {k: str(v) for k, v in write_report(store, plots=False if summary["interrupted"] else None).items()}
        compared = app_compare.summary(store) if exp.compare is not None and not summary["interrupted"] else {}
        use = run_usage(store, live=False)
    finally:
        store.close()
    result = {"run_dir": str(store.root), **summary, "usage": {**use.total.to_json(), "currency": use.currency},
              "files": {**files, **compared.pop("files", {})},
              **_best_config(files, summary["best_number"]), **compared}
    if follower is not None:  # the final pass: the last trials, the searches' end, the best models
        result["tracking"] = follower.close()
    if summary["complete"] == 0 and summary["pruned"] == 0 and not summary["interrupted"]:
        errors = [r.result.error for r in store.trials() if r.result]
        last = next((e for e in reversed(errors) if e), "no error output")
        raise SearchFailed(f"no trial completed ({summary['failed']} failed); run directory {store.root}; "
                           f"last error:\n{last.strip()[-1500:]}")
    return result


def _coordinator(exp: Experiment, store: RunStore, plans: list[StudyPlan], backend: Backend,
                 tracker: Tracker, data: dict[str, Any] | None, resume: bool) -> Coordinator:
    """The loop, its hosts checked (pre-flight) before the first trial."""
    opts = exp.options
    if not resume:
        store.event("search_start", name=exp.name, parallel=exp.parallel, trials=exp.trials, data=data)
    tracker.on_search_start({"name": exp.name, "parallel": exp.parallel, "trials": exp.trials, "data": data,
                             "resume": resume, "studies": [s.name for s in exp.studies]})
    budget = Budget(opts.budget_cost, opts.budget_machine_hours, opts.budget_gpu_hours, opts.goal, opts.hard,
                    exp.registry.currency)
    limits = Limits(exp.parallel, opts.timeout, opts.trial_timeout, opts.host_retry, opts.checkpoint_every, budget)
    pbt = None
    if opts.pbt:
        from coordinator.schedule.pbt import PBT

        pbt = PBT(plans, {s.name: opts.pbt_interval or 2 * (s.model.min_resource or 1) if s.model else 1
                          for s in exp.studies}, store.trial_dir, opts.seed)
    coordinator = Coordinator(store, plans, exp.registry, backend, limits, decide.RetryPolicy(opts.max_retries),
                              tracker, RUNNABLE_CONNECTIONS,
                              speed=SpeedModel() if opts.placement == "learned" else None, pbt=pbt)
    _preflight(backend, coordinator, exp)
    _skip_shared_gpus(exp.registry, coordinator)
    return coordinator


def _best_config(files: dict[str, str], number: int | None) -> dict[str, Any]:
    """The best trial's model and parameters as the report states them (best.json), for
    the summary; empty when there is none."""
    try:
        best = json.loads(Path(files["best"]).read_text(encoding="utf-8")) if number is not None else {}
    except (KeyError, OSError, ValueError):
        return {}
    for name, entry in best.items():
        for e in entry.get("pareto_front", [entry]) if isinstance(entry, dict) else []:
            if isinstance(e, dict) and e.get("number") == number:
                return {"best_model": e.get("model") or name, "best_params": e.get("params") or {}}
    return {}


def _preflight(backend: Backend, coordinator: Coordinator, exp: Experiment) -> None:
    """Before the first trial: connect to every SSH host and start its agent; check that
    it has the libraries each built-in model needs. A host that fails is routed around
    (its trials fall back) and named with the reason; a host missing one model's library
    still runs the others."""
    _warn_oversubscribed(exp, coordinator.store)
    models = [s.model for s in exp.studies if s.model is not None]
    for platform, waiting in local_facts(exp.registry).items():  # probed in the background
        coordinator.note_host(platform, waiting)

    for key, p in exp.registry.platforms.items():
        if p.connection in ("slurm", "kubernetes"):  # a bad partition or namespace: one message, before any trial
            try:
                backend.prepare(key)
            except HostError as failed:
                coordinator.host_failed(key, failed)
    ssh = [k for k, p in exp.registry.platforms.items() if p.connection == "ssh"]
    if not ssh:
        return

    def check(platform: str) -> tuple[str, HostError | None, dict[str, Any]]:
        try:
            backend.prepare(platform)
        except HostError as exc:
            return platform, exc, {}
        return platform, None, probe(exp.registry.platforms[platform], exp.registry)

    with ThreadPoolExecutor(max_workers=len(ssh)) as pool:
        for platform, exc, info in pool.map(check, ssh):
            if exc is not None:
                coordinator.host_failed(platform, exc)
                continue
            facts = provenance.host_facts(info) if info.get("python") else None
            coordinator.note_host(platform, given(facts))
            libs = info.get("libraries", {})
            for model in models:
                missing = [lib for lib in model.libraries if not libs.get(lib)]
                if missing:
                    why = (f"{platform}: {exp.registry.platforms[platform].python} lacks {', '.join(missing)} "
                           f"for {model.name} (see coord hosts)")
                    coordinator.mark_incapable(model.model_type, platform, why, model=model.name)


def oversubscribed(registry: Registry, parallel: int | None = None) -> list[dict[str, Any]]:
    """Local platforms that declare more cores or memory than this machine has, or more
    slots x threads per slot than its cores (a registry written for another machine, e.g.
    the example's 10-core laptop used on a 2-core box: every trial then runs many times
    slower). One warning each, with declared and real figures and the fix; never an error,
    since a person may oversubscribe on purpose. ``parallel`` caps the slots in use."""
    cores, memory = os.cpu_count() or 1, detect_memory_gb()
    found = []
    for key, p in registry.platforms.items():
        if p.connection != "local":
            continue
        slots = min(p.max_concurrent_jobs, parallel or p.max_concurrent_jobs)
        threads = p.threads_per_slot()
        problems, fixes = [], []
        if p.specs.cpu_cores > cores:
            problems.append(f"cpu_cores {p.specs.cpu_cores} > {cores} real cores")
            fixes.append(f"cpu_cores to {cores}")
        # 10% slack: a "16 GB" machine shows the OS about 15.5 GiB, which is not a mistake
        if p.specs.memory_gb > memory * 1.1:
            problems.append(f"memory_gb {p.specs.memory_gb:g} > {memory:g} GB real")
            fixes.append(f"memory_gb to {memory:g}")
        if slots * threads > cores:
            problems.append(f"{slots} slots x {threads} threads = {slots * threads} > {cores} real cores")
            if p.max_concurrent_jobs > cores:
                fixes.append(f"max_concurrent_jobs to {cores}")
        if problems:
            message = (f"{key}: the registry oversubscribes this machine: {'; '.join(problems)}; "
                       f"lower {', '.join(fixes or ['max_concurrent_jobs'])} in {registry.source}")
            found.append({"platform": key, "message": message, "cpu_cores": p.specs.cpu_cores, "real_cores": cores,
                          "memory_gb": p.specs.memory_gb, "real_memory_gb": memory, "slots": slots,
                          "threads_per_slot": threads})
    return found


def _warn_oversubscribed(exp: Experiment, store: RunStore) -> None:
    for warning in oversubscribed(exp.registry, exp.parallel):
        log.warning("%s", warning["message"])
        store.event("oversubscribed", **warning)


def _skip_shared_gpus(registry: Registry, coordinator: Coordinator) -> None:
    """GPUs that run another user's compute processes get no trials, unless the platform
    has ``allow_shared_gpus``. Probed once, before the first trial."""
    targets = [p for p in registry.platforms.values() if p.specs.gpus and not p.allow_shared_gpus
               and p.key not in coordinator.hosts.quarantined and p.connection in RUNNABLE_CONNECTIONS]
    if not targets:
        return
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for platform, info in zip(targets, pool.map(lambda p: probe(p, registry), targets), strict=True):
            busy = foreign_gpus(info)
            if busy:
                coordinator.share_gpus(platform.key, busy)
                coordinator.store.event("gpus_shared", platform=platform.key, gpus=sorted(busy))
                log.warning("%s: GPU %s busy with other users' processes; not used (allow_shared_gpus: true "
                            "to use them anyway)", platform.key, ", ".join(map(str, sorted(busy))))


def _parser_factory(exp: Experiment) -> Any:
    wanted = frozenset(exp.metrics) if exp.command else frozenset()
    return lambda: MetricParser(wanted=wanted)


def plan_text(models: tuple[str, ...], registry_path: str | None, space_path: str | None = None) -> str:
    """``space_path``: plan for that search space's ``procs`` (a trial of several processes)."""
    reg = load_registry(registry_path) if registry_path else default_registry()
    infos = [get_model(m) for m in models] if models else list(BUILTIN.values())
    space = load_space(space_path) if space_path else None
    if space is not None:
        for info in infos:
            check_space_matches(space, info.params, info.name, info.distributed)
    lines = [f"registry: {reg.source}", *(f"warning: {w['message']}" for w in oversubscribed(reg))]
    width = max([16, *(len(name) for name in reg.platforms)])  # long names keep the columns aligned
    for name, p in reg.platforms.items():
        gpus = ", ".join(f"{g.model}" for g in p.specs.gpus) or "no GPU"
        usable = "" if p.connection in RUNNABLE_CONNECTIONS else f"  [{p.connection}: not runnable yet]"
        lines.append(f"  {name:<{width}} {p.name}: {plural(p.specs.cpu_cores, 'core')}, {p.specs.memory_gb:g} GB, "
                     f"{gpus}, {plural(p.max_concurrent_jobs, 'slot')}{usable}")
        if p.slurm is not None:
            o = p.slurm
            mode = "a pilot job per slot" if o.pilot else "one job per trial"
            where = f", submitted over SSH to {p.user + '@' if p.user else ''}{p.host}" if p.host else ""
            lines.append(f"  {'':<{width}} SLURM: partition {o.partition or '(default)'}, {mode}{where} "
                         f"({o.cpus_per_task} CPU, mem {o.mem or 'default'}, gres gpu:{o.gpus}, "
                         f"time {o.time_limit or 'default'}), at most {p.max_concurrent_jobs} queued or running")
        if p.kubernetes is not None:
            lines.append(f"  {'':<{width}} {kube_plan_line(p.kubernetes, p.max_concurrent_jobs)}")
        if p.available:
            lines.append(f"  {'':<{width}} available: {'; '.join(w.describe() for w in p.available)} (local time; "
                         "closed, it takes no trial and its running ones move)")
        if p.when is not None:
            lines.append(f"  {'':<{width}} available {p.when.describe()}, read on the host every "
                         f"{EVERY_S:g} s (not so, it takes no trial and its running ones move)")
    for info in infos:
        needs = needs_of(info, space.procs, space.gpus_per_proc) if space is not None else needs_of(info)
        procs = "" if needs.procs == 1 else \
            f", {needs.procs} processes per trial on {'a GPU each' if needs.gpus_per_proc else 'CPU slots'}"
        lines.append(f"\n{info.name} (model type {info.model_type}, GPU {needs.gpu}{procs}):")
        lines.extend(plan_lines(reg, needs))
    lines.extend(f"\nwarning: {message}" for _, message in reg.warnings)
    return "\n".join(lines)
