"""Pilot jobs (``slurm.pilot: true``): one long-lived batch job per slot that takes attempts
one after another (``runners/pilot.py`` is its loop on the node), so that many short
trials do not each wait in the queue.

A pilot's directory in the shared work dir, ``<work>/runs/<run>/pilots/<name>/``, holds
its ``inbox/`` (attempts placed on it, ``<entry>.json``), ``claimed/`` (what it took,
moved there by an atomic rename: an entry runs at most once), ``stdout``/``stderr`` and,
once it ends, ``inbox.closed/``. The backend places an attempt on a live pilot with no
attempt, else submits a new pilot. It records the pilot (job id, dir, entry) in the
attempt's ``slurm.json`` BEFORE writing the entry, so that after a coordinator crash
``coord resume`` finds the attempt where it was placed instead of placing it twice. An
entry still unclaimed when its pilot's job has ended is placed again on another pilot:
that pilot never ran it, so nothing runs twice and no retry is spent.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import time
from dataclasses import dataclass

from coordinator import protocol
from coordinator.backends.plan import LaunchPlan
from coordinator.backends.slurmjob import sbatch_options
from coordinator.backends.slurmsite import Site
from coordinator.config.slurmcfg import SlurmOptions
from coordinator.errors import HostUnreachable


@dataclass
class Pilot:
    platform: str
    job: str
    dir: str
    busy: str | None = None  # the handle key of the attempt placed on it
    closed: bool = False  # its inbox is closed or its job ended: place nothing more on it


def entry_name(number: int, attempt: int) -> str:
    return f"t{number}-a{attempt}"


def entry_text(plan: LaunchPlan) -> bytes:
    """What the pilot runs for one attempt (parameters stay in spec.json)."""
    env = {k: v for k, v in plan.env.items() if k != protocol.ENV_CUDA}  # the pilot's GRES GPUs stand
    return json.dumps({"adir": plan.attempt_dir, "argv": list(plan.argv), "env": env, "cwd": plan.cwd}).encode()


def pilot_script(opts: SlurmOptions, name: str, pdir: str, python: str, runners: str, cwd: str) -> str:
    # a pilot is not requeued by SLURM: an attempt it held is re-run by coord, once
    sbatch = [o for o in sbatch_options(opts, name, pdir, cwd) if o != "--requeue"] + ["--no-requeue"]
    q = shlex.quote
    return "\n".join(["#!/bin/bash", *(f"#SBATCH {o}" for o in sbatch),
                      "# a coord pilot job: takes this run's attempts from its inbox one after another",
                      # exec: the pilot loop is the batch shell, so SLURM's --signal reaches it directly
                      f"exec {q(python)} {q(runners + '/pilot.py')} {q(pdir)} {opts.pilot_idle_s}", ""])


class PilotPool:
    """The run's pilots, over every SLURM platform of the backend."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pilots: list[Pilot] = []
        self._seq = itertools.count(1)
        self._stamp = f"{int(time.time() * 1000):x}{os.getpid() % 1000:03d}"  # new names after a resume

    def choose(self, site: Site, platform: str, opts: SlurmOptions, python: str, runners: str,
               base: str, cwd: str, key: str) -> Pilot:
        """A live pilot of the platform with nothing to do, or a newly submitted one."""
        for p in self.pilots:
            if p.platform == platform and p.busy is None and not p.closed and site.exists(f"{p.dir}/inbox"):
                p.busy = key
                return p
        name = f"p{self._stamp}-{next(self._seq)}"
        pdir = f"{base}/pilots/{name}"
        for sub in ("inbox", "claimed"):
            site.makedirs(f"{pdir}/{sub}")
        jobname = f"coord-{self.run_id}-pilot-{name}"
        site.write(f"{pdir}/pilot.sh", pilot_script(opts, jobname, pdir, python, runners, cwd).encode())
        res = site.run(["sbatch", "--parsable", f"{pdir}/pilot.sh"])
        job = res.stdout.strip().split(";")[0]
        if res.exit_code != 0 or not job.isdigit():
            raise HostUnreachable(platform, "slurm", f"sbatch refused the pilot job: "
                                  f"{(res.stderr.strip() or res.stdout.strip()).replace('sbatch: error: ', '')}")
        p = Pilot(platform, job, pdir, busy=key)
        self.pilots.append(p)
        return p

    def adopt(self, platform: str, job: str, pdir: str, key: str) -> Pilot:
        """The pilot a resumed attempt was placed on (made by an earlier coordinator)."""
        for p in self.pilots:
            if p.job == job:
                p.busy = key
                return p
        p = Pilot(platform, job, pdir, busy=key)
        self.pilots.append(p)
        return p

    @staticmethod
    def place(site: Site, p: Pilot, entry: str, data: bytes) -> bool:
        """Write the entry into the pilot's inbox; False if the pilot closed it meanwhile."""
        try:
            site.write(f"{p.dir}/inbox/{entry}.json", data)
        except FileNotFoundError:
            p.closed = True
            return False
        return True

    def release(self, key: str) -> None:
        for p in self.pilots:
            if p.busy == key:
                p.busy = None

    def ended(self, job: str) -> None:
        self.pilots = [p for p in self.pilots if p.job != job]

    def live(self, platform: str | None = None) -> list[Pilot]:
        return [p for p in self.pilots if platform is None or p.platform == platform]
