"""This machine as a registry: the embedded default a search uses with no ``--registry``
(cores, memory, GPUs from nvidia-smi, detected now)."""

from __future__ import annotations

import os
import shutil
import subprocess

from coordinator.config.registry import Platform, Registry
from coordinator.config.specs import Gpu, Specs


def detect_gpus(timeout: float = 5.0) -> tuple[Gpu, ...]:
    """GPUs from nvidia-smi, or none when it is absent or fails (never raises)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            try:
                gpus.append(Gpu(int(parts[0]), parts[1], round(float(parts[2]) / 1024, 1)))
            except ValueError:
                continue
    return tuple(gpus)


def detect_memory_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return 4.0


def default_registry(slots: int | None = None) -> Registry:
    """The embedded default: this machine alone, detected now."""
    cores = os.cpu_count() or 1
    gpus = detect_gpus()
    jobs = slots or max(cores, len(gpus))
    local = Platform(key="local", name=f"This machine ({os.uname().nodename})", connection="local",
                     specs=Specs(cores, detect_memory_gb(), gpus), max_concurrent_jobs=jobs)
    return Registry({"local": local})
