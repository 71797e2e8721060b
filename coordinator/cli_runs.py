"""The commands over recorded runs: ``coord runs`` (the experiment registry), ``coord report``
(one run's reports, or several runs merged into one set of tables) and ``coord show RUN
TRIAL``. Registered on the ``coord`` group in cli.py, whose error handling they share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from coordinator.errors import ConfigError

if TYPE_CHECKING:
    from coordinator.store.rundir import RunStore

RUNS_HELP = "The runs folder [env COORD_RUNS_DIR]."


_runs_option = click.option("--runs", "runs_root", default="runs", show_default=True, envvar="COORD_RUNS_DIR",
                            help=RUNS_HELP)


@click.command(short_help="List every run: status, trials, best value, hosts, time.")
@_runs_option
@click.option("--json", "as_json", is_flag=True, help="A JSON list for scripts (full precision, UTC start times).")
def runs(runs_root: str, as_json: bool) -> None:
    """Every run under the runs folder, oldest first: name, models, status (running,
    finished, interrupted, unfinished, or damaged with the reason), trial counts, best
    value, hosts used, start and duration. Reads run.json and the trials' results, never
    a whole event log."""
    from coordinator.reporting import runs as registry

    found = registry.list_runs(Path(runs_root))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in found], indent=2))
    elif not found:
        click.echo(f"no runs in {runs_root} (coord search makes them; --runs DIR or COORD_RUNS_DIR to look "
                   "elsewhere)")
    else:
        click.echo(registry.render(found))


@click.command(short_help="Rebuild a run's reports, or merge several runs into one set.")
@click.argument("run_paths", metavar="RUN...", nargs=-1, type=click.Path())
@click.option("-o", "--out", type=click.Path(), help="Merge the runs into this folder (CSV and LaTeX with a run "
              "column); needed for more than one run.")
@click.option("--all", "all_runs", is_flag=True, help="Merge every run under --runs.")
@click.option("--name", "names", multiple=True, help="Merge every run of this name under --runs (repeatable).")
@click.option("--figure-width", type=click.FloatRange(2, 12), help="One RUN: width of the search plots in inches "
              "(default: the width the search used, else 4.5).")
@click.option("--caption-prefix", help="Text every LaTeX caption starts with, e.g. 'Chapter 4: ' (default: the "
              "search's --caption-prefix).")
@click.option("--label-prefix", help="Text every LaTeX label starts with, e.g. 'ch4:' (default: the search's "
              "--label-prefix).")
@_runs_option
def report(run_paths: tuple[str, ...], out: str | None, all_runs: bool, names: tuple[str, ...],
           figure_width: float | None, caption_prefix: str | None, label_prefix: str | None,
           runs_root: str) -> None:
    """With one RUN: (re)build trials.csv, best.json, LaTeX tables, the search plots (PDF
    and PNG: history, parameter importances, parallel coordinates, slices, timeline, Pareto
    front) and the offline page index.html in RUN/report (and, for a coord compare run,
    every output in RUN/compare from its jobs' predictions). With several RUNs, --all or
    --name and -o DIR: one set of tables over them all in DIR: every trial, a per-model
    summary, the top configurations and per-host time, each with its run. The same runs give
    the same bytes."""
    from coordinator.app_compare import is_compare_run
    from coordinator.app_compare import write_outputs as compare_outputs
    from coordinator.store.rundir import RunStore

    if not run_paths and not all_runs and not names:
        raise click.UsageError("give a RUN, several RUNs with -o DIR, --all or --name NAME")
    if len(run_paths) == 1 and out is None and not all_runs and not names:
        from coordinator.reporting.tables import write_report

        store = RunStore.open(Path(run_paths[0]))
        _note_live(store, run_paths[0])
        files = write_report(store, figure_width, caption_prefix=caption_prefix, label_prefix=label_prefix)
        if is_compare_run(store.config):  # a coord compare run: its comparison too, from the saved predictions
            files.update(compare_outputs(store)[0])
        _echo_files(files)
        return
    if figure_width is not None:
        raise ConfigError("merged reports have no plots; --figure-width is for one RUN's report",
                          key="--figure-width")
    if out is None:
        raise ConfigError("merging runs writes one set of tables: give the folder for them, e.g. -o merged",
                          key="-o/--out")
    from coordinator.reporting import runs as registry
    from coordinator.reporting.merged import write_merged

    paths = [Path(p) for p in run_paths]
    if all_runs or names:
        found, damaged = registry.runs_named(Path(runs_root), names)
        for s in damaged:
            click.echo(f"coord: note: skipped a damaged run: {s.reason}", err=True)
        if names and not found:
            known = sorted({s.name for s in registry.runs_named(Path(runs_root), ())[0] if s.name})
            raise ConfigError(f"no run named {', '.join(names)} in {runs_root}", key="--name", valid=known or None)
        if not found:
            raise ConfigError(f"no readable runs in {runs_root}", key="--all")
        paths.extend(Path(s.path) for s in found)
    for p in paths:
        _note_live(RunStore.open(p), str(p))
    _echo_files(write_merged(paths, Path(out).absolute(), caption_prefix or "", label_prefix or ""))


def _note_live(store: RunStore, name: str) -> None:
    if store.live_pid():
        click.echo(f"coord: note: {name} is still running; this report covers the trials committed so far",
                   err=True)


def _echo_files(files: dict[str, Path]) -> None:
    for kind, path in files.items():
        click.echo(f"{kind:<24} {path}")


@click.command(short_help="Show everything a run recorded for one trial.")
@click.argument("run", type=click.Path())
@click.argument("trial", type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="The records as one JSON object (full precision).")
def show(run: str, trial: int, as_json: bool) -> None:
    """TRIAL of RUN as recorded: parameters, seed, status, metrics, each attempt (platform,
    host, slot, GPU, duration, exit), the data's sha256 and the run's configuration."""
    from coordinator.reporting import show as trial_show

    record = trial_show.show(Path(run), trial)
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True, default=str))
    else:
        click.echo(trial_show.render(record))


@click.command(short_help="Train recorded trials again and check they give the same metrics.")
@click.argument("run", type=click.Path())
@click.argument("trials", type=click.IntRange(min=0), nargs=-1)
@click.option("--all", "all_trials", is_flag=True, help="Every complete trial of RUN.")
@click.option("--host", metavar="PLATFORM", help="Rerun on this platform of the registry (default: where it ran).")
@click.option("--registry", envvar="COORD_REGISTRY", type=click.Path(),
              help="Registry YAML for --host [env COORD_REGISTRY] (default: the run's, else this machine).")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the rerun's files in this folder.")
@click.option("--json", "as_json", is_flag=True, help="The checks as JSON (every digit).")
def rerun(run: str, trials: tuple[int, ...], all_trials: bool, host: str | None, registry: str | None,
          keep: str | None, as_json: bool) -> None:
    """Train TRIAL(S) of RUN again from their recorded recipes (same parameters, seeds and
    data, the data's sha256 checked first) and print the recorded and new metrics side by
    side. The run itself is only read. Deterministic CPU models (GLM, random forest,
    XGBoost, the MLP) must match bit for bit; a trial that cannot (trained on a GPU, resumed
    from a checkpoint, a --command script) says why. Exit 1 when a trial that should match
    does not, or a rerun fails."""
    from coordinator import rerun as reruns

    if bool(trials) == all_trials:
        raise ConfigError("name the trials to rerun, or give --all (not both)", key="TRIAL")
    checks = reruns.rerun(Path(run), None if all_trials else list(trials), host, registry,
                          Path(keep) if keep else None)
    if as_json:
        click.echo(json.dumps([c.to_json() for c in checks], indent=2, sort_keys=True))
    else:
        click.echo(reruns.render(Path(run), checks))
    if any(c.bad for c in checks):
        raise click.exceptions.Exit(1)
