"""The local machine seen through the same narrow interface as an SSH host.

The agent backend talks to one ``remote.py agent`` per host. On this machine the agent is
a child process on two pipes instead of an SSH channel, so local trials are started
detached, write their output to their attempt directory and outlive the coordinator:
after ``kill -9`` of the coordinator, ``coord resume`` re-attaches to them exactly as it
does on an SSH host.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from typing import IO, Any

from coordinator.config.registry import Platform
from coordinator.errors import HostUnreachable


class PipeChannel:
    """The subset of ``paramiko.Channel`` the agent backend uses, over a child's pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in: IO[bytes] = proc.stdin
        self._out: IO[bytes] = proc.stdout

    @property
    def closed(self) -> bool:
        return self.proc.poll() is not None or self._in.closed

    def settimeout(self, timeout: float | None) -> None:
        return None  # pipes block; the backend's watchdog bounds silence

    def sendall(self, data: bytes) -> None:
        self._in.write(data)
        self._in.flush()

    def makefile(self, mode: str) -> IO[bytes]:
        return self._out

    def recv(self, size: int) -> bytes:
        """What the agent wrote so far (at most ``size`` bytes); b"" once it has exited."""
        return os.read(self._out.fileno(), size)

    def close(self) -> None:
        # stdin's end tells the agent to exit; the trials it started go on (their own sessions)
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class LocalConnection:
    """A "connection" to this machine: starts the agent as a child process."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.chan: PipeChannel | None = None

    @property
    def label(self) -> tuple[str, str]:
        return self.platform.key, "localhost"

    def open_command(self, argv: Sequence[str], timeout: float) -> Any:
        # its own session: a Ctrl-C meant for the coordinator must not kill the agent that
        # the coordinator still needs to cancel the running trials
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, start_new_session=True, bufsize=0)
        except OSError as exc:
            raise HostUnreachable(*self.label, f"cannot start the local agent with {argv[0]}: {exc}") from None
        self.chan = PipeChannel(proc)
        return self.chan

    def home(self) -> str:
        return os.path.expanduser("~")

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()
            self.chan = None
