"""A platform's hardware in the registry: its cores, memory and GPUs (``specs:``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from coordinator.config.yamlcfg import Section


@dataclass(frozen=True)
class Gpu:
    index: int
    model: str = "GPU"
    memory_gb: float = 0.0


@dataclass(frozen=True)
class Specs:
    cpu_cores: int
    memory_gb: float
    gpus: tuple[Gpu, ...] = ()


def parse_gpus(specs: Section) -> tuple[Gpu, ...]:
    raw = specs.raw("gpus")
    legacy = specs.raw("gpu")  # the user's seed format: gpu: false | "RTX 4090 24GB"
    if raw is None:
        if isinstance(legacy, str):
            mem = re.search(r"(\d+(?:\.\d+)?)\s*GB", legacy, re.I)
            return (Gpu(0, legacy, float(mem.group(1)) if mem else 0.0),)
        if legacy not in (None, False):
            raise specs.fail("gpu", "expected false or a GPU description such as \"RTX 4090 24GB\"")
        return ()
    if not isinstance(raw, list):
        raise specs.fail("gpus", "expected a list of GPUs (index, model, memory_gb)")
    gpus = []
    for i, item in enumerate(raw):
        sec = Section(item, specs.source, (*specs.path, "gpus", i))
        gpus.append(Gpu(sec.get("index", int, i, minimum=0), sec.get("model", str, "GPU"),
                        sec.get("memory_gb", float, 0.0, minimum=0)))
        sec.done()
    return tuple(gpus)
