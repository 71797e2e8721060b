"""The coordinator's half of slot leases (the host's half, and the rules: runners/leases.py).

Several ``coord search`` processes (terminals, users) share a host's slots through lease
files on the host itself. This side names the lease (``Sharing``: who holds it, with which
priority), tells each host's agent where its lease directory is, and keeps what the agent
last said this coordinator may use there (``Share``), which the loop's router reads.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Any

from coordinator.config.registry import Platform

LEASE_ENV = "COORD_LEASE_DIR"  # where a local platform's leases live when the registry names no lease_dir


@dataclass(frozen=True)
class Sharing:
    """This coordinator as a lease holder: one per run (a resumed run holds the same lease)."""

    holder: str
    run: str
    priority: int = 0
    preempt: bool = False
    label: str = ""

    @classmethod
    def for_run(cls, run_id: str, run_root: str, priority: int = 0, preempt: bool = False) -> Sharing:
        where = f"{socket.gethostname()}:{os.path.abspath(run_root)}"
        holder = f"{_safe(run_id)[:80]}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"
        label = f"{_user()}@{socket.gethostname()} pid {os.getpid()}"
        return cls(holder, run_id, priority, preempt, label)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "run"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the number will do
        return str(os.getuid())


@dataclass
class Share:
    """What a host's agent last said this coordinator may use there."""

    others: int = 0  # slots to treat as taken: other searches' trials, or kept for waiters that come first
    gpus: frozenset[int] = frozenset()  # GPUs other searches' trials hold
    yield_n: int = 0  # own trials a preempting higher-priority search needs stopped
    seen: bool = False

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> Share:
        return cls(int(view.get("others", 0)), frozenset(int(g) for g in view.get("gpus", [])),
                   int(view.get("yield", 0)), True)


def lease_dir(p: Platform) -> tuple[str, bool]:
    """(directory on the host, shared by several users?): the registry's ``lease_dir``, else
    ``<work_dir>/leases`` (one user's coordinators; a local platform: $COORD_LEASE_DIR if set)."""
    if p.lease_dir:
        return p.lease_dir, True
    if p.connection == "local" and os.environ.get(LEASE_ENV):
        return os.environ[LEASE_ENV], False
    return f"{p.work_dir.rstrip('/')}/leases", False


def hello(sharing: Sharing, p: Platform, waiting: int) -> dict[str, Any]:
    """The agent request that opens (or, after a re-attach, re-opens) the lease on ``p``."""
    path, shared = lease_dir(p)
    return {"op": "lease", "dir": path, "shared": shared, "holder": sharing.holder, "ttl": p.lease_ttl_s,
            "meta": {"run": sharing.run, "label": sharing.label, "priority": sharing.priority,
                     "preempt": sharing.preempt, "slots": p.max_concurrent_jobs, "waiting": waiting}}
