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
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

from coordinator import protocol
from coordinator.backends import leasing
from coordinator.backends.agenthost import Attempt, Host, ensure_data, upload_runners
from coordinator.backends.agentstream import AgentStream
from coordinator.backends.base import Backend, Event, Handle, drain
from coordinator.backends.carry import carry_checkpoint
from coordinator.backends.hostwatch import HostSample, HostWatch, watch_hosts
from coordinator.backends.leasing import Share, Sharing
from coordinator.backends.localconn import LocalConnection
from coordinator.backends.plan import HostLayout, build
from coordinator.backends.sshconn import HostConnection
from coordinator.config.registry import Platform
from coordinator.errors import HostError, HostUnreachable, SlotTaken
from coordinator.records import Allocation, Recipe

log = logging.getLogger(__name__)
CLAIM_WAIT_S = 15.0  # a slot claim is a few file operations on the host: this long means the host is in trouble


class AgentBackend(AgentStream, Backend):
    """Runs attempts on local and SSH platforms. See the module docstring.

    ``local_root`` is the run directory: local attempts write there directly."""

    def __init__(self, platforms: dict[str, Platform], known_hosts: Path, runners_dir: Path, run_id: str,
                 local_root: Path, events: queue.Queue[Event] | None = None,
                 parser_factory: Any = protocol.MetricParser, stall_s: float = 5.0, reattach_s: float = 20.0,
                 cwd: str | None = None, sharing: Sharing | None = None) -> None:
        cwd = cwd if cwd is not None else os.getcwd()  # where local trials start: the user's directory
        self.hosts: dict[str, Host] = {}
        ssh: dict[str, HostConnection] = {}
        for k, p in sorted(platforms.items(), key=lambda kv: kv[1].jump is not None):  # jump hosts first
            if p.connection == "ssh":
                ssh[k] = HostConnection(p, known_hosts, ssh.get(p.jump) if p.jump else None)
                work = p.work_dir.rstrip("/")
                self.hosts[k] = Host(p, ssh[k], work, f"{work}/runs/{run_id}", work)
            elif p.connection == "local":
                self.hosts[k] = Host(p, LocalConnection(p), str(local_root), str(local_root), cwd)
        self.runners_dir = runners_dir
        # where this machine keeps every attempt's record and copies: the run directory
        self.local_layout = HostLayout(str(local_root), str(runners_dir), "", cwd)
        self.run_id = run_id
        self.events: queue.Queue[Event] = events if events is not None else queue.Queue()
        self.parser_factory = parser_factory
        self.stall_s, self.reattach_s = stall_s, reattach_s
        self.sharing = sharing  # None: no slot leases (this run alone on its hosts)
        self.closed = False
        self._stop = threading.Event()
        threading.Thread(target=self._watchdog, daemon=True).start()
        self.watch: HostWatch = watch_hosts(self.hosts, runners_dir)  # load, GPUs, power: sampled on the host

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
                        host.work = host.cwd = f"{host.conn.home()}/{host.work[2:]}"
                    host.base = f"{host.work}/runs/{self.run_id}"
                    host.runners = upload_runners(host, self.runners_dir)
                self._start_agent(host)
            except (OSError, EOFError, paramiko.SSHException) as exc:  # never let paramiko crash the loop
                host.conn.close()
                raise HostUnreachable(*host.conn.label, f"cannot prepare the host: {exc}") from None

    def _hello(self, host: Host) -> None:
        if self.sharing is not None:
            self._send(host, leasing.hello(self.sharing, host.platform, host.waiting))

    def _claimed(self, host: Host, key: str) -> None:
        """Wait for the agent's answer to a lease claim; raise SlotTaken if it was refused."""
        deadline = time.monotonic() + CLAIM_WAIT_S
        with host.answered:
            while key not in host.replies:
                left = deadline - time.monotonic()
                if left <= 0 or host.chan is None or host.chan.closed:
                    raise HostUnreachable(*host.conn.label, "no answer from the agent to a slot claim")
                host.answered.wait(min(left, 0.5))
            answer = host.replies.pop(key)
        if "view" in answer:
            host.share = Share.from_view(answer["view"])
        if answer.get("error"):
            raise HostUnreachable(*host.conn.label, str(answer["error"]))
        if not answer.get("granted"):
            raise SlotTaken(host.platform.key)

    def shares(self) -> dict[str, Share]:
        return {k: h.share for k, h in self.hosts.items() if self.sharing is not None and h.share.seen}

    def want(self, waiting: dict[str, int]) -> None:
        """Tell each host's agent how many trials this run waits to place there (its claim
        on slots that free up: a higher priority, or fair share, takes them first)."""
        if self.sharing is None:
            return
        for key, n in waiting.items():
            host = self.hosts.get(key)
            if host is None or host.waiting == n or host.chan is None:
                continue
            host.waiting = n
            with contextlib.suppress(HostError):  # re-sent with the lease after a re-attach
                self._send(host, {"op": "lease", "meta": {"waiting": n}})

    def _send(self, host: Host, request: dict[str, Any]) -> None:
        line = (json.dumps(request) + "\n").encode()
        with host.lock:
            try:
                host.chan.sendall(line)
            except (OSError, EOFError, paramiko.SSHException, AttributeError) as exc:
                raise HostUnreachable(*host.conn.label, f"agent unreachable: {exc}") from None

    # -- the contract ----------------------------------------------------------------------
    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle:
        """Start an attempt. Raises HostError, before anything runs, if the host is unusable."""
        host = self.hosts[allocation.platform]
        self.prepare(allocation.platform)
        handle = Handle(recipe.number, attempt, allocation)
        try:
            data_path = ensure_data(host, recipe.data) if recipe.data is not None else None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostUnreachable(*host.conn.label, f"cannot upload the data: {exc}") from None
        plan = build(recipe, attempt, allocation, host.layout(), data_path)
        here = self.local_layout
        local_dir, local_ckpt = Path(here.attempt_dir(recipe.number, attempt)), Path(here.checkpoint_dir(recipe.number))
        local_dir.mkdir(parents=True, exist_ok=True)
        out = None
        if not host.local:  # a local attempt writes its files itself; the host keeps the placed spec.json
            (local_dir / "plan.json").write_text(json.dumps(plan.record, indent=2, sort_keys=True), encoding="utf-8")
            # "w": a re-attach after a restart streams the output again from its first byte
            out = open(local_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        if isinstance(host.conn, HostConnection):
            carry_checkpoint(host.conn, host.dirs, local_ckpt, plan.checkpoint_dir)
        rem = Attempt(handle, plan.attempt_dir, out, time.monotonic(), self.parser_factory(),
                      warm=plan.warm is not None, ckpt=(plan.checkpoint_dir, str(local_ckpt)),
                      logs=(str(local_dir / "stdout"), str(local_dir / "stderr")))
        with host.lock:
            host.attempts[handle.key] = rem
        request = plan.request(handle.key)
        if self.sharing is not None:
            request["lease"] = {"n": len(allocation.slots), "gpus": list(allocation.gpus)}
        try:
            self._send(host, request)
            if self.sharing is not None:
                self._claimed(host, handle.key)
        except (HostError, SlotTaken):
            with host.lock:
                host.attempts.pop(handle.key, None)
            if rem.out is not None:
                rem.out.close()
            raise
        return handle

    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def host_sample(self, platform: str) -> HostSample | None:
        return self.watch.latest(platform)

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
            self.watch.close()
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
        for host in self.hosts.values():  # the run's warm workers end with it, and its leases
            if host.chan is not None:
                with contextlib.suppress(HostError):
                    self._send(host, {"op": "stop_workers", "dir": f"{host.base}/slots"})
                    if self.sharing is not None:
                        self._send(host, {"op": "lease_close"})
        time.sleep(0.1 if any(h.chan is not None for h in self.hosts.values()) else 0)
        self.closed = True
        self._stop.set()
        self.watch.close()
        for host in self.hosts.values():
            host.conn.close()
