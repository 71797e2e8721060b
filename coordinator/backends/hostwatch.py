"""Facts sampled on each agent host every few seconds (``runners/hostfacts.py`` run there with
the host's Python): load, this run's own CPU use, GPU utilisation and others' GPU
processes, mains power. For the ``available: {when_idle: ..., on_ac_power: ...}``
conditions (schedule/hostgate.py) and the live display's GPU figures.

One daemon thread samples every host in turn; the loop only reads the latest sample
(``latest``), so a slow or unreachable host never blocks it. An SSH host is sampled over
the backend's existing connection (a session on its transport, only while it is up: the
sampler never connects or reconnects), this machine by a child process.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
EVERY_S = 10.0  # between two samples of a host: cheap (a Python start and a 0.3 s CPU reading)
TIMEOUT_S = 20.0


@dataclass(frozen=True)
class HostSample:
    """One reading of a host's facts; None where the host does not say."""

    at: float  # time.monotonic() when it arrived
    load1: float | None = None
    own_cpu: float = 0.0  # cores this run's trials used
    gpu_util: tuple[float | None, ...] | None = None  # % per GPU; None: no nvidia-smi
    gpu_procs: int | None = None  # others' compute processes on the host's GPUs; None: no nvidia-smi
    on_ac: bool | None = None

    @classmethod
    def parse(cls, text: str, at: float) -> HostSample:
        d: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
        gpus = d.get("gpus")
        return cls(at, d.get("load1"), float(d.get("own_cpu") or 0.0),
                   None if gpus is None else tuple(g.get("util") for g in gpus), d.get("gpu_procs"), d.get("on_ac"))


Sampler = Callable[[], str | None]  # the script's output, or None when the host cannot be asked now


def local_sampler(python: str, script: str, base: str) -> Sampler:
    def run() -> str | None:
        out = subprocess.run([python, script, base], capture_output=True, text=True, timeout=TIMEOUT_S)
        return out.stdout if out.returncode == 0 else None
    return run


def ssh_sampler(conn: Any, argv: Callable[[], list[str] | None]) -> Sampler:
    """Over ``conn``'s transport while it is up (``argv`` None: the host is not prepared yet)."""
    from coordinator.backends.sshconn import quote_command

    def run() -> str | None:
        client, words = conn.client, argv()
        transport = client.get_transport() if client is not None else None
        if words is None or transport is None or not transport.is_active():
            return None
        chan = transport.open_session(timeout=TIMEOUT_S)
        try:
            chan.settimeout(TIMEOUT_S)
            chan.exec_command(quote_command(words))
            out = chan.makefile("rb").read()
            return out.decode("utf-8", "replace") if chan.recv_exit_status() == 0 else None
        finally:
            chan.close()
    return run


class HostWatch:
    """Samples every host asked about (``latest``) every ``every_s`` seconds on a daemon
    thread, started by the first question (a run that asks none never starts it)."""

    def __init__(self, samplers: dict[str, Sampler], every_s: float = EVERY_S) -> None:
        self.samplers, self.every_s = samplers, every_s
        self.samples: dict[str, HostSample] = {}
        self.wanted: set[str] = set()  # the hosts someone asked about: only they are sampled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def latest(self, platform: str) -> HostSample | None:
        with self._lock:
            if platform in self.samplers:
                self.wanted.add(platform)
            if self._thread is None and not self._stop.is_set() and self.wanted:
                self._thread = threading.Thread(target=self._run, daemon=True, name="hostwatch")
                self._thread.start()
            return self.samples.get(platform)

    def sample(self, platform: str) -> HostSample | None:
        """One reading now (the thread's step; never raises)."""
        try:
            text = self.samplers[platform]()
            return HostSample.parse(text, time.monotonic()) if text else None
        except Exception as exc:  # noqa: BLE001 - a host that cannot be read keeps its last sample
            log.debug("sampling %s failed: %s", platform, exc)
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                keys = sorted(self.wanted)
            for key in keys:
                if self._stop.is_set():
                    return
                got = self.sample(key)
                if got is not None:
                    with self._lock:
                        self.samples[key] = got
            self._stop.wait(self.every_s)

    def close(self) -> None:
        self._stop.set()


def _argv(host: Any) -> Callable[[], list[str] | None]:
    """The facts script on an SSH host, once its runners are uploaded (and ``~`` resolved)."""
    return lambda: [host.platform.python, f"{host.runners}/hostfacts.py", host.base] if host.runners else None


def watch_hosts(hosts: dict[str, Any], runners_dir: Any) -> HostWatch:
    """The watch over the agent backend's hosts (``agenthost.Host`` values): this machine's
    by a child process, an SSH host's over its connection once its runners are uploaded."""
    samplers: dict[str, Sampler] = {}
    for key, host in hosts.items():
        if host.local:
            samplers[key] = local_sampler(host.platform.python, f"{runners_dir}/hostfacts.py", host.base)
        else:
            samplers[key] = ssh_sampler(host.conn, _argv(host))
    return HostWatch(samplers)
