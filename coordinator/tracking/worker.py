"""The tracking process: follows one run directory and logs it to MLflow.

Started by ``follower.Follower`` as ``python -m coordinator.tracking.worker RUN_DIR``, at
low priority (``nice`` 10), with the tracking URI in ``MLFLOW_TRACKING_URI``. A process
of its own, not a thread: MLflow's import, the database's creation and every call to it
then cost the coordinator's loop no GIL time, and take a core only when the trials leave
one free. It reads only what the loop has committed (``trials/N/result.json``, written
atomically, and ``events.jsonl``), about once a second and at once when the coordinator
writes ``w`` on its stdin (a trial ended). ``f`` on stdin asks for the final pass (the
searches' end, the best models), after which it prints its summary and exits; a bare end
of stdin (the coordinator died) ends it at once, so it never races a resumed coordinator.

Its messages go to the coordinator as JSON lines on stdout (``{"warning": ...}``, then
``{"summary": ...}``), which logs them as its own: one warning when MLflow fails (then
retried with backoff, never raised), one when it works again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from coordinator.store.rundir import RunStore
from coordinator.tracking import settings
from coordinator.tracking.mlflowlog import Syncer
from coordinator.tracking.models import log_best_models
from coordinator.tracking.runview import RunView

POLL_S = 1.0
MAX_BACKOFF_S = 30.0
FINAL_RETRY_S = 20.0  # a final pass that keeps failing (the server is down) gives up after this
NICE = 10


def _tags(config: dict[str, Any], git: dict[str, str]) -> tuple[dict[str, str], dict[str, str],
                                                              dict[str, dict[str, str]]]:
    """Tags on every run (the git state), on the searches' runs (coord's host: Python and
    libraries), and ``host.*`` tags for trials of local platforms that ran with this very
    Python (the same libraries, then)."""
    versions = settings.versions()
    coordinator = {f"coord.host.{k}": v for k, v in versions.items()}
    extra: dict[str, str] = {}
    if git.get("commit"):
        extra.update({"mlflow.source.git.commit": git["commit"], "coord.git_commit": git["commit"],
                      "coord.git_dirty": git.get("dirty", "")})
    hosts = {}
    for key, p in ((config.get("registry") or {}).get("platforms") or {}).items():
        python = str(p.get("python") or "")
        if p.get("connection") == "local" and python and \
                os.path.realpath(python) == os.path.realpath(sys.executable):
            hosts[key] = {f"host.{k}": v for k, v in versions.items()}
    return extra, coordinator, hosts


def client(uri: str) -> Any:
    settings.quiet_loggers()
    from mlflow import MlflowClient

    settings.quiet_loggers()  # importing mlflow configured its loggers: quiet them again
    with settings.store_lock(uri) as local:
        mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if local:  # a SQLite store: made (or migrated) now, by one process at a time
            mlflow_client.search_experiments(max_results=1)
            mlflow_client.search_registered_models(max_results=1)
    return mlflow_client


def syncer(run_dir: Path, uri: str, mlflow_client: Any) -> Syncer:
    store = RunStore.open(run_dir)
    extra, coordinator, hosts = _tags(store.config, dict(settings.recorded(run_dir).get("git") or {}))
    view = RunView(store, settings.run_key(run_dir), extra, hosts, coordinator)
    return Syncer(mlflow_client, view, settings.artifact_root(uri))


def sync_pass(sync: Syncer, final: bool, uri: str, register_as: str | None) -> list[dict[str, str]]:
    """One pass: the searches' parent runs, every committed trial not logged yet, and (final)
    the searches' end and their best models. Raises what MLflow raises."""
    if sync.loaded and not final and not sync.pending():
        return []
    sync.view.refresh()
    sync.ensure_parents()
    for rec in sync.pending():
        sync.sync_trial(rec)
    if not final:
        return []
    sync.finish()
    return log_best_models(sync, uri, register_as)


def _say(**message: Any) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def _reason(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:300]


class _Inbox:
    """The coordinator's words on stdin: ``w`` (look now), ``f<seconds>`` (the final pass,
    retried for at most that long), end of input (it died)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.final: float | None = None  # the final pass's retry budget, once asked for
        self.gone = False

    def wait(self, seconds: float) -> None:
        if self.final is not None or self.gone:
            time.sleep(seconds)
            return
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            data = os.read(self.fd, 4096)
            self.gone = not data
            if b"f" in data:
                word = data[data.index(b"f") + 1:].split(b"\n", 1)[0]
                self.final = float(word) if word.strip() else FINAL_RETRY_S


def run(run_dir: Path, uri: str, register_as: str | None) -> int:
    shown, inbox = settings.redact(uri), _Inbox()
    sync: Syncer | None = None
    failure: str | None = None
    delay, give_up = POLL_S, float("inf")
    models: list[dict[str, str]] = []
    while True:
        inbox.wait(delay)
        if inbox.gone and inbox.final is None:
            return 0  # the coordinator died: a resumed one starts its own follower
        final = inbox.final is not None
        try:
            if sync is None:
                git = settings.git_state(RunStore.open(run_dir).config.get("cwd"))
                settings.remember(run_dir, uri, register_as, git)
                sync = syncer(run_dir, uri, client(uri))
            models = sync_pass(sync, final, uri, register_as) or models
            if failure is not None:
                _say(warning=f"MLflow tracking to {shown} works again; caught up")
                failure = None
            delay = POLL_S
            if final:
                _say(summary={"complete": True, "models": models, "failure": None})
                return 0
        except Exception as exc:  # never into the search: said once, retried
            if failure is None:
                _say(warning=f"MLflow tracking to {shown} failed ({_reason(exc)}); retrying in the background. "
                     f"The search goes on; coord sync {run_dir} replays what is missing")
            failure = _reason(exc)
            if sync is not None:
                sync.loaded = False  # what a cut-short pass made is found again by its tags
            delay = min(MAX_BACKOFF_S, delay * 2)
            if final:
                give_up = min(give_up, time.monotonic() + (inbox.final or 0.0))
                if time.monotonic() >= give_up:
                    _say(summary={"complete": False, "models": models, "failure": failure})
                    return 0
                delay = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coordinator.tracking.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--register-as")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    # a stray SIGINT (its session has no terminal) must not cut a pass short: the coordinator's
    # ``f`` or its end of stdin is what ends this process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    import logging

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("coordinator").setLevel(logging.DEBUG)
    return run(args.run_dir, os.environ["MLFLOW_TRACKING_URI"], args.register_as)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # everything is logged (each MLflow call is its own transaction, nothing is queued) and
    # the summary is out; Python's teardown of MLflow's modules and its database engine then
    # takes a second more (measured: 1.0 s, in C), at the end of every search that waits for it
    os._exit(code)
