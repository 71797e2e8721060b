"""MLflow tracking that never slows or endangers the search: the coordinator's side.

``start_tracking`` starts the tracking process (``worker``: it follows the run directory
and logs what the loop committed) before the first trial; ``Follower.events``, among the
loop's trackers, tells it at once when a trial ends (one byte on a non-blocking pipe: the
loop never waits for it); ``close(timeout)`` after the loop asks for the final pass (the
searches' end, the best models refit and registered) and waits for it. The worker's
warnings are logged here, as the coordinator's own. What a failure left out, ``coord sync
RUN`` fills in later without duplicates (``sync_run``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from coordinator.errors import TrackingError
from coordinator.records import Result
from coordinator.store.rundir import RunStore
from coordinator.tracking import settings, worker
from coordinator.tracking.settings import TrackingOptions
from coordinator.tracking.tracker import Tracker

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 600.0  # the final pass: the last trials, the searches' end, the best models
FINAL_RETRY_S = worker.FINAL_RETRY_S  # a final pass that keeps failing gives up after this


class _Wake(Tracker):
    """The loop's side: a trial ended, so the worker looks now instead of within a second.
    Its ``close`` does nothing: the follower's own ``close(timeout)`` ends the tracking."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower

    def on_trial_end(self, result: Result) -> None:
        self.follower.send(b"w")

    def on_search_end(self, summary: dict[str, Any]) -> None:
        self.follower.send(b"w")


class Follower:
    """The tracking process of one live run. Add ``events`` to the loop's trackers; call
    ``close(timeout)`` once the loop has ended."""

    def __init__(self, run_dir: Path, uri: str, register_as: str | None) -> None:
        self.run_dir, self.uri, self.register_as = run_dir, uri, register_as
        self.shown = settings.redact(uri)
        self.experiment = RunStore.open(run_dir).config.get("name")
        self.result: dict[str, Any] = {"complete": False, "models": [], "failure": None}
        self.events: Tracker = _Wake(self)
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._done = threading.Event()

    def start(self) -> Follower:
        args = [sys.executable, "-m", "coordinator.tracking.worker", str(self.run_dir)]
        if self.register_as:
            args += ["--register-as", self.register_as]
        if log.getEffectiveLevel() < logging.INFO:
            args.append("--verbose")
        here = str(Path(__file__).resolve().parents[2])  # this coord's package, whatever the cwd
        env = {**settings.ENV_DEFAULTS, **os.environ, "MLFLOW_TRACKING_URI": self.uri,
               "PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            # its own session: a terminal's Ctrl-C (sent to the foreground process group) would
            # kill it mid-pass, with a traceback, before it logs the interrupted search's end; the
            # coordinator says when to finish (``f``), and its death closes the pipe
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                         cwd=str(self.run_dir), start_new_session=True)
        except OSError as exc:
            log.warning("MLflow tracking could not start (%s); coord sync %s logs the run later", exc, self.run_dir)
            self._done.set()
            return self
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), name="coord-mlflow",
                                        daemon=True)
        self._reader.start()
        return self

    def send(self, word: bytes) -> None:
        """One word to the worker; never blocks and never raises (a full pipe already holds a wake-up)."""
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                os.write(self.proc.stdin.fileno(), word)

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "warning" in message:
                log.warning("%s", message["warning"])
            if "summary" in message:
                self.result = dict(message["summary"])
        self._done.set()

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Ask for the final pass and wait for it at most ``timeout`` seconds; returns
        ``summary()``. Repeat calls only return it."""
        wait = CLOSE_TIMEOUT_S if timeout is None else timeout
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            os.set_blocking(self.proc.stdin.fileno(), True)
            self.send(f"f{FINAL_RETRY_S}\n".encode())
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            if not self._done.wait(wait):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if not self.result.get("complete"):
                why = f": {self.result['failure']}" if self.result.get("failure") else ""
                log.warning("MLflow tracking (%s) did not complete%s; the run directory has everything: "
                            "coord sync %s", self.shown, why, self.run_dir)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """For the search's summary: where the run was tracked and what was registered."""
        return {"uri": self.shown, "experiment": self.experiment,
                "complete": bool(self.result.get("complete")), "models": list(self.result.get("models") or [])}


def start_tracking(run_dir: Path, options: TrackingOptions) -> Follower | None:
    """Start following ``run_dir`` (None when tracking is off). Call before the loop starts;
    ``close(timeout)`` after it ends."""
    if not options.enabled:
        return None
    register = options.register_as or settings.recorded(run_dir).get("register_as")
    return Follower(run_dir, settings.resolve_uri(run_dir, options.uri), register).start()


def sync_run(run_dir: Path, uri: str | None = None, register_as: str | None = None) -> dict[str, Any]:
    """``coord sync``: replay a run directory into MLflow, idempotently, in this process. A
    live run is refused (its coordinator tracks it; two writers could make one trial twice)."""
    settings.check_uris(uri)
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
        sync = worker.syncer(run_dir, resolved, worker.client(resolved))
        models = worker.sync_pass(sync, True, resolved, register)
    except Exception as exc:
        raise TrackingError(f"MLflow at {settings.redact(resolved)}: {type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:300]}") from None
    if not settings.recorded(run_dir).get("uri"):
        settings.remember(run_dir, resolved, register)
    return {"run": str(run_dir), "uri": settings.redact(resolved), "experiment": sync.view.config.get("name"),
            "trials": len(sync.children), "created": sync.created, "models": models,
            "seconds": round(time.monotonic() - started, 3)}
