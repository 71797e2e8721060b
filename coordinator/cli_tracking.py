"""The tracking side of the ``coord`` command: the MLflow options of ``search`` and
``resume``, ``coord sync`` and ``coord dashboard``. Imports nothing heavy: MLflow and
optuna-dashboard are loaded only when used."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

TRACKING_SECTION = ("Tracking (MLflow)", ["mlflow", "mlflow_uri", "register_as"])
URI_HELP = ("MLflow tracking URI [env MLFLOW_TRACKING_URI] (default: sqlite:///RUNS/mlflow.db, shared by "
            "every run under the runs folder).")


def tracking_options(register: bool = True) -> Callable[[Any], Any]:
    """``--mlflow/--no-mlflow`` [env COORD_MLFLOW], ``--mlflow-uri``, and ``--register-as``."""

    def decorate(f: Any) -> Any:
        if register:
            f = click.option("--register-as", metavar="NAME",
                             help="Registered model name for each search's best model (default: the run "
                             "name; NAME-<model> when a run compares several).")(f)
        f = click.option("--mlflow-uri", metavar="URI", help=URI_HELP)(f)
        return click.option("--mlflow/--no-mlflow", "mlflow", default=True, envvar="COORD_MLFLOW",
                            help="Log every trial to MLflow as it ends (default: on) [env COORD_MLFLOW=0 "
                            "turns it off].")(f)
    return decorate


def pop_tracking(kw: dict[str, Any]) -> Any:
    """Take the tracking options out of a command's keyword arguments."""
    from coordinator.tracking.settings import TrackingOptions

    return TrackingOptions(enabled=kw.pop("mlflow", True), uri=kw.pop("mlflow_uri", None),
                           register_as=kw.pop("register_as", None))


def summary_line(result: dict[str, Any]) -> str | None:
    """The search summary's MLflow line, or None when tracking was off."""
    t = result.get("tracking")
    if not t:
        return None
    models = ", ".join(f"{m['name']} v{m['version']}" for m in t.get("models") or [])
    state = "" if t.get("complete") else " (incomplete: coord sync RUN completes it)"
    return f"  {'mlflow':<24} {t['uri']} (experiment {t.get('experiment')}" + \
        (f"; registered {models}" if models else "") + f"){state}"


@click.command(short_help="Replay runs into MLflow (idempotent).")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--mlflow-uri", metavar="URI", help="MLflow tracking URI [env MLFLOW_TRACKING_URI] (default: where "
              "the run was tracked, else sqlite:///RUNS/mlflow.db).")
@click.option("--register-as", metavar="NAME", help="Registered model name (default: as the search had it).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def sync(runs: tuple[str, ...], mlflow_uri: str | None, register_as: str | None, as_json: bool) -> None:
    """Log each RUN directory to MLflow: a parent run per search, a child run per trial,
    the best models registered. Runs and trials are found again by their tags, so syncing
    twice, or after a search that tracked live, creates nothing twice and fills in what a
    failure left out."""
    from coordinator.reporting.fmt import plural
    from coordinator.tracking.follower import sync_run

    for run in runs:
        out = sync_run(Path(run), mlflow_uri, register_as)
        if as_json:
            click.echo(json.dumps(out, default=str))
            continue
        models = ", ".join(f"{m['name']} v{m['version']}" for m in out["models"]) or "none"
        click.echo(f"{run}: {plural(out['trials'], 'trial')} in {out['uri']} (experiment {out['experiment']}), "
                   f"{out['created']} new; registered models: {models}; {out['seconds']:.1f}s")


@click.command(short_help="Browse a run's study in optuna-dashboard (read-only, 127.0.0.1).")
@click.argument("run", type=click.Path())
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port on 127.0.0.1 (reach it from elsewhere through an SSH tunnel).")
def dashboard(run: str, port: int) -> None:
    """Serve optuna-dashboard on RUN's study storage at http://127.0.0.1:PORT/, read-only
    (the page cannot change the study) and safe while the search runs; Ctrl-C stops it."""
    from coordinator.store.rundir import RunStore
    from coordinator.tracking.dashboard import HOST, open_read_only, serve

    RunStore.open(Path(run))  # a path that is not a run: the store's one-line error
    _, studies = open_read_only(Path(run))
    def ready() -> None:  # printed once the port listens: the URL answers when shown
        click.echo(f"dashboard: http://{HOST}:{port}/dashboard/ ({', '.join(studies) or 'no study yet'}; "
                   "read-only; Ctrl-C stops it)", err=False)
    try:
        serve(Path(run), port, ready)
    except OSError as exc:  # the port is taken: one line
        from coordinator.errors import ConfigError

        raise ConfigError(f"coord dashboard cannot listen on {HOST}:{port}: {exc.strerror or exc}; "
                          "try another --port") from None


@click.command(short_help="Searches sharing the registry's hosts.")
@click.option("--registry", envvar="COORD_REGISTRY", type=click.Path(),
              help="Hardware registry YAML [env COORD_REGISTRY] (default: this machine).")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def queue(registry: str | None, as_json: bool) -> None:
    """Read the slot leases on every local and SSH host of the registry (nothing is written):
    which searches hold its slots or wait for them, their --priority, and whether each
    coordinator is alive. A coordinator that died shows as gone until its running trials end."""
    from coordinator.backends.queue_view import queue_rows, render
    from coordinator.config.localhost import default_registry
    from coordinator.config.registry import load_registry

    rows = queue_rows(load_registry(registry) if registry else default_registry())
    click.echo(json.dumps(rows, indent=2) if as_json else render(rows))
