"""One SSH connection per host, verified and bounded.

Why paramiko directly rather than fabric's ``Connection``: fabric's constructor loads the
user's system known_hosts and installs ``AutoAddPolicy`` (accept any new key); coord must
verify every host key against one known_hosts file it controls, reject unknown and changed
keys before authentication, and never forward the agent. Every remote operation runs under
a deadline of our own, because paramiko can wait forever on a peer that stopped answering.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko

from coordinator.config.knownhosts import check_known_hosts, fingerprint
from coordinator.config.registry import Platform
from coordinator.errors import AuthError, ConfigError, HostKeyError, HostUnreachable

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 5


def quote_command(argv: Sequence[str]) -> str:
    """Quote every word for a POSIX shell (bash, dash): values arrive byte-identical."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class _Capture(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Records the offered key and refuses it: used by ``coord hosts trust`` to show a
    fingerprint without authenticating or running anything."""

    def __init__(self) -> None:
        self.key: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.key = key
        raise paramiko.SSHException("host key captured, not trusted")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def check_identity_file(platform: Platform) -> str | None:
    if not platform.identity_file:
        return None
    path = Path(platform.identity_file).expanduser()
    if not path.is_file():
        raise AuthError(platform.key, platform.host or "?", f"identity file {path} not found")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(platform.key, platform.host or "?",
                        f"identity file {path} is readable by others; run: chmod 600 {path}")
    return str(path)


class HostConnection:
    """A verified, reusable connection to one platform's host.

    Args:
        platform: the registry entry (host, port, user, identity_file).
        known_hosts: the only file host keys are checked against.
    """

    def __init__(self, platform: Platform, known_hosts: Path, jump: HostConnection | None = None) -> None:
        self.platform = platform
        self.known_hosts = known_hosts
        self.jump = jump  # the connection to tunnel through, host key checked end to end
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.lock = threading.Lock()
        self.sftp_lock = threading.Lock()

    @property
    def label(self) -> tuple[str, str]:
        return self.platform.key, f"{self.platform.user + '@' if self.platform.user else ''}{self.platform.host}"

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> paramiko.SSHClient:
        with self.lock:
            if self.client is not None and self._alive():
                return self.client
            self._close_locked()
            p = self.platform
            key_file = check_identity_file(p)
            try:  # checked before a search too; edited since, it stops this host, not the search
                check_known_hosts(self.known_hosts)
            except ConfigError as exc:
                raise HostKeyError(*self.label, str(exc)) from None
            client = paramiko.SSHClient()
            if self.known_hosts.exists():
                client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                sock = self._tunnel(timeout) if self.jump is not None else None
                client.connect(p.host or "", port=p.port, username=p.user, key_filename=key_file, sock=sock,
                               timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                               channel_timeout=timeout, allow_agent=key_file is None,
                               look_for_keys=key_file is None)
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostKeyError(*self.label, f"host key CHANGED (got {fingerprint(exc.key)}); refusing to "
                                   f"connect. If the host was reinstalled, remove its line from {self.known_hosts} "
                                   f"and run: coord hosts trust {p.key}") from None
            except paramiko.SSHException as exc:
                client.close()
                if "not found in known_hosts" in str(exc):
                    raise HostKeyError(*self.label, f"unknown host key (not in {self.known_hosts}); check it, "
                                       f"then run: coord hosts trust {p.key}") from None
                if isinstance(exc, paramiko.AuthenticationException):
                    raise AuthError(*self.label, f"authentication failed: {exc}") from None
                if "No existing session" in str(exc) or "banner" in str(exc):
                    raise HostUnreachable(*self.label, f"no SSH banner within {timeout:g}s: the port answers but "
                                          "no SSH server speaks there (or it is stalled)") from None
                raise HostUnreachable(*self.label, f"SSH failed: {exc}") from None
            except (OSError, EOFError) as exc:
                client.close()
                raise HostUnreachable(*self.label, f"cannot connect: {exc}") from None
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(KEEPALIVE_S)
            self.client = client
            return client

    def _tunnel(self, timeout: float) -> paramiko.Channel:
        """A direct-tcpip channel through the jump host (its own key verified first)."""
        assert self.jump is not None
        transport = self.jump.connect(timeout).get_transport()
        if transport is None:
            raise HostUnreachable(*self.label, f"jump host {self.jump.platform.key} closed")
        try:
            return transport.open_channel("direct-tcpip", (self.platform.host or "", self.platform.port),
                                          ("127.0.0.1", 0), timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(*self.label, f"no tunnel through {self.jump.platform.key}: {exc}") from None

    def _alive(self) -> bool:
        t = self.client.get_transport() if self.client else None
        return bool(t and t.is_active())

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> Result:
        """Run a command (argv, every word quoted) and wait, at most ``timeout`` seconds."""
        chan = self.open_command(argv, timeout)
        try:
            chan.shutdown_write()
            out = chan.makefile("rb").read()  # small outputs: the window never fills
            err = chan.makefile_stderr("rb").read()
            code = chan.recv_exit_status()
        except TimeoutError:
            self.close()
            raise HostUnreachable(*self.label, f"no answer within {timeout:g}s") from None
        finally:
            chan.close()
        return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def open_command(self, argv: Sequence[str], timeout: float) -> paramiko.Channel:
        client = self.connect()
        transport = client.get_transport()
        if transport is None:
            raise HostUnreachable(*self.label, "connection closed")
        try:
            chan = transport.open_session(timeout=timeout)
            chan.settimeout(timeout)
            chan.exec_command(quote_command(argv))  # never agent forwarding, never a pty
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostUnreachable(*self.label, f"cannot open a session: {exc}") from None
        return chan

    def sftp_call(self, what: str, fn: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run one SFTP operation. paramiko's SFTPClient is not thread-safe, and reader
        threads fetch logs while the loop uploads specs: one lock serialises them. Every
        failure but a missing file becomes HostUnreachable."""
        client = self.connect()
        with self.sftp_lock:
            try:
                if self._sftp is None:
                    self._sftp = client.open_sftp()
                    self._sftp.get_channel().settimeout(30.0)
                return fn(self._sftp)
            except FileNotFoundError:
                raise
            except (OSError, paramiko.SSHException, EOFError) as exc:
                self._sftp = None
                raise HostUnreachable(*self.label, f"SFTP {what} failed: {exc}") from None

    def put_bytes(self, data: bytes, remote: str, mode: int = 0o600) -> None:
        """Write a remote file atomically (temp name, then rename)."""
        tmp = f"{remote}.tmp{os.getpid()}"

        def put(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(tmp, "wb") as fh:
                fh.write(data)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, remote)
        self.sftp_call(f"write {remote}", put)

    def get_bytes(self, remote: str, limit: int = 1 << 20) -> bytes | None:
        """The last ``limit`` bytes of a remote file, or None if it does not exist."""
        def get(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(remote, "rb") as fh:
                size = fh.stat().st_size or 0
                if size > limit:
                    fh.seek(size - limit)
                return bytes(fh.read(limit))
        try:
            return self.sftp_call(f"read {remote}", get)
        except FileNotFoundError:
            return None

    def exists(self, remote: str) -> bool:
        try:
            self.sftp_call(f"stat {remote}", lambda sftp: sftp.stat(remote))
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, path: str, known: set[str]) -> None:
        """``mkdir -p`` over SFTP (0700), remembering what exists in ``known``."""
        parts = path.split("/")
        for i in range(2, len(parts) + 1):
            sub = "/".join(parts[:i])
            if not sub or sub in known:
                continue
            if not self.exists(sub):
                def mkdir(sftp: paramiko.SFTPClient, d: str = sub) -> None:
                    sftp.mkdir(d, 0o700)
                try:
                    self.sftp_call(f"mkdir {sub}", mkdir)
                except HostUnreachable:
                    if not self.exists(sub):  # another trial may have made it meanwhile
                        raise
            known.add(sub)

    def rename(self, old: str, new: str) -> None:
        self.sftp_call(f"rename {old}", lambda sftp: sftp.posix_rename(old, new))

    def home(self) -> str:
        return self.sftp_call("normalize", lambda sftp: str(sftp.normalize(".")))

    def close(self) -> None:
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # closing a dead session must never raise
                self._sftp.close()
            self._sftp = None
        if self.client is not None:
            self.client.close()
            self.client = None


def scan_host_key(platform: Platform, timeout: float = CONNECT_TIMEOUT_S) -> paramiko.PKey:
    """The key the host offers, fetched without authenticating or running anything."""
    client = paramiko.SSHClient()
    policy = _Capture()
    client.set_missing_host_key_policy(policy)
    try:
        client.connect(platform.host or "", port=platform.port, username=platform.user or "coord",
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=False, look_for_keys=False)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        if policy.key is None:
            raise HostUnreachable(platform.key, platform.host or "?", f"cannot fetch the host key: {exc}") from None
    finally:
        client.close()
    if policy.key is None:
        raise HostUnreachable(platform.key, platform.host or "?", "host offered no key")
    return policy.key
