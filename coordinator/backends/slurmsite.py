"""Where a SLURM platform's commands and files go: this machine (coord runs on the login
node: plain ``sbatch`` and plain file reads of the shared work dir), or a login node
reached over SSH (a platform with ``host:``), on one verified connection.

The backend logic (``slurm.py``, ``slurmpilot.py``) is written once against ``Site``.
Over SSH every command is one exec on the login node, files go by SFTP, and the follow
thread's reads of all running jobs' files (stdout from the last byte seen, exit records,
claims) are ONE exec per poll that returns them all (``reads``), never one per job.
"""

from __future__ import annotations

import abc
import base64
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from coordinator.backends.agenthost import runners_hash
from coordinator.backends.slurmjob import SQUEUE_FORMAT, JobState, parse_squeue
from coordinator.backends.sshconn import HostConnection, Result
from coordinator.config.registry import Platform
from coordinator.config.slurmcfg import SlurmOptions
from coordinator.errors import HostError, HostUnreachable, RegistryError

log = logging.getLogger(__name__)

# Runs on the login node with the platform's Python (-S: standard library only, fast start).
# argv[1]: JSON [[path, offset], ...]; prints JSON [base64 of the bytes from offset, or null].
READER = r"""
import base64, json, sys
out = []
for path, off in json.loads(sys.argv[1]):
    try:
        with open(path, "rb") as fh:
            fh.seek(off)
            out.append(base64.b64encode(fh.read(1 << 20)).decode())
    except OSError:
        out.append(None)
print(json.dumps(out))
"""


class Site(abc.ABC):
    """The login node's commands and the shared work dir's files, as coord sees them."""

    remote = False
    label = "login node"  # for messages: where the commands run

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float = 60.0) -> Result:
        """Run a SLURM client command (or any command) on the login node."""

    @abc.abstractmethod
    def write(self, path: str, data: bytes) -> None:
        """Write a file atomically (temp name, then rename); FileNotFoundError if its
        directory does not exist (a pilot's closed inbox is told apart this way)."""

    @abc.abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abc.abstractmethod
    def reads(self, items: list[tuple[str, int]]) -> list[bytes | None]:
        """Each file's bytes from its offset (None: absent), all in one round trip."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    def rename(self, old: str, new: str) -> bool:
        """Atomic rename; False if ``old`` is gone (someone else took it)."""

    @abc.abstractmethod
    def expand(self, path: str) -> str:
        """``~`` as the login user's home."""

    def read(self, path: str) -> bytes | None:
        return self.reads([(path, 0)])[0]

    def fetch(self, path: str, local: Path) -> bool:
        """Copy a file home (the job's stderr); False if it does not exist."""
        data = self.read(path)
        if data is None:
            return False
        local.write_bytes(data)
        return True

    def close(self) -> None:
        return None


class LocalSite(Site):
    """coord on the login node: the shared file system is mounted here."""

    def run(self, argv: list[str], timeout: float = 60.0) -> Result:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(res.returncode, res.stdout, res.stderr)

    def write(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)

    def makedirs(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def reads(self, items: list[tuple[str, int]]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for path, off in items:
            try:
                with open(path, "rb") as fh:
                    fh.seek(off)
                    out.append(fh.read(1 << 20))
            except OSError:
                out.append(None)
        return out

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def rename(self, old: str, new: str) -> bool:
        try:
            os.rename(old, new)
        except FileNotFoundError:
            return False
        return True

    def expand(self, path: str) -> str:
        return os.path.expanduser(path)

    def fetch(self, path: str, local: Path) -> bool:
        try:
            shutil.copyfile(path, local)
        except OSError:
            return False
        return True


class SshSite(Site):
    """A login node over SSH: the same verified-host-key connection as an SSH host's
    (``sshconn.HostConnection``: the project's known_hosts only, never auto-accept)."""

    remote = True

    def __init__(self, platform: Platform, known_hosts: Path) -> None:
        self.conn = HostConnection(platform, known_hosts)
        self.label = self.conn.label[1]
        self.python = platform.python
        self._dirs: set[str] = set()
        self._home: str | None = None

    def run(self, argv: list[str], timeout: float = 60.0) -> Result:
        return self.conn.run(argv, timeout=timeout)

    def write(self, path: str, data: bytes) -> None:
        self.conn.put_bytes(data, path, mode=0o644)

    def makedirs(self, path: str) -> None:
        self.conn.makedirs(path.rstrip("/"), self._dirs)

    def reads(self, items: list[tuple[str, int]]) -> list[bytes | None]:
        if not items:
            return []
        res = self.conn.run([self.python, "-S", "-c", READER, json.dumps(items)], timeout=30)
        if res.exit_code != 0:
            raise HostUnreachable(*self.conn.label, f"reading the work dir failed: {res.stderr.strip()[-300:]}")
        return [None if x is None else base64.b64decode(x) for x in json.loads(res.stdout)]

    def exists(self, path: str) -> bool:
        return self.conn.exists(path)

    def rename(self, old: str, new: str) -> bool:
        try:
            self.conn.rename(old, new)
        except FileNotFoundError:
            return False
        except HostUnreachable:
            if self.conn.exists(old):
                raise
            return False  # SFTP servers report a missing source as a plain failure
        return True

    def expand(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            if self._home is None:
                self._home = self.conn.home()
            return self._home + path[1:]
        return path

    def close(self) -> None:
        self.conn.close()


def site_for(platform: Platform, known_hosts: Path) -> Site:
    """A platform with a ``host`` is reached over SSH; without one, coord is on the login node."""
    return SshSite(platform, known_hosts) if platform.host else LocalSite()


def partitions(site: Site, platform: str, timeout: float = 30.0) -> list[str]:
    """The cluster's partitions as ``sinfo`` on the login node lists them; HostError if it
    does not answer (over SSH: also an unknown host key, a failed login)."""
    try:
        res = site.run(["sinfo", "-h", "-o", "%P"], timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostUnreachable(platform, site.label, f"sinfo not reachable: {exc}") from None
    if res.exit_code != 0:
        raise HostUnreachable(platform, site.label, f"sinfo failed: {res.stderr.strip()[-300:] or res.exit_code}")
    return [x.strip().rstrip("*") for x in res.stdout.split()]


def check_partition(site: Site, platform: str, opts: SlurmOptions) -> None:
    """sinfo answers and the platform's partition exists (one error naming the key)."""
    found = partitions(site, platform)
    if opts.partition is not None and opts.partition not in found:
        raise RegistryError(f"platform {platform!r}: the cluster has no partition {opts.partition!r}",
                            file=opts.source, key=opts.key("partition"), valid=found)


def upload_runners(site: Site, work: str, runners_dir: Path) -> str:
    """The runner scripts in the shared work dir, by content hash (copied once)."""
    digest, files = runners_hash(runners_dir)
    dest = f"{work}/runners/{digest}"
    if not site.exists(f"{dest}/.complete"):
        site.makedirs(dest)
        for name, data in files.items():
            site.write(f"{dest}/{name}", data)
        site.write(f"{dest}/.complete", b"")
    return dest


def upload_data(site: Site, work: str, data: dict[str, Any]) -> str:
    """The data file in the shared work dir, named by its sha256 (copied once)."""
    dest = f"{work}/data/{data['sha256']}.csv"
    if not site.exists(dest):
        site.makedirs(f"{work}/data")
        site.write(dest, Path(data["path"]).read_bytes())
    return dest


def squeue_states(site: Site, ids: list[str]) -> dict[str, JobState] | None:
    """All of these jobs' states in ONE squeue call; None if squeue did not answer."""
    try:
        res = site.run(["squeue", "-h", "--states=all", "-j", ",".join(ids), "-O", SQUEUE_FORMAT], 30)
    except (OSError, subprocess.SubprocessError, HostError) as exc:
        log.warning("squeue failed: %s", exc)
        return None
    if res.exit_code != 0:
        if "Invalid job id" in res.stderr:
            return {}  # none of them is known any more
        log.warning("squeue failed: %s", res.stderr.strip())
        return None
    return parse_squeue(res.stdout)
