"""The project's known_hosts file: checked before anything connects, and rewritten by
``coord hosts trust`` so that a host's trusted key is the one its line holds.

paramiko's loader skips lines it cannot use but lets bad base64 or key data escape as a
traceback, and, like ssh, believes the first line that names a host.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import paramiko

from coordinator.config.registry import Platform, Registry
from coordinator.errors import ConfigError


def default_known_hosts() -> Path:
    return Path(os.environ.get("COORD_KNOWN_HOSTS", "~/.ssh/known_hosts")).expanduser()


def known_hosts_path(registry: Registry) -> Path:
    """The one file host keys are checked against: the registry's ``known_hosts:``, else
    ``$COORD_KNOWN_HOSTS``, else ``~/.ssh/known_hosts``."""
    return Path(registry.known_hosts).expanduser() if registry.known_hosts else default_known_hosts()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def check_known_hosts(path: Path) -> None:
    """Raise ConfigError naming ``path:line`` for a line paramiko's loader would crash on
    (it skips lines it cannot use, but bad base64 or key data escapes as a traceback); a
    missing file is fine: every host is then unknown and refused."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot read the known_hosts file: {exc.strerror or exc}", file=str(path)) from None
    for lineno, data in enumerate(raw.splitlines(), 1):
        try:
            line = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text in the known_hosts file; fix or delete this line", file=str(path),
                              line=lineno) from None
        if not line or line.startswith("#"):
            continue
        try:
            paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
        except paramiko.SSHException:
            continue  # skipped by paramiko's loader too
        except Exception as exc:  # InvalidHostKey, ValueError: whatever the key parser raises
            raise ConfigError(f"malformed known_hosts line ({_short(exc)}); fix or delete this line",
                              file=str(path), line=lineno) from None


def _short(exc: BaseException) -> str:
    inner = getattr(exc, "exc", None)  # InvalidHostKey wraps the base64 error
    return str(inner or exc).splitlines()[0][:120] or type(exc).__name__


def add_known_host(known_hosts: Path, platform: Platform, key: Any) -> tuple[str, list[str]]:
    """Record a trusted key, replacing every line that names this host: paramiko, like ssh,
    takes the first line that matches, so an appended key would lose to a stale one.

    Returns ``"added"``, ``"unchanged"`` (the key was there already) or ``"replaced"``, and
    the fingerprints of the other keys it replaced. Other lines, the file's mode (0600 when
    new) and a symlinked file stay as they are; the rewrite is atomic.
    """
    path = known_hosts.resolve()  # through a symlink: replace the file, keep the link
    check_known_hosts(path)
    name = known_hosts_name(platform.host or "", platform.port)
    wanted = f"{key.get_name()} {key.get_base64()}"
    try:
        old = path.read_text(encoding="utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        old, mode = "", 0o600
    kept, replaced = [], []
    for line in old.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@")):  # markers (@revoked) stay
            names = fields[0].split(",")
            others = [n for n in names if not _names_host(n, name)]
            if len(others) < len(names):
                replaced.append(" ".join(fields[1:3]))
                if others:  # a line shared with other names keeps them
                    kept.append(" ".join([",".join(others), *fields[1:]]))
                continue
        kept.append(line)
    changed = [r for r in replaced if r != wanted]
    if replaced == [wanted]:
        return "unchanged", []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write("".join(f"{ln}\n" for ln in [*kept, f"{name} {wanted}"]))
            fh.flush()
            os.fsync(fh.fileno())
        if not paramiko.HostKeys(str(tmp)).check(name, key):  # read back as connect() reads it
            raise ConfigError(f"{name} would still not match this key; nothing written", file=str(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    done = "replaced" if changed else "unchanged" if replaced else "added"
    return done, [_b64_fingerprint(r.split()[1]) for r in changed]


def _names_host(entry: str, name: str) -> bool:
    """Whether one host name of a known_hosts line is ``name``, plainly or hashed (``|1|salt|hash``)."""
    if entry.startswith("|1|"):
        try:
            return bool(paramiko.HostKeys.hash_host(name, entry) == entry)
        except (ValueError, IndexError, AssertionError):  # a damaged salt names no one (paramiko asserts)
            return False
    return entry == name


def _b64_fingerprint(b64: str) -> str:
    try:
        digest = hashlib.sha256(base64.b64decode(b64)).digest()
    except ValueError:
        return "an unreadable key"
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
