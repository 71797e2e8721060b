"""The agent backend: trials on every host, local or SSH, through one agent per host.

An SSH host is reached through one verified connection; this machine through a child
process on pipes (``localconn.py``). Either way trials run detached from the coordinator,
so a coordinator that dies (``kill -9``) loses none: ``coord resume`` re-sends the same
``run`` request, which the agent answers by following the attempt instead of starting it
twice.

Per SSH host, once: the runner scripts are uploaded by content hash into
``<work_dir>/runners/<hash>/``, the data file into ``<work_dir>/data/<sha256>.csv``
(reused while the hash matches), and one command starts ``remote.py agent`` on a single
channel. Per attempt: one JSON line to the agent carries spec.json and launch.json (no
parameter on any command line, no SSH exec, no SFTP), and the agent starts the trial
detached in its own session. The agent streams every trial's stdout back tagged by attempt,
with a heartbeat each second, and ends each attempt with its exit code and stderr tail.

If the agent's channel breaks, or goes silent for ``stall_s`` (paramiko alone can wait
forever on a stopped peer), the connection is dropped and a new agent re-attaches to every
running attempt from the last byte seen. If the host cannot be reached within
``reattach_s``, its attempts end as *lost* (retried elsewhere); their late results are
never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paramiko

from coordinator import protocol
from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent, drain
from coordinator.backends.carry import carry_checkpoint, fetch_checkpoint
from coordinator.backends.localconn import LocalConnection
from coordinator.backends.sshconn import HostConnection
from coordinator.config.registry import Platform
from coordinator.errors import HostError, HostUnreachable
from coordinator.records import Allocation, Outcome, TrialSpec
from coordinator.store.rundir import disk_full

log = logging.getLogger(__name__)
LOCAL_STALL_S = 15.0


def runners_hash(runners_dir: Path) -> tuple[str, dict[str, bytes]]:
    files = {p.name: p.read_bytes() for p in sorted(runners_dir.glob("*.py"))}
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16], files


@dataclass
class _Remote:
    handle: Handle
    adir: str
    out: IO[str] | None  # the local copy of an SSH attempt's stdout; None on this machine
    started: float
    parser: protocol.MetricParser
    offset: int = 0
    reason: str | None = None
    done: bool = False
    warm: bool = False  # a built-in model in the slot's warm worker (it can be asked to stop)
    ckpt: tuple[str, str] = ("", "")  # (remote, local) checkpoint directories of an SSH attempt


@dataclass
class _Host:
    """One host: its connection, its agent channel, what is uploaded, what runs there."""

    platform: Platform
    conn: HostConnection | LocalConnection
    work: str
    base: str  # this run's directory on the host (the run directory itself on this machine)
    runners: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    chan: Any = None
    generation: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    attempts: dict[str, _Remote] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    fetching: bool = False  # copying a checkpoint home (bounded by SFTP's own 30 s timeout)

    @property
    def local(self) -> bool:
        return isinstance(self.conn, LocalConnection)


class AgentBackend(Backend):
    """Runs attempts on local and SSH platforms. See the module docstring.

    ``local_root`` is the run directory: local attempts write there directly."""

    def __init__(self, platforms: dict[str, Platform], known_hosts: Path, runners_dir: Path, run_id: str,
                 local_root: Path, events: queue.Queue[Event] | None = None,
                 parser_factory: Any = protocol.MetricParser, stall_s: float = 5.0, reattach_s: float = 20.0) -> None:
        self.hosts: dict[str, _Host] = {}
        ssh: dict[str, HostConnection] = {}
        for k, p in sorted(platforms.items(), key=lambda kv: kv[1].jump is not None):  # jump hosts first
            if p.connection == "ssh":
                ssh[k] = HostConnection(p, known_hosts, ssh.get(p.jump) if p.jump else None)
                work = p.work_dir.rstrip("/")
                self.hosts[k] = _Host(p, ssh[k], work, f"{work}/runs/{run_id}")
            elif p.connection == "local":
                self.hosts[k] = _Host(p, LocalConnection(p), str(local_root), str(local_root))
        self.runners_dir = runners_dir
        self.run_id = run_id
        self.events: queue.Queue[Event] = events if events is not None else queue.Queue()
        self.parser_factory = parser_factory
        self.stall_s, self.reattach_s = stall_s, reattach_s
        self.closed = False
        self._stop = threading.Event()
        threading.Thread(target=self._watchdog, daemon=True).start()

    # -- preparing a host ------------------------------------------------------------------
    def prepare(self, platform: str) -> None:
        """Connect, upload the runners once, start the agent. Raises HostError."""
        host = self.hosts[platform]
        with host.lock:
            if host.chan is not None and not host.chan.closed:
                return
            try:
                if host.runners is None and host.local:
                    host.runners = str(self.runners_dir)
                if host.runners is None:
                    if host.work.startswith("~/"):
                        host.work = f"{host.conn.home()}/{host.work[2:]}"
                    host.base = f"{host.work}/runs/{self.run_id}"
                    host.runners = self._upload_runners(host)
                self._start_agent(host)
            except (OSError, EOFError, paramiko.SSHException) as exc:  # never let paramiko crash the loop
                host.conn.close()
                raise HostUnreachable(*host.conn.label, f"cannot prepare the host: {exc}") from None

    def _upload_runners(self, host: _Host) -> str:
        assert isinstance(host.conn, HostConnection)
        digest, files = runners_hash(self.runners_dir)
        target = f"{host.work}/runners/{digest}"
        if not host.conn.exists(f"{target}/.complete"):
            host.conn.makedirs(f"{host.work}/runners", host.dirs)
            tmp = f"{target}.tmp{int(time.time() * 1000)}"
            host.conn.makedirs(tmp, host.dirs)
            for name, data in files.items():
                host.conn.put_bytes(data, f"{tmp}/{name}", 0o600)
            host.conn.put_bytes(digest.encode(), f"{tmp}/.complete")
            try:
                host.conn.rename(tmp, target)
            except HostError:
                if not host.conn.exists(f"{target}/.complete"):  # another coordinator won the race
                    raise
        return target

    def _start_agent(self, host: _Host) -> None:
        chan = host.conn.open_command([host.platform.python, "-S", f"{host.runners}/remote.py", "agent"], 30.0)
        chan.settimeout(None)  # the reader blocks; the watchdog bounds silence instead
        host.generation += 1
        host.chan = chan
        host.last_seen = time.monotonic()
        threading.Thread(target=self._read_agent, args=(host, chan, host.generation), daemon=True).start()

    def _ensure_data(self, host: _Host, data: dict[str, Any]) -> str:
        if not isinstance(host.conn, HostConnection):
            return str(data["path"])
        sha = data["sha256"]
        with host.lock:
            if sha not in host.data:
                remote = f"{host.work}/data/{sha}.csv"
                if not host.conn.exists(remote):
                    host.conn.makedirs(f"{host.work}/data", host.dirs)
                    host.conn.put_bytes(Path(data["path"]).read_bytes(), remote, 0o600)
                host.data[sha] = remote
            return host.data[sha]

    def _slots_dir(self, host: _Host) -> str:
        return f"{host.base}/slots"

    def _send(self, host: _Host, request: dict[str, Any]) -> None:
        line = (json.dumps(request) + "\n").encode()
        with host.lock:
            try:
                host.chan.sendall(line)
            except (OSError, EOFError, paramiko.SSHException, AttributeError) as exc:
                raise HostUnreachable(*host.conn.label, f"agent unreachable: {exc}") from None

    # -- the contract ----------------------------------------------------------------------
    def launch(self, spec: TrialSpec, allocation: Allocation) -> Handle:
        """Start an attempt. Raises HostError, before anything runs, if the host is unusable."""
        host = self.hosts[allocation.platform]
        self.prepare(allocation.platform)
        handle = Handle(spec.number, spec.attempt, allocation)
        if host.local:
            adir, ckpt = spec.attempt_dir, spec.checkpoint_dir
        else:
            base = f"{host.base}/trials/{spec.number}"
            adir, ckpt = f"{base}/attempt-{spec.attempt}", f"{base}/checkpoint"
        remote_spec = {**spec.to_json(), "attempt_dir": adir, "checkpoint_dir": ckpt}
        try:
            if spec.data is not None:
                remote_spec["data"] = {**spec.data, "path": self._ensure_data(host, spec.data)}
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostUnreachable(*host.conn.label, f"cannot upload the data: {exc}") from None
        argv = list(spec.command) if spec.command else [host.platform.python, f"{host.runners}/run_trial.py"]
        threads = str(spec.threads)
        env = {protocol.ENV_SPEC: f"{adir}/spec.json", protocol.ENV_TRIAL_NUMBER: str(spec.number),
               protocol.ENV_ATTEMPT: str(spec.attempt), protocol.ENV_CHECKPOINT_DIR: ckpt,
               protocol.ENV_CUDA: "" if allocation.gpu is None else str(allocation.gpu),
               "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "PYTHONUNBUFFERED": "1"}
        spec_text = json.dumps(remote_spec, indent=2, sort_keys=True)
        launch = {"argv": argv, "env": env, "cwd": os.getcwd() if host.local else host.work, "attempt": spec.attempt,
                  "timeout_s": spec.timeout_s}  # enforced by the agent, against the trial's own run time
        request: dict[str, Any] = {"op": "run", "tag": handle.key, "adir": adir, "dirs": [ckpt],
                                   "files": {"spec.json": spec_text, "launch.json": json.dumps(launch)}}
        if spec.model is not None:  # built-in model: the slot's warm worker runs it
            request["warm"] = {"slot_dir": f"{self._slots_dir(host)}/{allocation.slot}", "model": spec.model,
                               "argv": [host.platform.python, f"{host.runners}/worker.py"],
                               "env": {k: v for k, v in env.items() if not k.startswith("COORD_")}}
        local_dir = Path(spec.attempt_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        out = None
        if not host.local:  # a local attempt writes its files itself; the agent writes spec.json
            (local_dir / "spec.json").write_text(spec_text, encoding="utf-8")
            # "w": a re-attach after a restart streams the output again from its first byte
            out = open(local_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        if isinstance(host.conn, HostConnection):
            carry_checkpoint(host.conn, host.dirs, Path(spec.checkpoint_dir), ckpt)
        rem = _Remote(handle, adir, out, time.monotonic(), self.parser_factory(), warm=spec.model is not None,
                      ckpt=(ckpt, spec.checkpoint_dir))
        with host.lock:
            host.attempts[handle.key] = rem
        try:
            self._send(host, request)
        except HostError:
            with host.lock:
                host.attempts.pop(handle.key, None)
            if rem.out is not None:
                rem.out.close()
            raise
        return handle

    def _read_agent(self, host: _Host, chan: Any, generation: int) -> None:
        """Read the agent's stream in chunks: any byte that arrives shows the host alive, so
        a trial printing a lot (or one very long line) never looks like a stalled connection."""
        try:
            pending = b""
            while True:
                data = chan.recv(1 << 16)
                if not data:
                    break
                host.last_seen = time.monotonic()
                pending += data
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(host, raw)
        except Exception as exc:  # a dead transport raises from many places inside paramiko
            log.info("agent channel of %s broke: %s", host.platform.key, exc)
        if not self.closed and generation == host.generation:
            self._reattach(host, generation)

    def _line(self, host: _Host, raw: bytes) -> None:
        """One line of the agent: ``TAG<TAB>OFFSET<TAB>stdout line`` or ``TAG<TAB>[coord-end] {...}``."""
        line = raw.decode("utf-8", "replace")
        if line.startswith(protocol.HEARTBEAT_PREFIX):
            return
        tag, sep, rest = line.partition("\t")
        with host.lock:
            rem = host.attempts.get(tag)
        if not sep or rem is None or rem.done:
            return
        if rest.startswith(protocol.END_PREFIX):
            self._copy(rem, None)  # flushed first: closing the copy then cannot fail
            try:
                self._end(host, rem, rest)
            except OSError as exc:  # writing the stderr tail's copy; the end still reaches the loop
                self._copy_failed(rem, "stderr", exc)
                self._end(host, rem, rest)
            return
        offset, sep, payload = rest.partition("\t")
        if not sep or not offset.isdigit():
            return
        rem.offset = int(offset)  # the agent's byte offset in the host's file: a re-attach goes on from it
        self._copy(rem, payload + "\n")
        if payload.startswith(protocol.CKPT_PREFIX) and isinstance(host.conn, HostConnection):
            # in the reader thread: the copy is home before the attempt's end is reported;
            # meanwhile no line is read, so the watchdog must not take it for a stall
            host.fetching = True
            try:
                self._note_disk_full(fetch_checkpoint(host.conn, payload, rem.ckpt[0], Path(rem.ckpt[1])))
            finally:
                host.fetching, host.last_seen = False, time.monotonic()
        values = rem.parser.parse(payload)
        if values:
            self.events.put(MetricEvent(rem.handle, values))

    def _copy(self, rem: _Remote, text: str | None) -> None:
        """Append to (None: flush) the run directory's copy of an SSH attempt's stdout. A
        failed write ends the copy, never the reader (that would re-attach forever): the
        host keeps the whole file, and the loop stops on a full disk."""
        try:
            if rem.out is not None and text is not None:
                rem.out.write(text)
            elif rem.out is not None:
                rem.out.flush()
        except OSError as exc:
            self._copy_failed(rem, "stdout", exc)

    def _copy_failed(self, rem: _Remote, name: str, exc: OSError | None) -> None:
        """End the local copy (``exc`` None: detached). A full disk is said once, by the loop."""
        out, rem.out = rem.out, None
        if out is None:
            return
        with contextlib.suppress(OSError, ValueError):  # what the disk refused stays on the host
            out.close()
        if exc is not None:
            path = Path(out.name).parent / name
            full = disk_full(exc, path)
            self._note_disk_full(full)
            (log.info if full else log.warning)("trial %s: local copy of its output stopped: cannot write %s: %s",
                                                rem.handle.key, path, exc.strerror or exc)

    def _end(self, host: _Host, rem: _Remote, payload: str) -> None:
        try:
            info = json.loads(payload[len(protocol.END_PREFIX):])
            code = int(info["exit"])
        except (ValueError, KeyError, TypeError):
            info, code = {}, 1
        if rem.out is not None:  # the host keeps the whole file; the run directory gets its tail
            (Path(rem.out.name).parent / "stderr").write_text(info.get("stderr") or "", encoding="utf-8")
        seconds = info.get("seconds")
        self._finish(host, rem, Outcome(exit_code=code if code >= 0 else None, signal=-code if code < 0 else None,
                                        timed_out=info.get("timed_out") is True,
                                        duration_s=float(seconds) if isinstance(seconds, (int, float)) else 0.0))

    def _finish(self, host: _Host, rem: _Remote, outcome: Outcome) -> None:
        with host.lock:
            if rem.done:
                return
            rem.done = True
            host.attempts.pop(rem.handle.key, None)
        now = time.monotonic()
        if rem.out is not None:
            rem.out.close()
        final = Outcome(exit_code=outcome.exit_code, signal=outcome.signal, error=outcome.error,
                        cancelled=rem.reason == "cancelled", timed_out=outcome.timed_out or rem.reason == "timeout",
                        lost=outcome.lost and rem.reason is None,
                        # the host's measure of the trial when it has one (also right after a re-attach)
                        duration_s=outcome.duration_s if outcome.duration_s > 0 else now - rem.started)
        self.events.put(EndEvent(rem.handle, final, now))

    def _reattach(self, host: _Host, generation: int) -> None:
        """A new connection and agent, then ``follow`` every running attempt from its offset."""
        with host.lock:
            if generation != host.generation:
                return  # someone else re-attached already
            host.chan = None
        host.conn.close()
        deadline = time.monotonic() + self.reattach_s
        while not self.closed:
            try:
                with host.lock:
                    self._start_agent(host)
                    for rem in list(host.attempts.values()):
                        self._send(host, {"op": "follow", "tag": rem.handle.key, "adir": rem.adir,
                                          "offset": rem.offset})
                log.warning("re-attached to %d running trial(s) on %s", len(host.attempts), host.platform.key)
                return
            except HostError as exc:
                host.conn.close()
                if time.monotonic() >= deadline:
                    log.warning("%s: giving up re-attaching: %s", host.platform.key, exc)
                    for rem in list(host.attempts.values()):
                        self._finish(host, rem, Outcome(exit_code=None, lost=True,
                                                        error=f"lost connection to {host.platform.key}"))
                    return
                time.sleep(1.0)

    def _watchdog(self) -> None:
        """Drop connections whose agent went silent (no line, no heartbeat) for ``stall_s``."""
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for host in self.hosts.values():
                # a local agent cannot be cut off by a network; silence there means a starved machine
                limit = self.stall_s if not host.local else max(self.stall_s, LOCAL_STALL_S)
                if host.chan is not None and not host.fetching and now - host.last_seen > limit:
                    log.warning("%s: no heartbeat for %.1fs; reconnecting", host.platform.key, now - host.last_seen)
                    host.last_seen = now
                    with contextlib.suppress(Exception):
                        host.conn.close()  # unblocks the reader, which re-attaches

    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        host = self.hosts[handle.allocation.platform]
        with host.lock:
            rem = host.attempts.get(handle.key)
        if rem is None:
            return
        rem.reason = reason
        try:
            self._send(host, {"op": "kill", "adir": rem.adir})
        except HostError as exc:  # re-attach will follow it; the kill is retried at close
            log.warning("could not kill trial %s on %s: %s", handle.key, host.platform.key, exc)

    def stop(self, handle: Handle) -> None:
        """Pruned: the agent leaves a ``prune`` file the runner checks between steps; a
        script, or a trial still running after the grace period, is killed."""
        host = self.hosts[handle.allocation.platform]
        with host.lock:
            rem = host.attempts.get(handle.key)
        if rem is None:
            return
        if not rem.warm:
            self.cancel(handle, "pruned")
            return
        try:
            self._send(host, {"op": "prune", "adir": rem.adir})
        except HostError:
            self.cancel(handle, "pruned")
            return
        self._cancel_unless_ended(handle, lambda: handle.key in host.attempts)

    def proceed(self, handle: Handle, step: int) -> None:
        host = self.hosts[handle.allocation.platform]
        with host.lock:
            rem = host.attempts.get(handle.key)
        if rem is None or not rem.warm:
            return
        with contextlib.suppress(HostError):  # unanswered, the runner goes on after a short wait
            self._send(host, {"op": "decide", "adir": rem.adir, "step": step, "prune": False})

    def discard(self, number: int, platforms: set[str]) -> None:
        for key in platforms:
            host = self.hosts.get(key)
            if host is None or host.local or host.chan is None:
                continue
            with contextlib.suppress(HostError):  # a host that is down keeps a stale copy; no harm
                self._send(host, {"op": "clean", "dir": f"{host.base}/trials/{number}/checkpoint"})

    def detach(self) -> None:
        """As after ``kill -9`` of the coordinator: connections closed, agents exit, trials
        go on where they run, for ``coord resume`` to re-attach to."""
        if not self.closed:
            self.closed = True  # first: a reader whose channel closes must not re-attach
            self._stop.set()
            for host in self.hosts.values():
                host.conn.close()
                for rem in list(host.attempts.values()):
                    self._copy_failed(rem, "stdout", None)

    def close(self) -> None:
        if self.closed:
            return
        for host in self.hosts.values():
            for rem in list(host.attempts.values()):
                rem.reason = rem.reason or "cancelled"
                with contextlib.suppress(HostError):
                    self._send(host, {"op": "kill", "adir": rem.adir})
        deadline = time.monotonic() + 8
        while any(h.attempts for h in self.hosts.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for host in self.hosts.values():  # the run's warm workers end with it
            if host.chan is not None:
                with contextlib.suppress(HostError):
                    self._send(host, {"op": "stop_workers", "dir": self._slots_dir(host)})
        time.sleep(0.1 if any(h.chan is not None for h in self.hosts.values()) else 0)
        self.closed = True
        self._stop.set()
        for host in self.hosts.values():
            host.conn.close()
