"""Checkpoints that follow a trial from one SSH host to the next, with no shared file
system: each checkpoint a trial announces (``[coord-ckpt]``) is copied into the run
directory at once, and the newest valid one is uploaded to the host of the next attempt.
Copies are verified by their checksum both ways; a damaged one is never passed on."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import paramiko

from coordinator import protocol
from coordinator.backends.sshconn import HostConnection
from coordinator.errors import DiskFull, HostError, HostUnreachable
from coordinator.store.files import disk_full

log = logging.getLogger(__name__)
KEEP = 2  # as on the host: the newest two


def carry_checkpoint(conn: HostConnection, known_dirs: set[str], local: Path, remote: str) -> None:
    """Before an attempt starts on an SSH host, put the trial's newest valid checkpoint
    there (the one a previous attempt on any host wrote and this run copied home)."""
    for path in sorted(local.glob("step-*.ckpt"), reverse=True):
        data = path.read_bytes()
        if not protocol.checkpoint_ok(data):
            continue
        try:  # always: a file of that name there may be older, or another member's (PBT)
            conn.makedirs(remote, known_dirs)
            conn.put_bytes(data, f"{remote}/{path.name}", 0o600)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostUnreachable(*conn.label, f"cannot upload the checkpoint: {exc}") from None
        return


def fetch_checkpoint(conn: HostConnection, line: str, remote: str, local: Path) -> DiskFull | None:
    """Copy the checkpoint a trial just announced into the run directory, so a retry
    elsewhere can resume from it even if this host never comes back. A copy that cannot
    be written here is logged and skipped (the host keeps its own); a full disk is
    returned, for the loop to stop on."""
    try:
        name = str(json.loads(line[len(protocol.CKPT_PREFIX):])["file"])
        if "/" in name or not name.endswith(".ckpt"):
            return None
        data = conn.get_bytes(f"{remote}/{name}", limit=1 << 34)
    except (ValueError, KeyError, TypeError, HostError) as exc:
        log.warning("%s: checkpoint in %s not copied: %s", conn.label[0], remote, exc)
        return None
    if data is None or not protocol.checkpoint_ok(data):
        log.warning("%s: checkpoint %s/%s is damaged; not copied", conn.label[0], remote, name)
        return None
    tmp = local / f".{name}.tmp"
    try:
        local.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, local / name)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a partial copy would hold on to the space
        full = disk_full(exc, local / name)  # a full disk is said once, by the loop's error
        (log.info if full else log.warning)("%s: checkpoint %s not copied home: %s", conn.label[0], local / name,
                                            exc.strerror or exc)
        return full
    for old in sorted(local.glob("step-*.ckpt"), reverse=True)[KEEP:]:
        old.unlink(missing_ok=True)
    return None
