"""MLflow tracking that never slows or endangers the search.

A ``Follower`` is a thread beside the coordinator loop. It reads only what the loop has
committed to the run directory (``trials/N/result.json``, written atomically, and
``events.jsonl``), about once a second and at once after each trial ends, and logs it to
MLflow (``mlflowlog``). MLflow is imported on that thread, so its start-up never delays
the first trial. A failure (server down, database locked, disk full, a value MLflow
refuses) is logged once, as one warning, and the pass is retried with backoff until it
succeeds; nothing is raised into the search. ``close(timeout)`` makes a final pass: the
searches' status, and the best models refit and registered (``models``). What a failure
left out, ``coord sync RUN`` fills in later, without duplicates.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from coordinator.errors import TrackingError
from coordinator.store.rundir import RunStore
from coordinator.tracking import settings
from coordinator.tracking.mlflowlog import Syncer
from coordinator.tracking.models import log_best_models
from coordinator.tracking.runview import RunView
from coordinator.tracking.settings import TrackingOptions
from coordinator.tracking.tracker import Tracker

log = logging.getLogger(__name__)
POLL_S = 1.0
MAX_BACKOFF_S = 30.0
CLOSE_TIMEOUT_S = 600.0  # the final pass: the last trials, the searches' end, the best models
FINAL_RETRY_S = 20.0  # a final pass that keeps failing (the server is down) gives up after this


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


def _client(uri: str) -> Any:
    settings.quiet_loggers()
    from mlflow import MlflowClient

    settings.quiet_loggers()  # importing mlflow configured its loggers: quiet them again
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _syncer(run_dir: Path, uri: str, client: Any, git: dict[str, str]) -> Syncer:
    store = RunStore.open(run_dir)
    extra, coordinator, hosts = _tags(store.config, git)
    view = RunView(store, settings.run_key(run_dir), extra, hosts, coordinator)
    return Syncer(client, view, settings.artifact_root(uri))


def sync_pass(syncer: Syncer, final: bool, uri: str, register_as: str | None) -> list[dict[str, str]]:
    """One pass: the searches' parent runs, every committed trial not logged yet, and (final)
    the searches' end and their best models. Raises what MLflow raises."""
    pending = syncer.pending()
    if not pending and not final and syncer.loaded:
        return []
    syncer.view.refresh()
    syncer.ensure_parents()
    for rec in syncer.pending():
        syncer.sync_trial(rec)
    if not final:
        return []
    syncer.finish()
    return log_best_models(syncer, uri, register_as)


class _Wake(Tracker):
    """The loop's side: a trial ended, so the follower looks now instead of within a second.
    Its ``close`` does nothing: the follower's own ``close(timeout)`` ends the tracking."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_trial_end(self, number: int, result: dict[str, Any]) -> None:
        self.wake.set()

    def on_search_end(self, summary: dict[str, Any]) -> None:
        self.wake.set()


class Follower:
    """Logs a live run to MLflow from its run directory, on a thread of its own. Add
    ``events`` to the loop's trackers; call ``close(timeout)`` once the loop has ended."""

    def __init__(self, run_dir: Path, uri: str, register_as: str | None) -> None:
        self.run_dir, self.uri, self.register_as = run_dir, uri, register_as
        self.shown = settings.redact(uri)
        self.models: list[dict[str, str]] = []
        self.complete = False  # the final pass succeeded: MLflow holds the whole run
        self.failure: str | None = None
        self.experiment: str | None = None
        self._wake, self._closing = threading.Event(), threading.Event()
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._main, name="coord-mlflow", daemon=True)
        self.events: Tracker = _Wake(self._wake)

    def start(self) -> Follower:
        self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """The final pass (the last trials, the searches' end, the best models), waited for at
        most ``timeout`` seconds (it retries until then); returns ``summary()``. Repeat calls
        only return it."""
        if self._closing.is_set():
            return self.summary()
        wait = CLOSE_TIMEOUT_S if timeout is None else timeout
        self._deadline = time.monotonic() + wait
        self._closing.set()
        self._wake.set()
        self._thread.join(wait + 1.0)
        if not self.complete:
            why = f": {self.failure}" if self.failure else ""
            log.warning("MLflow tracking (%s) did not complete%s; the run directory has everything: "
                        "coord sync %s", self.shown, why, self.run_dir)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """For the search's summary: where the run was tracked and what was registered."""
        return {"uri": self.shown, "experiment": self.experiment, "complete": self.complete, "models": self.models}

    def _fail(self, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        if self.failure is None:
            log.warning("MLflow tracking to %s failed (%s); retrying in the background. The search goes on; "
                        "coord sync %s replays what is missing", self.shown, why, self.run_dir)
        self.failure = why

    def _main(self) -> None:
        syncer: Syncer | None = None
        delay, first_final_failure = POLL_S, True
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            final = self._closing.is_set()
            try:
                if syncer is None:
                    git = settings.git_state(RunStore.open(self.run_dir).config.get("cwd"))
                    settings.remember(self.run_dir, self.uri, self.register_as, git)
                    syncer = _syncer(self.run_dir, self.uri, _client(self.uri),
                                     dict(settings.recorded(self.run_dir).get("git") or {}))
                    self.experiment = str(syncer.view.config.get("name"))
                self.models = sync_pass(syncer, final, self.uri, self.register_as) or self.models
                if self.failure is not None:
                    log.warning("MLflow tracking to %s works again; caught up", self.shown)
                    self.failure = None
                delay = POLL_S
                if final:
                    self.complete = True
                    return
            except Exception as exc:  # never into the search: logged once, retried
                self._fail(exc)
                if syncer is not None:
                    syncer.loaded = False  # what a cut-short pass made is found again by its tags
                delay = min(MAX_BACKOFF_S, delay * 2)
                if final:
                    if first_final_failure:  # the server may be gone for good: give up in a while
                        self._deadline = min(self._deadline, time.monotonic() + FINAL_RETRY_S)
                        first_final_failure = False
                    if time.monotonic() + 1.0 >= self._deadline:
                        return
                    delay = 1.0


def start_tracking(run_dir: Path, options: TrackingOptions) -> Follower | None:
    """Start following ``run_dir`` (None when tracking is off). Call before the loop starts;
    ``close(timeout)`` after it ends."""
    if not options.enabled:
        return None
    settings.prepare_environment()
    register = options.register_as or settings.recorded(run_dir).get("register_as")
    return Follower(run_dir, settings.resolve_uri(run_dir, options.uri), register).start()


def sync_run(run_dir: Path, uri: str | None = None, register_as: str | None = None) -> dict[str, Any]:
    """``coord sync``: replay a run directory into MLflow, idempotently. A live run is
    refused (its coordinator tracks it; two writers could make one trial twice)."""
    store = RunStore.open(run_dir)
    pid = store.live_pid()
    if pid:
        raise TrackingError(f"{run_dir} is live (coordinator pid {pid}) and tracks itself; "
                            "sync it after it ends")
    resolved = settings.resolve_uri(run_dir, uri)
    register = register_as or settings.recorded(run_dir).get("register_as")
    settings.prepare_environment()
    started = time.monotonic()
    try:
        syncer = _syncer(run_dir, resolved, _client(resolved), dict(settings.recorded(run_dir).get("git") or {}))
        models = sync_pass(syncer, True, resolved, register)
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"MLflow at {settings.redact(resolved)}: {type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:300]}") from None
    if not settings.recorded(run_dir).get("uri"):
        settings.remember(run_dir, resolved, register)
    return {"run": str(run_dir), "uri": settings.redact(resolved), "experiment": syncer.view.config.get("name"),
            "trials": len(syncer.children), "created": syncer.created, "models": models,
            "seconds": round(time.monotonic() - started, 3)}
