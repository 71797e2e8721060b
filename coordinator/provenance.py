"""What a result needs to be trusted later: where and with what it was made.

Two halves:

- the run's provenance, written once into ``run.json`` when a run is created (``run``):
  coord's version, the registry snapshot's sha256 (the snapshot itself is ``run.json``'s
  ``registry``), the user's git commit and dirty flag, and the coordinator's own host;
- each platform's facts (``host_facts``), from the pre-flight probe of that host (its
  Python, libraries, CPU, cores, memory, GPUs), which every result of a trial that ran
  there carries, with the GPU the trial had and its seeds (``for_result``).

Only stable facts are kept: free disk, clock skew and GPU utilisation change by the minute
and would make two results of one host differ for no reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

LIBRARIES = ("optuna", "xgboost", "scikit-learn", "torch", "numpy", "pandas", "mlflow")
_HOST_KEYS = ("hostname", "os", "machine", "cpu_model", "cores", "memory_gb", "python", "executable", "libraries")


def coord_version() -> str:
    from coordinator import __version__

    return __version__


def digest(value: Any) -> str:
    """sha256 of a JSON value in canonical form (sorted keys, no spaces): the same snapshot
    always has the same hash, whatever order its dict was built in."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_state(cwd: str | None) -> dict[str, str]:
    """The commit and dirty flag of the git repository ``cwd`` is in; {} when none."""
    if not cwd or not Path(cwd).is_dir():
        return {}
    try:
        head = subprocess.run(["git", "-C", cwd, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", cwd, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head.stdout.strip(), "dirty": "true" if dirty.stdout.strip() else "false"}


def library_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (or of its ``-cpu`` build, as
    ``xgboost-cpu``); None when neither is installed."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in (name, f"{name}-cpu"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return None


def versions() -> dict[str, str]:
    """This process's Python and library versions (the coordinator's host)."""
    out = {"python": platform.python_version(), "python_executable": sys.executable}
    for lib in LIBRARIES:
        found = library_version(lib)
        if found:
            out[lib] = found
    return out


def this_host() -> dict[str, Any]:
    """The coordinator's host: name, OS, CPU, Python and libraries."""
    return {"hostname": socket.gethostname(), "os": platform.platform(), "machine": platform.machine(),
            "cpu_model": cpu_model(), "cores": os.cpu_count(), **versions()}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, sysctl on macOS), else what
    ``platform.processor()`` says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return platform.processor() or platform.machine()


def run(registry: dict[str, Any], cwd: str) -> dict[str, Any]:
    """``run.json``'s ``provenance``: written once, when the run is created (the registry
    snapshot it hashes is ``run.json``'s ``registry``, its ``source`` the file it came from)."""
    return {"coord_version": coord_version(), "registry_sha256": digest(registry), "git": git_state(cwd),
            "coordinator": this_host()}


def host_facts(probe: dict[str, Any]) -> dict[str, Any]:
    """The stable part of a pre-flight probe (``backends/hosts.py``): what a result keeps."""
    facts = {k: probe[k] for k in _HOST_KEYS if probe.get(k) is not None}
    gpus = [{"index": g["index"], "model": g.get("model"), "memory_gb": g.get("memory_gb")}
            for g in probe.get("gpus") or [] if isinstance(g, dict) and "index" in g]
    if gpus:
        facts["gpus"] = gpus
    return facts


def for_result(facts: dict[str, Any] | None, gpu: int | None, seeds: dict[str, Any]) -> dict[str, Any]:
    """A result's ``provenance``: its host's facts (None when the host was never probed in
    this session, e.g. a trial re-attached on a host that is now down), the model of the
    GPU it had, and every seed that made it."""
    out: dict[str, Any] = {"seeds": seeds}
    if facts:
        out["host"] = {k: v for k, v in facts.items() if k != "gpus"}
        if gpu is not None:
            model = next((g.get("model") for g in facts.get("gpus") or [] if g.get("index") == gpu), None)
            out["gpu"] = {"index": gpu, "model": model}
    elif gpu is not None:
        out["gpu"] = {"index": gpu, "model": None}
    return out
