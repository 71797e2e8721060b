"""One error hierarchy for everything coord reports to a user.

Every subclass carries the data a useful message needs (file, line, key path, host,
valid alternatives) and knows its process exit code; only ``cli.py`` turns these into
output, so library code never prints or exits.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path


class CoordError(Exception):
    """Root of every error coord raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(CoordError):
    """A user-supplied file or option is invalid.

    Args:
        message: what is wrong, in words.
        file: the file the value came from, if any.
        line: 1-based line in that file, if known.
        key: the key path, e.g. ``platforms.remote_4090.specs.memory_gb``.
        valid: the values that would have been accepted, if a finite set.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        valid: Iterable[str] | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.valid = sorted(valid) if valid is not None else None
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        hint = f" (valid: {', '.join(self.valid)})" if self.valid else ""
        return f"{where}{key}{self.message}{hint}"


class RegistryError(ConfigError):
    """The hardware registry is missing, malformed or inconsistent."""


class SpaceError(ConfigError):
    """A search space is malformed or does not match the model."""


class DataError(ConfigError):
    """The data file is missing, unreadable or lacks the named columns."""


class RoutingError(CoordError):
    """A trial can never run on any platform (infeasible), as opposed to 'all busy now'."""

    exit_code = 3

    def __init__(self, model_type: str, reasons: dict[str, str]) -> None:
        self.model_type = model_type
        self.reasons = reasons
        detail = "; ".join(f"{p}: {r}" for p, r in reasons.items()) or "no candidate platforms"
        super().__init__(f"no platform can ever run a {model_type} trial: {detail}")


class StoreError(CoordError):
    """The run directory is missing, not a coord run, or inconsistent."""

    exit_code = 2


class DiskFull(StoreError):
    """The file system holding the run directory is full (or over quota) while ``path`` was
    written. The coordinator stops as a crash would: running trials go on, detached, and
    ``coord resume`` (``run``) continues once space is freed. Exit code 75 (EX_TEMPFAIL:
    the same command works again later)."""

    exit_code = 75

    def __init__(self, path: Path, run: Path | None, reason: str = "No space left on device") -> None:
        self.path, self.run = path, run
        then = f"free space, then: coord resume {shlex.quote(str(run))}" if run is not None else \
            "free space and start again"
        super().__init__(f"{reason[:1].lower()}{reason[1:]} writing {path}; {then}")


class HostError(CoordError):
    """A remote host cannot be used; carries the platform key and host for the message."""

    exit_code = 4

    def __init__(self, platform: str, host: str, message: str) -> None:
        self.platform, self.host = platform, host
        super().__init__(f"{platform} ({host}): {message}")


class HostUnreachable(HostError):
    """No TCP connection, no SSH banner, or the session stalled past its deadline."""


class HostKeyError(HostError):
    """The host's key is unknown or changed: refused before authentication."""


class AuthError(HostError):
    """The host refused our key, or the key file is missing or too open."""


class SlotTaken(CoordError):
    """Another search took the slot first (slot leases): the attempt did not start; the loop
    places it again. Never shown to a user."""

    def __init__(self, platform: str) -> None:
        super().__init__(f"{platform}: the slot was taken by another search")
        self.platform = platform


class BackendError(CoordError):
    """A backend could not start or talk to its workers."""


class SearchFailed(CoordError):
    """The search ended without a single completed trial."""

    exit_code = 1


class TrackingError(CoordError):
    """MLflow cannot be reached, or refused what coord logged (``coord sync``). Exit code 69
    (EX_UNAVAILABLE: the same command works once the tracking server is back)."""

    exit_code = 69
