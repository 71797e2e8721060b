"""A SLURM platform's ``slurm:`` section of the registry: what every job of that platform
asks the cluster for. The keys map one to one onto sbatch options (docs/slurm.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from coordinator.config.yamlcfg import Section

# sbatch's --time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_WORD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,:=+-]*$")  # no shell characters, no leading '-'


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None  # sbatch --time
    cpus_per_task: int = 1
    mem: str | None = None  # sbatch --mem, e.g. 4G
    gpus: int = 0  # --gres=gpu:N per job
    extra: tuple[str, ...] = ()  # more #SBATCH lines, each one option (e.g. --constraint=a100)
    signal_s: int = 60  # --signal=B:TERM@N: seconds of warning before the time limit
    pilot: bool = False  # one long-lived job per slot takes attempts one after another (slurmpilot.py)
    pilot_idle_s: int = 60  # a pilot with nothing to do this long ends
    source: str = ""  # the registry file, for errors that name its keys
    key_path: str = ""  # platforms.<name>.slurm

    def key(self, name: str) -> str:
        return f"{self.key_path}.{name}"


def parse_slurm(sec: Section, key_path: str) -> SlurmOptions:
    def word(name: str) -> str | None:
        value = sec.get(name, (str, int), None)
        if value is not None and not _WORD.match(str(value)):
            raise sec.fail(name, f"{value!r} is not a valid {name} (letters, digits, '_', '.', '-'; "
                                 "no spaces or shell characters)")
        return None if value is None else str(value)

    time_limit = sec.get("time_limit", (str, int), None)
    if time_limit is not None and not _TIME.match(str(time_limit)):
        raise sec.fail("time_limit", f"{time_limit!r} is not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS)")
    mem = sec.get("mem", (str, int), None)
    if mem is not None and not _MEM.match(str(mem)):
        raise sec.fail("mem", f"{mem!r} is not a SLURM memory size (e.g. 4000M or 16G)")
    extra = tuple(sec.str_list("extra"))
    for opt in extra:
        if not opt.startswith("--") or "\n" in opt:
            raise sec.fail("extra", f"{opt!r}: each entry is one long sbatch option, e.g. --constraint=a100")
    opts = SlurmOptions(partition=word("partition"), account=word("account"), qos=word("qos"),
                        time_limit=None if time_limit is None else str(time_limit),
                        cpus_per_task=sec.get("cpus_per_task", int, 1, minimum=1),
                        mem=None if mem is None else str(mem), gpus=sec.get("gpus", int, 0, minimum=0),
                        extra=extra, signal_s=sec.get("signal_s", int, 60, minimum=1),
                        pilot=sec.get("pilot", bool, False),
                        pilot_idle_s=sec.get("pilot_idle_s", int, 60, minimum=1),
                        source=str(sec.source.file), key_path=key_path)
    sec.done()
    return opts
