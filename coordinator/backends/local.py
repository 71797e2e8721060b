"""Local subprocess backend.

Two ways to run an attempt, one event stream:
- a user's ``--command`` gets a fresh process per attempt (its own session, so cancel
  kills the whole process group);
- a built-in model runs in a *warm worker* bound to its slot, which keeps the ML
  libraries and the data loaded across trials (``runners/worker.py``). Cancelling or
  timing out such a trial kills the worker; the next trial on that slot starts a new one.

Reader threads turn stdout lines into events on one queue, so ``poll`` wakes the moment
a trial prints or ends: the slot is refilled within milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from coordinator import protocol
from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent, drain, later
from coordinator.errors import BackendError
from coordinator.registry import Platform
from coordinator.trial import Allocation, Outcome, TrialSpec

KILL_GRACE_S = 3.0


class _Attempt:
    def __init__(self, handle: Handle, stdout_path: Path, started: float) -> None:
        self.handle = handle
        self.dir = stdout_path.parent
        self.out: IO[str] = open(stdout_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.started = started
        self.reason: str | None = None  # set by cancel: "cancelled" or "timeout"


def _kill_group(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class _Worker:
    """One warm runner process and the attempt it is running (at most one)."""

    def __init__(self, proc: subprocess.Popen[str], model: str) -> None:
        self.proc = proc
        self.model = model
        self.current: _Attempt | None = None
        self.lock = threading.Lock()


class LocalBackend(Backend):
    """Runs attempts as local processes. See the module docstring."""

    def __init__(self, platforms: dict[str, Platform], runners_dir: Path,
                 parser_factory: Callable[[], protocol.MetricParser] = protocol.MetricParser,
                 cwd: Path | None = None, events: queue.Queue[Event] | None = None) -> None:
        self.platforms = platforms
        self.runners_dir = runners_dir
        self.parser_factory = parser_factory
        self.cwd = cwd or Path.cwd()
        self.events: queue.Queue[Event] = events if events is not None else queue.Queue()
        self.workers: dict[tuple[str, int], _Worker] = {}
        self.procs: dict[str, tuple[subprocess.Popen[Any], _Attempt]] = {}  # fresh-process attempts
        self.attempts: dict[str, _Attempt] = {}
        self.closed = False

    # -- launching ---------------------------------------------------------------------
    def _env(self, spec: TrialSpec, alloc: Allocation, spec_path: Path) -> dict[str, str]:
        env = dict(os.environ)
        threads = str(spec.threads)
        env.update({protocol.ENV_SPEC: str(spec_path), protocol.ENV_TRIAL_NUMBER: str(spec.number),
                    protocol.ENV_ATTEMPT: str(spec.attempt), protocol.ENV_CHECKPOINT_DIR: spec.checkpoint_dir,
                    protocol.ENV_CUDA: "" if alloc.gpu is None else str(alloc.gpu),
                    "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                    "PYTHONUNBUFFERED": "1"})
        return env

    def launch(self, spec: TrialSpec, allocation: Allocation) -> Handle:
        if self.closed:
            raise BackendError("backend is closed")
        attempt_dir = Path(spec.attempt_dir)
        attempt_dir.mkdir(parents=True, exist_ok=True)
        Path(spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        spec_path = attempt_dir / "spec.json"
        spec_path.write_text(json.dumps(spec.to_json(), indent=2, sort_keys=True), encoding="utf-8")
        handle = Handle(spec.number, spec.attempt, allocation)
        att = _Attempt(handle, attempt_dir / "stdout", time.monotonic())
        self.attempts[handle.key] = att
        try:
            if spec.command:
                self._launch_command(spec, allocation, spec_path, att)
            else:
                self._launch_warm(spec, allocation, spec_path, att)
        except OSError as exc:
            self.attempts.pop(handle.key, None)
            att.out.close()
            (attempt_dir / "stderr").write_text(f"coord: could not start the trial: {exc}\n", encoding="utf-8")
            self.events.put(EndEvent(handle, Outcome(exit_code=127, error=f"could not start: {exc}"),
                                     time.monotonic()))
        return handle

    def _launch_command(self, spec: TrialSpec, alloc: Allocation, spec_path: Path, att: _Attempt) -> None:
        assert spec.command is not None
        with open(Path(spec.attempt_dir) / "stderr", "wb") as err:
            proc = subprocess.Popen(list(spec.command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, env=self._env(spec, alloc, spec_path), cwd=self.cwd,
                                    start_new_session=True, text=True, errors="replace", bufsize=1)
        self.procs[att.handle.key] = (proc, att)
        threading.Thread(target=self._read_command, args=(proc, att), daemon=True).start()

    def _read_command(self, proc: subprocess.Popen[str], att: _Attempt) -> None:
        parser = self.parser_factory()
        assert proc.stdout is not None
        for line in proc.stdout:
            att.out.write(line)
            values = parser.parse(line)
            if values:
                self.events.put(MetricEvent(att.handle, values))
        code = proc.wait()
        self._finish(att, code)

    def _launch_warm(self, spec: TrialSpec, alloc: Allocation, spec_path: Path, att: _Attempt) -> None:
        assert spec.model is not None
        key = (alloc.platform, alloc.slot)
        worker = self.workers.get(key)
        if worker is not None and (worker.proc.poll() is not None or worker.model != spec.model):
            self._stop_worker(key)
            worker = None
        if worker is None:
            env = self._env(spec, alloc, spec_path)
            env["COORD_PRELOAD"] = spec.model
            python = self.platforms[alloc.platform].python
            proc = subprocess.Popen([python, str(self.runners_dir / "worker.py")], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                    cwd=self.cwd, start_new_session=True, text=True, bufsize=1)
            worker = _Worker(proc, spec.model)
            self.workers[key] = worker
            threading.Thread(target=self._read_worker, args=(worker,), daemon=True).start()
        with worker.lock:
            worker.current = att
        assert worker.proc.stdin is not None
        try:
            worker.proc.stdin.write(json.dumps({"spec": str(spec_path)}) + "\n")
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader thread sees the worker's death and ends the attempt

    def _read_worker(self, worker: _Worker) -> None:
        parser = self.parser_factory()
        assert worker.proc.stdout is not None
        for line in worker.proc.stdout:
            with worker.lock:
                att = worker.current
            if att is None:
                continue
            if line.startswith(protocol.END_PREFIX):
                try:
                    code = int(json.loads(line[len(protocol.END_PREFIX):])["exit"])
                except (ValueError, KeyError, TypeError):
                    code = 1
                with worker.lock:
                    worker.current = None
                self._finish(att, code)
                continue
            att.out.write(line)
            values = parser.parse(line)
            if values:
                self.events.put(MetricEvent(att.handle, values))
        code = worker.proc.wait()
        with worker.lock:
            att, worker.current = worker.current, None
        if att is not None:
            self._finish(att, code)

    def _finish(self, att: _Attempt, code: int) -> None:
        now = time.monotonic()
        att.out.close()
        self.procs.pop(att.handle.key, None)
        self.attempts.pop(att.handle.key, None)
        outcome = Outcome(exit_code=code if code >= 0 else None, signal=-code if code < 0 else None,
                          cancelled=att.reason == "cancelled", timed_out=att.reason == "timeout",
                          duration_s=now - att.started)
        self.events.put(EndEvent(att.handle, outcome, now))

    # -- the rest of the contract ------------------------------------------------------
    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        att = self.attempts.get(handle.key)
        if att is None:
            return
        att.reason = reason
        if handle.key in self.procs:
            proc = self.procs[handle.key][0]
        else:
            key = (handle.allocation.platform, handle.allocation.slot)
            worker = self.workers.get(key)
            if worker is None:
                return
            proc = worker.proc
            self.workers.pop(key, None)  # the next trial on this slot gets a fresh worker
        _kill_group(proc, signal.SIGTERM)
        later(KILL_GRACE_S, lambda: _kill_group(proc, signal.SIGKILL))

    def stop(self, handle: Handle) -> None:
        """Pruned: a warm built-in trial finds a ``prune`` file at its next step and ends,
        keeping its worker warm; a script, or a trial that does not stop in time, is killed."""
        att = self.attempts.get(handle.key)
        if att is None:
            return
        if handle.key in self.procs:
            self.cancel(handle, "pruned")
            return
        (att.dir / "prune").touch()
        self._cancel_unless_ended(handle, lambda: handle.key in self.attempts)

    def _stop_worker(self, key: tuple[str, int]) -> None:
        worker = self.workers.pop(key, None)
        if worker is None:
            return
        if worker.proc.stdin:
            with contextlib.suppress(OSError):
                worker.proc.stdin.close()
        try:
            worker.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            _kill_group(worker.proc, signal.SIGKILL)
            worker.proc.wait()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proc, att in list(self.procs.values()):
            att.reason = att.reason or "cancelled"
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        for key, worker in list(self.workers.items()):
            if worker.current is not None:
                worker.current.reason = worker.current.reason or "cancelled"
                _kill_group(worker.proc, signal.SIGKILL)
            self._stop_worker(key)
