"""``coord compare``'s wiring: the configurations read from searches' run directories (or
the models' defaults), the experiment whose studies are the comparison's jobs (one trial
each, so the search loop, its routing, retries, checkpoints and ``coord resume`` run them
unchanged), and the comparison's outputs, written from the jobs' predictions into
``<run>/compare/``. ``app.py`` drives the run; this module knows what a comparison is."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from coordinator.analysis.compare import write_outputs as write_comparison_outputs
from coordinator.analysis.predictions import load
from coordinator.analysis.summary import CompareOptions, Comparison, compare
from coordinator.config.compare import (
    CompareConfig,
    CompareRequest,
    CompareSpec,
    Job,
    check_calibrations,
    check_odds_col,
    entry_name,
    parse_params,
)
from coordinator.config.experiment import Experiment, SearchOptions, StudyConfig, resolve
from coordinator.config.models import BUILTIN, get_model
from coordinator.config.space import Space
from coordinator.errors import ConfigError, StoreError
from coordinator.records import Needs, TrialStatus
from coordinator.reporting.fmt import fmt
from coordinator.reporting.tables import scored_steps
from coordinator.store.files import write_json
from coordinator.store.rundir import RunStore

OUT_DIR = "compare"  # under the run directory


def is_compare_run(config: dict[str, Any]) -> bool:
    return isinstance(config.get("compare"), dict)


def search_options(req: CompareRequest, models: tuple[str, ...]) -> SearchOptions:
    """The search options the jobs run under: one trial per study, no pruner."""
    return SearchOptions(models=models, registry=req.registry, trials=1, seed=req.seed, sampler="random",
                         parallel=req.parallel, data=req.data, target=req.target,
                         positive_class=req.positive_class, cv=req.cv, time_col=req.time_col, folds=req.folds,
                         run_dir=req.run_dir, runs_root=req.runs_root, name=req.name or "compare",
                         max_retries=req.max_retries, trial_timeout=req.trial_timeout)


def resolve_compare(req: CompareRequest) -> Experiment:
    """Every input checked, the configurations chosen: the experiment, or a ConfigError."""
    if req.top is not None and not req.runs_from:
        raise ConfigError("--top K takes the best K configurations of searches; name them with --from RUN",
                          key="--top")
    models = tuple(get_model(m).name for m in req.models)  # an unknown model: one error naming the valid ones
    if len(set(models)) != len(models):
        raise ConfigError("a model is named twice", key="--model")
    if req.runs_from:
        configs, notes = configs_from_runs(req.runs_from, models, req.top or 1, Path(req.runs_root))
    elif models:
        configs, notes = [CompareConfig(m, m, {}, "the model's defaults") for m in models], []
    else:
        raise ConfigError("name the models to compare with --model (or the searches with --from RUN)",
                          key="--model", valid=BUILTIN)
    chosen = tuple(dict.fromkeys(c.model for c in configs))
    overrides = parse_params(req.params, chosen, {m: BUILTIN[m].params for m in chosen})
    configs = [replace(c, params={**c.params, **overrides.get(c.model, {})}) for c in configs]
    spec = CompareSpec(tuple(configs), req.calibrations, tuple(range(req.seed, req.seed + req.seeds)),
                       req.odds_col, None, req.resamples, req.bootstrap_seed, tuple(notes))
    opts = search_options(req, chosen)
    return experiment(opts, spec, split_folds=req.split_folds)


def experiment(opts: SearchOptions, spec: CompareSpec, split_folds: bool = False) -> Experiment:
    """The comparison as an experiment: the data, registry and run options resolved as for
    a search, and one study per job. Used for a new run and, from run.json, by resume."""
    exp = resolve(opts)
    data = exp.data or {}
    spec = replace(spec, calibrations=check_calibrations(spec.calibrations, data.get("task", "classification")))
    check_odds_col(spec.odds_col, data, opts.data)
    if split_folds:
        spec = replace(spec, folds=tuple(range(1, 2 if data.get("cv") == "holdout" else int(data["folds"]) + 1)))
    return replace(exp, studies=tuple(_study(job) for job in spec.jobs()), trials=1, compare=spec)


def _study(job: Job) -> StudyConfig:
    model = get_model(job.config.model)
    space = Space({}, dict(job.config.params), model.name, "coord compare")
    return StudyConfig(job.study, model, space, Needs(model.model_type, model.memory_gb, model.gpu, model.capabilities),
                       seed=job.seed, compare=job.compare)


def _open_run(path: str, runs_root: Path) -> RunStore:
    """--from RUN: a run directory, or a run's folder name under the runs folder."""
    for candidate in (Path(path), runs_root / path):
        if (candidate / "run.json").is_file():
            try:
                return RunStore.open(candidate)
            except StoreError as exc:
                raise ConfigError(str(exc), key="--from") from None
    raise ConfigError(f"{path} is not a coord run directory (no run.json there or in {runs_root})", key="--from")


def configs_from_runs(paths: tuple[str, ...], models: tuple[str, ...], top: int,
                      runs_root: Path) -> tuple[list[CompareConfig], list[str]]:
    """Each model's best ``top`` distinct configurations over the completed trials of the
    runs, by the runs' objective; ``models`` empty: every built-in model the runs searched.
    An iterative model's steps are those its trial was scored at (``best_step``): the job
    trains exactly the model the search measured. A model the runs never completed is
    compared with its defaults, said in the notes."""
    stores = [_open_run(p, runs_root) for p in paths]
    objectives = {s.run.metrics[0] for s in stores}
    if len(objectives) > 1:
        raise ConfigError(f"the --from runs optimised different metrics ({', '.join(sorted(objectives))}); their "
                          "best trials cannot be ranked together", key="--from")
    found: dict[str, list[tuple[float, int, int, dict[str, Any], str]]] = {}
    for i, store in enumerate(stores):
        run = store.run
        sign = 1.0 if run.maximize else -1.0
        for rec in store.trials():
            res = rec.result
            if res is None or res.status != TrialStatus.COMPLETE or res.model not in BUILTIN \
                    or res.value is None or not math.isfinite(res.value):
                continue
            params = dict(res.params)
            if (steps := scored_steps(rec)) is not None:
                params[steps[0]] = steps[1]
            source = f"{store.root.name} trial {rec.number} ({run.metrics[0]} {fmt(res.value)})"
            found.setdefault(res.model, []).append((-sign * res.value, i, rec.number, params, source))
    wanted = models or tuple(m for m in BUILTIN if m in found)
    if not wanted:
        raise ConfigError(f"no completed trial of a built-in model in {', '.join(paths)}", key="--from")
    configs, notes = [], []
    for model in wanted:
        ranked: list[tuple[dict[str, Any], str]] = []
        for _, _, _, params, source in sorted(found.get(model, []), key=lambda c: c[:3]):
            if all(params != p for p, _ in ranked):  # one configuration tried twice is compared once
                ranked.append((params, source))
        if not ranked:
            notes.append(f"{model}: no completed trial in the --from runs; its defaults are compared")
            configs.append(CompareConfig(model, model, {}, "the model's defaults"))
            continue
        if len(ranked) < top:
            notes.append(f"{model}: {len(ranked)} distinct configuration(s) in the --from runs, fewer than --top {top}")
        configs += [CompareConfig(entry_name(model, k), model, params, source)
                    for k, (params, source) in enumerate(ranked[:top], start=1)]
    return configs, notes


def write_outputs(store: RunStore) -> tuple[dict[str, Path], list[str]]:
    """Every output of a compare run, from its completed jobs' predictions (no training):
    per-model JSON and CSV, comparison.csv, LaTeX tables, figures, report.html, and
    configs.json (each entry's model, parameters, source). A configuration x seed with a
    job that did not complete is left out, and named. Returns the files and summary lines."""
    spec = CompareSpec.from_json(store.config["compare"])
    done = {rec.info.study: rec.number for rec in store.trials()
            if rec.result is not None and rec.result.status == TrialStatus.COMPLETE}
    jobs = spec.jobs()
    sources, missing = [], []
    for config in spec.configs:
        for seed in spec.seeds:
            mine = [j for j in jobs if j.config.name == config.name and j.seed == seed]
            if all(j.study in done for j in mine):
                sources += [store.trial_dir(done[j.study]) / "checkpoint" for j in mine]
            else:
                missing.append(f"{config.name} seed {seed}")
    lines = [f"note: {n}" for n in spec.notes]
    if missing:
        lines.append(f"left out (a job did not complete): {', '.join(missing)}")
    if not sources:
        return {}, lines
    out = store.root / OUT_DIR
    shutil.rmtree(out, ignore_errors=True)  # rebuilt whole: no file of an earlier build stays behind
    c = compare(load(sources), CompareOptions(models=tuple(c.name for c in spec.configs), resamples=spec.resamples,
                                              bootstrap_seed=spec.bootstrap_seed,
                                              title=f"Model comparison: {store.run.name}"))
    files = {f"compare:{k}": v for k, v in write_comparison_outputs(c, out).items()}
    write_json(out / "configs.json", {"configs": [x.to_json() for x in spec.configs], "seeds": list(spec.seeds),
                                      "calibrations": list(spec.calibrations), "notes": list(spec.notes)})
    files["compare:configs.json"] = out / "configs.json"
    return files, lines + _table(c)


def _table(c: Comparison) -> list[str]:
    """The comparison in the terminal: mean ± std over seeds (ROI in percent)."""
    shown = [m for m in c.metrics if m in ("auc", "brier", "logloss", "roi", "rmse", "mae", "r2")]
    width = max(len(s.model) for s in c.summaries) + 2
    out = [f"{'model':<{width}}{'calibration':<13}" + "".join(f"{m + (' %' if m == 'roi' else ''):>18}" for m in shown)]
    for s in c.summaries:
        cells = []
        for m in shown:
            scale, digits = (100.0, 1) if m == "roi" else (1.0, 4)
            mean, std = s.mean[m] * scale, s.std[m] * scale
            cell = "-" if not math.isfinite(mean) else f"{mean:.{digits}f}"
            cells.append(cell + (f" ± {std:.{digits}f}" if len(s.entry.seeds) > 1 and math.isfinite(std) else ""))
        out.append(f"{s.model:<{width}}{s.calibration:<13}" + "".join(f"{x:>18}" for x in cells))
    return out


def summary(store: RunStore) -> dict[str, Any]:
    """What a finished compare run adds to the command's summary."""
    files, lines = write_outputs(store)
    return {"files": {k: str(v) for k, v in files.items() if k in _SHOWN}, "comparison": lines,
            "compare_dir": str(store.root / OUT_DIR) if files else None}


_SHOWN = ("compare:comparison.csv", "compare:report.html", "compare:preview.tex", "compare:configs.json")
