"""``coord show RUN TRIAL``: what the run directory records for one trial (what was asked,
its committed result, every attempt with where it ran) and the run's configuration.
Fields a newer coord records (provenance: versions, hardware, commits) and this module does
not know by name are printed too, under "recorded also", so nothing written is hidden."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coordinator.errors import ConfigError
from coordinator.reporting.fmt import fmt, plural
from coordinator.store.files import read_json
from coordinator.store.rundir import RunStore

_TRIAL_KNOWN = {"number", "model", "optuna_number", "params", "seed", "study"}
_RESULT_KNOWN = {"schema", "attempt", "attempts", "duration_s", "error", "host", "kind", "metrics", "model", "number",
                 "optuna_number", "params", "platform", "seed", "status", "study", "total_s", "values", "lineage",
                 "provenance"}
_CONFIG_KNOWN = {"command", "cwd", "data", "directions", "format", "metrics", "name", "options", "parallel",
                 "registry", "studies", "trials", "provenance"}
_ATTEMPT_FILES = ("allocation.json", "spec.json", "exit.json")


def trial_record(store: RunStore, number: int) -> dict[str, Any]:
    """Everything recorded for trial ``number``: trial.json, result.json, and per attempt its
    allocation, spec and exit record (each None when absent), plus the run's run.json."""
    path = store.trial_dir(number) / "trial.json"
    if not path.is_file():
        numbers = sorted(int(p.name) for p in (store.root / "trials").glob("*") if p.name.isdigit()
                         and (p / "trial.json").is_file())
        have = f"it has trials {numbers[0]}-{numbers[-1]}" if numbers else "it has no trials yet"
        raise ConfigError(f"{store.root} has no trial {number} ({have})", key="TRIAL")
    result_path = store.trial_dir(number) / "result.json"
    result = read_json(result_path) if result_path.is_file() else None
    attempts: dict[int, dict[str, Any]] = {}
    for d in store.trial_dir(number).glob("attempt-*"):
        if d.name[8:].isdigit():
            attempts[int(d.name[8:])] = {f.split(".")[0]: read_json(d / f) if (d / f).is_file() else None
                                         for f in _ATTEMPT_FILES}
    for a in (result or {}).get("attempts", []):  # the result's own account of each attempt
        attempts.setdefault(int(a["attempt"]), {f.split(".")[0]: None for f in _ATTEMPT_FILES})["outcome"] = a
    return {"run": str(store.root), "number": number, "trial": read_json(path), "result": result,
            "attempts": [{"attempt": k, **v} for k, v in sorted(attempts.items())], "config": store.config,
            "live": store.live_pid() is not None}


def render(rec: dict[str, Any]) -> str:
    """The record as text: values with 4 significant digits (``--json`` has them in full)."""
    trial, res, cfg = rec["trial"], rec["result"] or {}, rec["config"]
    lines: list[tuple[str, str]] = [("run", rec["run"])]
    opt = f", optuna trial {trial['optuna_number']}" if trial.get("optuna_number") is not None else ""
    lines.append(("trial", f"{rec['number']} (study {trial.get('study')}, model {trial.get('model') or '-'}{opt})"))
    lines.append(("status", res.get("status") or ("RUNNING" if rec["live"] else "UNFINISHED (no result committed)")))
    values = res.get("values") or []
    if values:
        lines.append(("value", ", ".join(f"{m} {fmt(v)} ({d})" for m, v, d in
                                         zip(cfg["metrics"], values, cfg["directions"], strict=False))))
    # the parameters its result came from: a PBT member's after its last exploit
    lines.append(("params", _pairs(res.get("params") or trial.get("params") or {}) or "-"))
    if res.get("lineage"):
        lines.append(("began with", _pairs(trial.get("params") or {})))
    lines.append(("seed", fmt(trial.get("seed"))))
    if res.get("metrics"):
        lines.append(("metrics", _pairs(res["metrics"])))
    if res:
        total = f", {fmt(res['total_s'])} s over all attempts" if res.get("total_s") is not None else ""
        lines.append(("duration", f"{fmt(res.get('duration_s'))} s (last attempt){total}"))
        lines.append(("where", f"{res.get('platform') or '-'} (host {res.get('host') or '-'})"))
    if res.get("error"):
        lines.append(("error", str(res["error"]).strip().splitlines()[-1][:300]))
    if res.get("lineage"):
        lines.append(("lineage", f"{plural(len(res['lineage']), 'PBT exploit')} (report/lineage.csv)"))
    out = [f"{k:<10} {v}" for k, v in lines]
    out.append(f"attempts   {len(rec['attempts'])}")
    out.extend(f"  {line}" for a in rec["attempts"] for line in _attempt(a, cfg))
    out.extend(_provenance_lines(res.get("provenance")))
    out.extend(_data_lines(cfg, rec["attempts"]))
    out.extend(_config_lines(cfg))
    extra = [*_extra(trial, _TRIAL_KNOWN, "trial.json"), *_extra(res, _RESULT_KNOWN, "result.json"),
             *_extra(cfg, _CONFIG_KNOWN, "run.json")]
    if extra:
        out.append("recorded also")
        out.extend(f"  {line}" for line in extra)
    return "\n".join(out)


def _pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in d.items())


def _attempt(a: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    alloc, outcome, spec, ended = a.get("allocation") or {}, a.get("outcome") or {}, a.get("spec") or {}, \
        a.get("exit") or {}
    platform = outcome.get("platform") or alloc.get("platform") or "-"
    p = cfg.get("registry", {}).get("platforms", {}).get(platform, {})
    host = p.get("host") or ("localhost" if p.get("connection") == "local" else "-")
    slot = outcome.get("slot", alloc.get("slot"))
    gpu = outcome.get("gpu", alloc.get("gpu"))
    seconds = outcome.get("duration_s", ended.get("seconds"))
    code = outcome.get("exit_code", ended.get("exit"))
    how = outcome.get("kind") or ("running or lost" if not ended else "ended")
    text = (f"#{a['attempt']} {how}: {platform} (host {host}) slot {fmt(slot) or '-'} gpu "
            f"{fmt(gpu) or '-'}, {fmt(seconds) or '-'} s, exit {fmt(code) or '-'}")
    if spec:
        threads = spec.get("threads", 1)
        text += f", {spec.get('device', 'cpu')}, {threads} thread{'s' if threads != 1 else ''}"
    out = [text]
    if alloc.get("reason"):
        out.append(f"   routed: {alloc['reason']}")
    return out


def _data_lines(cfg: dict[str, Any], attempts: list[dict[str, Any]]) -> list[str]:
    data = dict(cfg.get("data") or {})
    spec_data = next((a["spec"]["data"] for a in reversed(attempts) if (a.get("spec") or {}).get("data")), None)
    for k, v in (spec_data or {}).items():  # the built-in data set's path and hash are known per trial
        data.setdefault(k, v)
    if not data:
        return []
    what = ", ".join(f"{k} {fmt(data[k])}" for k in ("target", "task", "cv", "folds", "time_col", "split_seed")
                     if data.get(k) is not None)
    return [f"data       {data.get('path') or data.get('builtin') or '-'}",
            f"  sha256   {data.get('sha256') or '(not recorded)'}", *([f"  {what}"] if what else [])]


def _config_lines(cfg: dict[str, Any]) -> list[str]:
    opts = cfg.get("options") or {}
    what = " ".join(cfg["command"]) if cfg.get("command") else ", ".join(
        s.get("model") or s["name"] for s in cfg["studies"])
    reg = cfg.get("registry") or {}
    shown = {"name", "models", "command", "sampler", "seed", "metrics", "direction", "registry", "data"}
    rest = ", ".join(f"{k}={_compact(v)}" for k, v in sorted(opts.items())
                     if k not in shown and v not in (None, False, [], ""))
    return ["run config",
            f"  name     {cfg['name']}",
            f"  {'command' if cfg.get('command') else 'models':<8} {what}",
            f"  sampler  {opts.get('sampler', '-')} (seed {fmt(opts.get('seed'))})",
            f"  metrics  {', '.join(f'{m} ({d})' for m, d in zip(cfg['metrics'], cfg['directions'], strict=False))}",
            f"  registry {reg.get('source', '-')}: {', '.join(reg.get('platforms', {})) or '-'}",
            f"  cwd      {cfg.get('cwd') or '-'}",
            *([f"  options  {rest}"] if rest else []), *_run_provenance(cfg.get("provenance"))]


def _provenance_lines(prov: dict[str, Any] | None) -> list[str]:
    """Where the result was made: the host's hardware, Python and libraries, its GPU, its seeds."""
    if not prov:
        return ["made on    (not recorded: a run from an older coord)"] if prov is None else []
    host, out = prov.get("host") or {}, []
    if host:
        out.append(f"made on    {host.get('hostname', '-')}: {host.get('cpu_model', '-')}, {fmt(host.get('cores'))} "
                   f"cores, {fmt(host.get('memory_gb'))} GB; {host.get('os', '-')}")
        libs = ", ".join(f"{k} {v}" for k, v in sorted((host.get("libraries") or {}).items()) if v)
        out.append(f"  python   {host.get('python', '-')} ({host.get('executable', '-')}){'; ' + libs if libs else ''}")
    else:
        out.append("made on    (the host was not probed in the session that committed it)")
    if prov.get("gpu"):
        out.append(f"  gpu      {fmt(prov['gpu'].get('index'))}: {prov['gpu'].get('model') or 'model not known'}")
    if prov.get("seeds"):
        out.append("  seeds    " + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(prov["seeds"].items())
                                           if v is not None))
    return out


def _run_provenance(prov: dict[str, Any] | None) -> list[str]:
    if not prov:
        return []
    git = prov.get("git") or {}
    where = (f"{git['commit'][:12]}{' (dirty)' if git.get('dirty') == 'true' else ''}" if git.get("commit")
             else "(not a git repository)")
    me = prov.get("coordinator") or {}
    return [f"  coord    {prov.get('coord_version', '-')} on {me.get('hostname', '-')} "
            f"(python {me.get('python', '-')}, optuna {me.get('optuna', '-')})",
            f"  registry sha256 {prov.get('registry_sha256', '-')}",
            f"  git      {where}"]


def _extra(d: dict[str, Any], known: set[str], where: str) -> list[str]:
    out = []
    for k in sorted(set(d) - known):
        v = d[k]
        if isinstance(v, dict) and v:
            out.append(f"{k} ({where}):")
            out.extend(f"  {sub}: {_compact(x)}" for sub, x in sorted(v.items()))
        else:
            out.append(f"{k} ({where}): {_compact(v)}")
    return out


def _compact(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def show(path: Path, number: int) -> dict[str, Any]:
    return trial_record(RunStore.open(path), number)
