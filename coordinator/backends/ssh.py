"""SSH backend: trials on remote hosts over one verified connection per host.

Per host, once: the runner scripts are uploaded by content hash into
``<work_dir>/runners/<hash>/`` and the data file into ``<work_dir>/data/<sha256>.csv``
(reused while the hash matches). Per attempt: ``spec.json`` and ``launch.json`` go over
SFTP into ``<work_dir>/runs/<run>/trials/<n>/attempt-<k>/``, then one command starts
``remote.py run`` there (every word quoted, no parameter on the command line). The trial
runs detached in its own session; the command streams its stdout with a heartbeat.

A channel that goes quiet past ``stall_s`` (no line, no heartbeat) or breaks is
re-attached over a fresh connection with ``remote.py follow`` from the last byte seen;
if the host cannot be reached within ``reattach_s`` the attempt ends as *lost* (retried
elsewhere) and the host is reported down. A late result of that attempt is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paramiko

from coordinator import protocol
from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent
from coordinator.errors import HostError, HostUnreachable
from coordinator.registry import Platform
from coordinator.sshconn import HostConnection
from coordinator.trial import Allocation, Outcome, TrialSpec

log = logging.getLogger(__name__)
HEARTBEAT_PREFIX = "[coord-hb]"


def runners_hash(runners_dir: Path) -> tuple[str, dict[str, bytes]]:
    files = {p.name: p.read_bytes() for p in sorted(runners_dir.glob("*.py"))}
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16], files


@dataclass
class _Remote:
    handle: Handle
    conn: HostConnection
    adir: str
    out: IO[str]
    started: float
    offset: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    reason: str | None = None
    chan: Any = None
    done: bool = False


class _Host:
    """What is known about one host: its connection and what is already uploaded there."""

    def __init__(self, platform: Platform, known_hosts: Path) -> None:
        self.platform = platform
        self.conn = HostConnection(platform, known_hosts)
        self.work = platform.work_dir.rstrip("/")
        self.runners: str | None = None
        self.data: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.lock = threading.Lock()


class SSHBackend(Backend):
    """Runs attempts on SSH platforms. See the module docstring."""

    def __init__(self, platforms: dict[str, Platform], known_hosts: Path, runners_dir: Path, run_id: str,
                 events: queue.Queue[Event] | None = None, parser_factory: Any = protocol.MetricParser,
                 stall_s: float = 5.0, reattach_s: float = 20.0) -> None:
        self.hosts = {k: _Host(p, known_hosts) for k, p in platforms.items() if p.connection == "ssh"}
        self.runners_dir = runners_dir
        self.run_id = run_id
        self.events: queue.Queue[Event] = events if events is not None else queue.Queue()
        self.parser_factory = parser_factory
        self.stall_s, self.reattach_s = stall_s, reattach_s
        self.attempts: dict[str, _Remote] = {}
        self.closed = False
        self._stop = threading.Event()
        threading.Thread(target=self._watchdog, daemon=True).start()

    # -- preparing a host ------------------------------------------------------------------
    def _mkdirs(self, host: _Host, path: str) -> None:
        host.conn.makedirs(path, host.dirs)

    def _home_relative(self, host: _Host, path: str) -> str:
        return f"{host.conn.home()}/{path[2:]}" if path.startswith("~/") else path

    def prepare(self, platform: str) -> str:
        """Connect and upload the runners once; returns the remote runners folder."""
        host = self.hosts[platform]
        with host.lock:
            if host.runners:
                return host.runners
            host.work = self._home_relative(host, host.work)
            digest, files = runners_hash(self.runners_dir)
            target = f"{host.work}/runners/{digest}"
            if not host.conn.exists(f"{target}/.complete"):
                self._mkdirs(host, f"{host.work}/runners")
                tmp = f"{target}.tmp{int(time.time() * 1000)}"
                self._mkdirs(host, tmp)
                for name, data in files.items():
                    host.conn.put_bytes(data, f"{tmp}/{name}", 0o600)
                host.conn.put_bytes(digest.encode(), f"{tmp}/.complete")
                try:
                    host.conn.rename(tmp, target)
                except HostError:
                    if not host.conn.exists(f"{target}/.complete"):  # another coordinator won the race
                        raise
            host.runners = target
            return target

    def _ensure_data(self, host: _Host, data: dict[str, Any]) -> str:
        sha = data["sha256"]
        with host.lock:
            if sha in host.data:
                return host.data[sha]
            remote = f"{host.work}/data/{sha}.csv"
            if not host.conn.exists(remote):
                self._mkdirs(host, f"{host.work}/data")
                host.conn.put_bytes(Path(data["path"]).read_bytes(), remote, 0o600)
            host.data[sha] = remote
            return remote

    # -- the contract ----------------------------------------------------------------------
    def launch(self, spec: TrialSpec, allocation: Allocation) -> Handle:
        """Start an attempt. Raises HostError (before anything runs) if the host is unusable."""
        try:
            return self._launch(spec, allocation)
        except HostError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:  # never let paramiko crash the loop
            host = self.hosts[allocation.platform]
            host.conn.close()
            raise HostUnreachable(*host.conn.label, f"launch failed: {exc}") from None

    def _launch(self, spec: TrialSpec, allocation: Allocation) -> Handle:
        host = self.hosts[allocation.platform]
        runners = self.prepare(allocation.platform)
        handle = Handle(spec.number, spec.attempt, allocation)
        adir = f"{host.work}/runs/{self.run_id}/trials/{spec.number}/attempt-{spec.attempt}"
        ckpt = f"{host.work}/runs/{self.run_id}/trials/{spec.number}/checkpoint"
        self._mkdirs(host, adir)
        self._mkdirs(host, ckpt)
        remote_spec = {**spec.to_json(), "attempt_dir": adir, "checkpoint_dir": ckpt}
        if spec.data is not None:
            remote_spec["data"] = {**spec.data, "path": self._ensure_data(host, spec.data)}
        argv = list(spec.command) if spec.command else [host.platform.python, f"{runners}/run_trial.py"]
        threads = str(spec.threads)
        env = {protocol.ENV_SPEC: f"{adir}/spec.json", protocol.ENV_TRIAL_NUMBER: str(spec.number),
               protocol.ENV_ATTEMPT: str(spec.attempt), protocol.ENV_CHECKPOINT_DIR: ckpt,
               protocol.ENV_CUDA: "" if allocation.gpu is None else str(allocation.gpu),
               "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "PYTHONUNBUFFERED": "1", **spec.env}
        launch = {"argv": argv, "env": env, "cwd": host.work, "attempt": spec.attempt}
        host.conn.put_bytes(json.dumps(remote_spec, indent=2, sort_keys=True).encode(), f"{adir}/spec.json")
        host.conn.put_bytes(json.dumps(launch).encode(), f"{adir}/launch.json")
        local_dir = Path(spec.attempt_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "spec.json").write_text(json.dumps(remote_spec, indent=2, sort_keys=True), encoding="utf-8")
        rem = _Remote(handle, host.conn, adir, open(local_dir / "stdout", "a", encoding="utf-8"),  # noqa: SIM115
                      time.monotonic())
        rem.chan = host.conn.open_command([host.platform.python, f"{runners}/remote.py", "run", adir], 30.0)
        self.attempts[handle.key] = rem
        threading.Thread(target=self._follow, args=(rem, host, runners), daemon=True).start()
        return handle

    def _follow(self, rem: _Remote, host: _Host, runners: str) -> None:
        parser = self.parser_factory()
        while not rem.done:
            code = self._stream(rem, parser)
            if code is not None:
                self._finish(rem, host, Outcome(exit_code=code if code >= 0 else None,
                                                signal=-code if code < 0 else None))
                return
            if self.closed:
                return
            # the channel broke or stalled: re-attach over a fresh connection, or give up
            deadline = time.monotonic() + self.reattach_s
            rem.conn.close()
            while not self.closed:
                try:
                    rem.chan = rem.conn.open_command(
                        [host.platform.python, f"{runners}/remote.py", "follow", rem.adir, str(rem.offset)], 10.0)
                    rem.last_seen = time.monotonic()
                    log.warning("re-attached to trial %s on %s", rem.handle.key, host.platform.key)
                    break
                except HostError:
                    if time.monotonic() >= deadline:
                        self._finish(rem, host, Outcome(exit_code=None, lost=True,
                                                        error=f"lost connection to {host.platform.key}"))
                        return
                    time.sleep(1.0)

    def _stream(self, rem: _Remote, parser: protocol.MetricParser) -> int | None:
        """Read lines until the end marker (returns the exit code) or a broken channel (None)."""
        try:
            for raw in rem.chan.makefile("r"):
                rem.last_seen = time.monotonic()
                line = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                if line.startswith(HEARTBEAT_PREFIX):
                    continue
                if line.startswith(protocol.END_PREFIX):
                    try:
                        return int(json.loads(line[len(protocol.END_PREFIX):])["exit"])
                    except (ValueError, KeyError, TypeError):
                        return 1
                rem.offset += len(line.encode("utf-8"))
                rem.out.write(line)
                values = parser.parse(line)
                if values:
                    self.events.put(MetricEvent(rem.handle, values))
        except Exception as exc:  # a dead transport raises from many places inside paramiko
            log.info("channel of trial %s broke: %s", rem.handle.key, exc)
        return None

    def _finish(self, rem: _Remote, host: _Host, outcome: Outcome) -> None:
        if rem.done:
            return
        rem.done = True
        now = time.monotonic()
        rem.out.close()
        if not outcome.lost:
            try:  # keep the host's stderr with the run (the file stays on the host too)
                err = host.conn.get_bytes(f"{rem.adir}/stderr", limit=256 * 1024)
                if err is not None:
                    (Path(rem.out.name).parent / "stderr").write_bytes(err)
            except HostError:
                pass
        self.attempts.pop(rem.handle.key, None)
        final = Outcome(exit_code=outcome.exit_code, signal=outcome.signal, error=outcome.error,
                        cancelled=rem.reason == "cancelled", timed_out=rem.reason == "timeout",
                        lost=outcome.lost and rem.reason is None, duration_s=now - rem.started)
        self.events.put(EndEvent(rem.handle, final, now))

    def _watchdog(self) -> None:
        """Close channels that went silent: no output and no heartbeat for ``stall_s``."""
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for rem in list(self.attempts.values()):
                if not rem.done and now - rem.last_seen > self.stall_s and rem.chan is not None:
                    log.warning("trial %s: no heartbeat for %.1fs; re-attaching", rem.handle.key, now - rem.last_seen)
                    rem.last_seen = now
                    try:
                        rem.conn.close()  # unblocks the reader; it re-attaches on a new connection
                    except Exception:
                        pass

    def poll(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        try:
            out.append(self.events.get(timeout=max(0.0, timeout)))
            while True:
                out.append(self.events.get_nowait())
        except queue.Empty:
            pass
        return out

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        rem = self.attempts.get(handle.key)
        if rem is None:
            return
        rem.reason = reason
        host = self.hosts[handle.allocation.platform]

        def kill() -> None:
            try:
                rem.conn.run([host.platform.python, f"{host.runners}/remote.py", "kill", rem.adir], timeout=15.0)
            except HostError as exc:
                log.warning("could not kill trial %s on %s: %s", handle.key, host.platform.key, exc)
        threading.Thread(target=kill, daemon=True).start()

    def close(self) -> None:
        if self.closed:
            return
        for rem in list(self.attempts.values()):
            host = self.hosts[rem.handle.allocation.platform]
            rem.reason = rem.reason or "cancelled"
            try:
                rem.conn.run([host.platform.python, f"{host.runners}/remote.py", "kill", rem.adir], timeout=10.0)
            except HostError:
                pass
        deadline = time.monotonic() + 5
        while self.attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        self.closed = True
        self._stop.set()
        for host in self.hosts.values():
            host.conn.close()
