"""What the agent backend keeps per host and per running attempt, and the one-time uploads.

A host's runner scripts go to ``<work_dir>/runners/<hash>/`` (by content hash, so several
coordinators and versions share the directory safely), the data file to
``<work_dir>/data/<sha256>.csv`` (reused while the hash matches).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from coordinator import protocol
from coordinator.backends.base import Handle
from coordinator.backends.leasing import Share
from coordinator.backends.localconn import LocalConnection
from coordinator.backends.plan import HostLayout
from coordinator.backends.sshconn import HostConnection
from coordinator.config.registry import Platform
from coordinator.errors import HostError


def runners_hash(runners_dir: Path) -> tuple[str, dict[str, bytes]]:
    files = {p.name: p.read_bytes() for p in sorted(runners_dir.glob("*.py"))}
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16], files


@dataclass
class Attempt:
    """One launched attempt as the backend follows it."""

    handle: Handle
    adir: str  # its directory on the host
    out: IO[str] | None  # the local copy of an SSH attempt's stdout; None on this machine
    started: float
    parser: protocol.MetricParser
    offset: int = 0  # the agent's byte offset in the host's stdout: a re-attach goes on from it
    reason: str | None = None
    done: bool = False
    warm: bool = False  # a built-in model in the slot's warm worker (it can be asked to stop)
    ckpt: tuple[str, str] = ("", "")  # (remote, local) checkpoint directories of an SSH attempt
    logs: tuple[str, ...] = ()  # its stdout and stderr in the run directory


@dataclass
class Host:
    """One host: its connection, its agent channel, what is uploaded, what runs there."""

    platform: Platform
    conn: HostConnection | LocalConnection
    work: str
    base: str  # this run's directory on the host (the run directory itself on this machine)
    cwd: str  # where its trials start: the user's directory here, the work dir on a host
    runners: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    chan: Any = None
    generation: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    attempts: dict[str, Attempt] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    fetching: bool = False  # copying a checkpoint home (bounded by SFTP's own 30 s timeout)
    share: Share = field(default_factory=Share)  # what the agent last said this run may use of the host
    waiting: int = 0  # trials this run waits to place here, as last told to the agent
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)  # the agent's answers, by request id
    answered: threading.Condition = field(default_factory=threading.Condition)

    @property
    def local(self) -> bool:
        return isinstance(self.conn, LocalConnection)

    def layout(self) -> HostLayout:
        """Where this host keeps the run (valid once prepared: the runners are known)."""
        assert self.runners is not None, "host not prepared"
        return HostLayout(self.base, self.runners, self.platform.python, self.cwd, self.platform.threads_per_slot())


def upload_runners(host: Host, runners_dir: Path) -> str:
    """The runner scripts on ``host``, uploaded once per content hash; their directory."""
    assert isinstance(host.conn, HostConnection)
    digest, files = runners_hash(runners_dir)
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


def ensure_data(host: Host, data: dict[str, Any]) -> str:
    """Where the data file lies on ``host``: uploaded once, named by its sha256."""
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
