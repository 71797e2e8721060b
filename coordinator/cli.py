"""The ``coord`` command. The only module that imports click (with its help layout,
cli_help.py, and the commands over recorded runs, cli_runs.py), and the only place errors
become messages and exit codes. Heavy libraries are imported inside commands, so
``coord --help`` stays fast."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from coordinator import cli_runs
from coordinator.cli_compare import COMPARE_EXAMPLES, COMPARE_SECTIONS, compare_options
from coordinator.cli_help import SEARCH_EXAMPLES, SEARCH_SECTIONS, SectionedCommand, budget_options, sharing_options
from coordinator.cli_tracking import (
    dashboard,
    pop_tracking,
    queue,
    summary_line,
    sync,
    tracking_options,
)
from coordinator.errors import CoordError

log = logging.getLogger("coordinator")


class _Group(click.Group):
    """Turns every CoordError into one readable line and its exit code, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CoordError as exc:
            click.echo(f"coord: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside the search loop (which stops cleanly itself)
            click.echo("coord: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coord")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """coord: one hyperparameter-optimisation cluster from the machines you own."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # paramiko logs each broken or stalled connection as a multi-line traceback; coord says
    # what happened in one line of its own (-vv shows paramiko's detail again)
    logging.getLogger("paramiko").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)  # SIGTERM is a Ctrl-C: a summary and the resume hint


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


REGISTRY_HELP = "Hardware registry YAML [env COORD_REGISTRY] (default: this machine)."


@main.command(cls=SectionedCommand, sections=SEARCH_SECTIONS, examples=SEARCH_EXAMPLES,
              short_help="Run a hyperparameter search.")
@click.option("--model", "models", multiple=True, help="Built-in model: xgboost, random_forest, glm, mlp "
              "(repeat to compare several in one run). Default: xgboost.")
@click.option("--command", help="Tune your own script instead, e.g. \"python train.py\".")
@click.option("--model-type", help="Routing key for --command trials (default: Custom).")
@click.option("--space", type=click.Path(), help="Search space YAML (default: the model's own).")
@click.option("--registry", envvar="COORD_REGISTRY", type=click.Path(), help=REGISTRY_HELP)
@click.option("--trials", type=click.IntRange(min=1), help="Trials per model (default 30; grid: its size).")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop starting new trials after SECONDS.")
@budget_options
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler, split and trial seed base.")
@click.option("--sampler", default="tpe", show_default=True,
              type=click.Choice(["tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2"]),
              help="How the next configuration is chosen (grid: every combination of the space; nsga2: "
              "several --metric).")
@click.option("--metric", "metrics", multiple=True,
              help="Objective (repeat for multi-objective). Default: auc, or rmse for regression.")
@click.option("--direction", type=click.Choice(["maximize", "minimize"]),
              help="Needed only when the metric's name does not tell.")
@click.option("--parallel", type=click.IntRange(min=1), envvar="COORD_PARALLEL",
              help="Trials at once (default: every slot).")
@click.option("--data", type=click.Path(), help="CSV file (default: the built-in team-features data).")
@click.option("--target", help="Column to predict.")
@click.option("--positive-class", help="The target's class that counts as positive (default: 1 of 0/1, True, "
              "else the last in sorted order, e.g. 'yes' of no/yes).")
@click.option("--task", default="auto", show_default=True,
              type=click.Choice(["auto", "classification", "regression"]),
              help="What --target is (auto: two distinct values make it classification).")
@click.option("--cv", type=click.Choice(["holdout", "kfold", "walk-forward"]),
              help="Validation (default: walk-forward with --time-col, else holdout).")
@click.option("--time-col", help="Time column for walk-forward validation (e.g. season).")
@click.option("--folds", type=int, default=3, show_default=True, help="k-fold folds / walk-forward steps.")
@click.option("--run-dir", type=click.Path(), help="Exact run directory (default: RUNS/<name>-<time>).")
@click.option("--runs", "runs_root", default="runs", show_default=True, envvar="COORD_RUNS_DIR",
              help="Where run directories go [env COORD_RUNS_DIR].")
@click.option("--name", help="Run name (default: the model).")
@click.option("--storage", envvar="COORD_STORAGE", help="Optuna storage URL (default: a journal file in the run).")
@click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries of a failed trial (elsewhere when another host can run it) before it is FAILED.")
@click.option("--trial-timeout", type=click.FloatRange(min=0), help="Kill a trial after SECONDS.")
@click.option("--pruner", default="none", show_default=True,
              type=click.Choice(["none", "median", "percentile", "asha", "hyperband", "threshold", "patient"]),
              help="Early stopping on the runners' per-step reports (boosting rounds, epochs).")
@click.option("--min-resource", type=click.IntRange(min=1),
              help="Pruner: steps before a trial can be stopped (default: XGBoost 25 rounds, MLP 2 epochs, "
              "random forest 50 trees).")
@click.option("--max-resource", type=click.IntRange(min=1), help="Hyperband: the most steps a trial runs.")
@click.option("--reduction-factor", type=click.IntRange(min=2), default=3, show_default=True,
              help="ASHA/Hyperband: each rung keeps the best 1/FACTOR of trials; rungs at min-resource x "
              "FACTOR^k steps.")
@click.option("--prune-threshold", type=float, help="Threshold pruner: stop trials worse than this.")
@click.option("--host-retry", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds before a host that went down is tried again.")
@click.option("--checkpoint-every", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between checkpoints of a built-in trial (0: every step); a retry resumes there.")
@click.option("--pbt", is_flag=True, help="Population-based training: the trials train in segments; after each, "
              "the worst quarter copy a better trial's checkpoint and perturb its parameters.")
@click.option("--pbt-interval", type=click.IntRange(min=1),
              help="Steps per PBT segment (default: twice the model's first rung: XGBoost 50 rounds, MLP 4 epochs).")
@click.option("--placement", type=click.Choice(["learned", "static"]), default="learned", show_default=True,
              help="learned: each trial goes where it should finish first (learned speeds); static: rule order.")
@click.option("--figure-width", type=click.FloatRange(2, 12), help="Width of the report's search plots in "
              "inches (default 4.5: a thesis column); coord report keeps it.")
@click.option("--caption-prefix", default="", help="Text the report's LaTeX captions start with (e.g. 'Chapter 4: "
              "'); coord report keeps it.")
@click.option("--label-prefix", default="", help="Text the report's LaTeX labels start with (e.g. 'ch4:'); coord "
              "report keeps it.")
@click.option("--quiet", is_flag=True, help="Only the final summary.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts.")
@sharing_options
@click.option("--notify", metavar="COMMAND", help="Run COMMAND on the search's end, a burst of failures, a host "
              "going down and 80% of a budget; the event is JSON on its stdin.")
@tracking_options()
def search(quiet: bool, as_json: bool, **kw: Any) -> None:
    """Run a hyperparameter search: Optuna proposes configurations, the registry's
    platforms run them, and the run directory records every trial and the reports."""
    from coordinator.app import run_search
    from coordinator.config.experiment import SearchOptions

    tracking = pop_tracking(kw)
    kw["hard"] = bool(kw.get("hard"))
    fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in kw.items()}
    opts = SearchOptions(**fields)
    here = os.getcwd()
    _finish(run_search(opts, _mode(quiet, as_json), tracking=tracking), as_json, here)


@main.command(cls=SectionedCommand, sections=COMPARE_SECTIONS, examples=COMPARE_EXAMPLES,
              short_help="Compare models: calibrated, seeded, with tables and figures.")
@compare_options
def compare(quiet: bool, as_json: bool, **kw: Any) -> None:
    """Compare models out of sample: each model x configuration x seed is one job (every
    calibration, every walk-forward fold), run on the registry's platforms like a search's
    trials (retried, checkpointed, resumable with coord resume); then the metrics, the
    season-block bootstrap, LaTeX tables, figures and an HTML report in RUN/compare/."""
    from coordinator.app import run_compare
    from coordinator.config.compare import CompareRequest

    here = os.getcwd()
    fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in kw.items()}
    _finish(run_compare(CompareRequest(**fields), _mode(quiet, as_json)), as_json, here)


@main.command(short_help="Continue a run whose coordinator stopped or died.")
@click.argument("run", type=click.Path())
@click.option("--quiet", is_flag=True, help="Only the final summary.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts.")
@tracking_options(register=False)
@budget_options
def resume(run: str, quiet: bool, as_json: bool, **kw: Any) -> None:
    """Continue RUN after its coordinator stopped or died (even kill -9): re-attach to
    trials still running, collect those that finished, re-run lost ones with the same
    parameters, then go on with the search. Budget options given here replace the run's
    (a raised --budget-cost continues a search its budget ended)."""
    from coordinator.app import resume_run

    here = os.getcwd()  # resume_run moves to the run's own working directory
    tracking = pop_tracking(kw)
    budget = {k: v for k, v in kw.items() if v is not None}
    _finish(resume_run(Path(run), _mode(quiet, as_json), tracking=tracking, budget=budget), as_json, here)


def _mode(quiet: bool, as_json: bool) -> str:
    return "json" if as_json else "quiet" if quiet else ("live" if sys.stdout.isatty() else "plain")


def _finish(result: dict[str, Any], as_json: bool, here: str) -> None:
    if result.get("interrupted"):
        result = {**result, "resume_command": _resume_command(result["run_dir"], here)}
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        _print_summary(result)
    if result.get("interrupted") and not result.get("stopped_hard"):  # a budget's end is an end, not Ctrl-C
        sys.exit(130)


def _resume_command(run_dir: str, here: str) -> str:
    """The exact command that continues the run from ``here`` (where coord was started):
    relative when the run lies below it, else absolute."""
    rel = os.path.relpath(run_dir, here)
    return f"coord resume {shlex.quote(run_dir if rel.startswith('..') else rel)}"


def _report_command(resume_command: str) -> str:
    return "coord report " + resume_command.removeprefix("coord resume ")


def _print_summary(result: dict[str, Any]) -> None:
    from coordinator.reporting.fmt import fmt  # the one way a value is shown: progress, summary, status

    click.echo(f"\nrun: {result['run_dir']}")
    click.echo(f"trials: {result['complete']} complete, {result['pruned']} pruned, {result['failed']} failed, "
               f"{result['cancelled']} cancelled, {result['retries']} retries, {result['elapsed_s']:.1f}s")
    if (use := result.get("usage")) is not None:
        from coordinator.store.usage import usage_line

        click.echo(f"used: {usage_line(use['machine_hours'], use['gpu_hours'], use['cost'], use['currency'])}")
    compared = result.get("comparison")  # coord compare: its own table instead of a best trial
    if result.get("best_value") is not None and compared is None:
        model = f", {result['best_model']}" if result.get("best_model") else ""
        params = ", ".join(f"{k}={fmt(v)}" for k, v in (result.get("best_params") or {}).items())
        click.echo(f"best {result['metric']}: {fmt(result['best_value'])} (trial {result['best_number']}{model}"
                   f"{': ' + params if params else ''})")
    for kind, path in result["files"].items():
        if compared is None or kind.startswith("compare:") or kind == "csv":
            click.echo(f"  {kind:<24} {path}")
    for line in compared or ():
        click.echo(line)
    if (line := summary_line(result)) is not None:
        click.echo(line)
    if result.get("ended_by"):
        click.echo(f"ended: {result['ended_by']}")
    if result.get("stopped_hard"):
        from coordinator.schedule.budget import raising_option

        click.echo(f"--hard: the running trials were stopped and kept; continue them with a raised budget: "
                   f"{result['resume_command']} {raising_option(result.get('ended_by') or '')} MORE")
    elif result.get("interrupted"):
        click.echo(f"interrupted: unfinished trials are kept; continue with: {result['resume_command']}")
    if result.get("interrupted"):
        click.echo(f"figures left out to stop at once; draw them with: {_report_command(result['resume_command'])}")


@main.command(short_help="Show a run's state, trial counts and best value.")
@click.argument("run", type=click.Path())
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object for scripts (numbers: best_value, best_trial; null when none).")
def status(run: str, as_json: bool) -> None:
    """Counts and best value of RUN, from its run directory (live or finished)."""
    from coordinator.app_status import run_status
    from coordinator.reporting.fmt import fmt

    info = run_status(Path(run))
    if as_json:
        click.echo(json.dumps(info, default=str))
        return
    best, number = info.pop("best_value"), info.pop("best_trial")
    info["best"] = f"{fmt(best)} (trial {number})" if best is not None else "-"
    from coordinator.store.usage import usage_line

    hours, gpu, cost, currency = (info.pop(k) for k in ("machine_hours", "gpu_hours", "cost", "currency"))
    info["used"] = usage_line(hours, gpu, cost, currency)
    for key, value in info.items():
        click.echo(f"{key:<12} {value}")


@main.command(short_help="Show where each model's trials would run.")
@click.option("--model", "models", multiple=True, help="Model(s) to plan for (default: all built-in).")
@click.option("--registry", envvar="COORD_REGISTRY", type=click.Path(), help=REGISTRY_HELP)
@click.option("--space", type=click.Path(), help="Plan for this search space (its procs: processes per trial).")
def plan(models: tuple[str, ...], registry: str | None, space: str | None) -> None:
    """Show where each model type's trials would run, with slots and fallbacks, and warn
    when a local platform declares more cores, memory or slots than this machine has."""
    from coordinator.app import plan_text

    click.echo(plan_text(models, registry, space))


@main.command(short_help="Check a registry or search-space YAML file.")
@click.argument("file", type=click.Path())
@click.option("--kind", type=click.Choice(["auto", "registry", "space"]), default="auto", show_default=True,
              help="What FILE is (auto: a registry has 'platforms', a search space 'params').")
@click.option("--model", help="Check a search space for this built-in model, as coord search --model does "
                              "(default: the space's own 'model:').")
def validate(file: str, kind: str, model: str | None) -> None:
    """Check a registry or search-space YAML file; print what it defines."""
    from coordinator.validate import validate_file

    click.echo(validate_file(file, kind, model))


@main.group(invoke_without_command=True, short_help="Check every host of the registry (the doctor).")
@click.option("--registry", envvar="COORD_REGISTRY", type=click.Path(), help=REGISTRY_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@click.option("--run", "run_dir", type=click.Path(), help="Also show the speeds measured in this run.")
@click.pass_context
def hosts(ctx: click.Context, registry: str | None, as_json: bool, run_dir: str | None) -> None:
    """Pre-flight doctor: reachability, Python and libraries, cores, memory, disk, GPUs, clock skew."""
    ctx.obj = registry
    if ctx.invoked_subcommand is not None:
        return
    from coordinator.backends.hosts import probe_all, render_table

    rows = probe_all(_registry(registry))
    speeds = None
    if run_dir:
        from coordinator.reporting.tables import host_table
        from coordinator.store.rundir import RunStore

        speeds = host_table(RunStore.open(Path(run_dir)))
    if as_json:
        click.echo(json.dumps({"hosts": rows, "speeds": speeds} if speeds is not None else rows, indent=2,
                              default=str))
    else:
        click.echo(render_table(rows))
        if speeds is not None:
            click.echo(f"\nmeasured in {run_dir}:")
            click.echo(f"{'platform':<16} {'model':<14} {'trials':>6} {'busy s':>9} {'util':>7} {'median s':>9}")
            for r in speeds:
                click.echo(f"{r['platform']:<16} {r['model']:<14} {r['trials']:>6} {r['busy_s']:>9} "
                           f"{r['utilisation']:>7} {r['median_s'] if r['median_s'] is not None else '-':>9}")
    if not all(r["ok"] for r in rows):
        ctx.exit(4)


@hosts.command(short_help="Record PLATFORM's host key in known_hosts, after asking.")
@click.argument("platform")
@click.option("--registry", "own_registry", type=click.Path(),
              help="Hardware registry YAML (may also come before trust: coord hosts --registry FILE trust X).")
@click.option("--yes", is_flag=True, help="Trust without asking (only after checking the fingerprint).")
@click.pass_obj
def trust(registry: str | None, platform: str, own_registry: str | None, yes: bool) -> None:
    """Show PLATFORM's host key fingerprint and record it in known_hosts on confirmation,
    replacing a changed key the host had there."""
    from coordinator.backends.sshconn import scan_host_key
    from coordinator.config.knownhosts import add_known_host, check_known_hosts, fingerprint, known_hosts_path
    from coordinator.errors import ConfigError

    reg = _registry(own_registry or registry)  # no envvar here: the group's --registry already reads it
    remote = [k for k, q in reg.platforms.items() if q.connection == "ssh" or (q.connection == "slurm" and q.host)]
    if platform not in remote:  # an SSH host, or a SLURM login node reached over SSH
        raise ConfigError(f"no ssh platform {platform!r}", key="platform", valid=remote)
    p = reg.platforms[platform]
    path = known_hosts_path(reg)
    check_known_hosts(path)  # a malformed line: said before asking anything
    key = scan_host_key(p)
    click.echo(f"{platform} ({p.host}:{p.port}) offers a {key.get_name()} key")
    click.echo(f"  fingerprint: {fingerprint(key)}")
    click.echo("  compare it with the host's own: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
    if not yes and not click.confirm(f"Trust this key and add it to {path}?", default=False):
        click.echo("not trusted; nothing written")
        sys.exit(1)
    done, old = add_known_host(path, p, key)
    if done == "replaced":
        click.echo(f"trusted: replaced the changed key ({', '.join(old)}) with this one in {path}")
    else:
        click.echo(f"trusted: {'added to' if done == 'added' else 'already in'} {path}")


def _registry(path: str | None) -> Any:
    from coordinator.config.localhost import default_registry
    from coordinator.config.registry import load_registry

    return load_registry(path) if path else default_registry()


main.add_command(cli_runs.runs)
main.add_command(cli_runs.report)
main.add_command(cli_runs.show)
main.add_command(cli_runs.rerun)
main.add_command(sync)
main.add_command(dashboard)
main.add_command(queue)
