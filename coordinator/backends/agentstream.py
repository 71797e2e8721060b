"""How the agent backend reads its agents: one reader thread per host channel, a watchdog
for silent channels, and re-attach from the last byte seen (the agent protocol in
docs/architecture.md).

Each agent line is ``TAG<TAB>OFFSET<TAB>stdout line`` (OFFSET: the byte offset in the host's
file where the line ends, so a new agent can go on from there) or
``TAG<TAB>[coord-end] {...}`` (exit code, stderr tail, the host's measure of the run time,
whether the host stopped it at its time limit). A checkpoint line makes the reader copy the
checkpoint home before it reads on, so a trial's end is never seen before its checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator import protocol
from coordinator.backends.agenthost import Attempt, Host
from coordinator.backends.base import EndEvent, Event, MetricEvent
from coordinator.backends.carry import fetch_checkpoint
from coordinator.backends.leasing import Share
from coordinator.backends.sshconn import HostConnection
from coordinator.errors import DiskFull, HostError
from coordinator.records import Outcome
from coordinator.store.files import disk_full

log = logging.getLogger("coordinator.backends.agent")  # one logger name for the whole backend
LOCAL_STALL_S = 15.0  # a local agent is never cut off by a network: silence there is a starved machine


class AgentStream:
    """The reading half of ``AgentBackend`` (a mixin: it shares the backend's state)."""

    hosts: dict[str, Host]
    events: queue.Queue[Event]
    closed: bool
    stall_s: float
    reattach_s: float
    _stop: threading.Event

    if TYPE_CHECKING:  # provided by AgentBackend and Backend (a stub here would shadow them in the MRO)
        def _send(self, host: Host, request: dict[str, Any]) -> None: ...

        def _note_disk_full(self, full: DiskFull | None) -> None: ...

        def _hello(self, host: Host) -> None: ...

    def _start_agent(self, host: Host) -> None:
        chan = host.conn.open_command([host.platform.python, "-S", f"{host.runners}/remote.py", "agent"], 30.0)
        chan.settimeout(None)  # the reader blocks; the watchdog bounds silence instead
        host.generation += 1
        host.chan = chan
        host.last_seen = time.monotonic()
        threading.Thread(target=self._read_agent, args=(host, chan, host.generation), daemon=True).start()
        self._hello(host)  # the slot lease first: a re-attached agent renews the same one

    def _read_agent(self, host: Host, chan: Any, generation: int) -> None:
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

    def _line(self, host: Host, raw: bytes) -> None:
        """One line of the agent: ``TAG<TAB>OFFSET<TAB>stdout line`` or ``TAG<TAB>[coord-end] {...}``."""
        line = raw.decode("utf-8", "replace")
        if line.startswith(protocol.HEARTBEAT_PREFIX):
            return
        if line.startswith((protocol.LEASE_PREFIX, protocol.REPLY_PREFIX)):
            self._lease_line(host, line)
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

    def _lease_line(self, host: Host, line: str) -> None:
        """The agent's view of the host's slot leases, or its answer to a claim."""
        prefix, _, payload = line.partition(" ")
        try:
            info = json.loads(payload)
        except ValueError:
            return
        if not isinstance(info, dict):
            return
        if prefix == protocol.REPLY_PREFIX:
            with host.answered:
                host.replies[str(info.get("id"))] = info
                host.answered.notify_all()
        elif "error" in info:
            log.warning("%s: slot leases: %s", host.platform.key, info["error"])
        else:
            host.share = Share.from_view(info)

    def _copy(self, rem: Attempt, text: str | None) -> None:
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

    def _copy_failed(self, rem: Attempt, name: str, exc: OSError | None) -> None:
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

    def _end(self, host: Host, rem: Attempt, payload: str) -> None:
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
                                        duration_s=float(seconds) if isinstance(seconds, (int, float)) else 0.0,
                                        stderr=str(info.get("stderr") or "")))

    def _finish(self, host: Host, rem: Attempt, outcome: Outcome) -> None:
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
                        duration_s=outcome.duration_s if outcome.duration_s > 0 else now - rem.started,
                        stderr=outcome.stderr, logs=rem.logs)
        self.events.put(EndEvent(rem.handle, final, now))

    def _reattach(self, host: Host, generation: int) -> None:
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
