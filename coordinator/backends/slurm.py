"""The SLURM backend: each trial attempt is one batch job (``connection: slurm``).

coord runs on the cluster's login node and submits there (``sbatch``); the work dir named
in the registry lies on the cluster's shared file system, so the job's files are plain
files on both sides. Per attempt the backend writes ``spec.json`` and ``job.sh``
(``slurmjob.py``, from the launch plan) into ``<work_dir>/runs/<run>/trials/<n>/attempt-<k>/``
and records the job id in the run directory's attempt dir (``slurm.json``) before anything
else may happen, so ``coord resume`` re-attaches to the job by its id instead of
submitting it again.

One thread follows every job of the run: it reads each running job's stdout from the last
byte seen (metric lines; every 0.25 s, plain file reads) and asks ``squeue`` about all of
the run's jobs in ONE call, at first every 0.5 s, backing off to every 5 s while nothing
changes. A job's end is its terminal squeue state plus the exit record its script wrote
for that run of the job (a job that SLURM requeued runs the script again under the same
id: it is the same attempt, followed on, never counted twice). ``scancel`` cancels and prunes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from coordinator import protocol
from coordinator.backends.agenthost import runners_hash
from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent, drain
from coordinator.backends.plan import HostLayout, build
from coordinator.backends.slurmjob import SQUEUE_FORMAT, JobState, job_name, job_script, parse_exit, parse_squeue
from coordinator.config.registry import Platform
from coordinator.errors import HostUnreachable, RegistryError
from coordinator.records import Allocation, Outcome, Recipe

log = logging.getLogger(__name__)

TAIL_S = 0.25  # stdout files are read this often (local reads of the shared file system)
SQUEUE_MIN_S, SQUEUE_MAX_S = 0.5, 5.0  # squeue: at first this often, backing off to this


def slurm_cmd(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a SLURM client command on this machine (the login node)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Job:
    handle: Handle
    platform: str
    job: str
    adir: str  # on the shared file system
    local_dir: Path  # the run directory's attempt dir
    parser: protocol.MetricParser
    out: IO[str]
    offset: int = 0
    partial: bytes = b""
    reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    running_since: float | None = None
    timeout_s: float | None = None
    state: str = "PENDING"


class SlurmBackend(Backend):
    def __init__(self, platforms: dict[str, Platform], runners_dir: Path, run_id: str, local_root: Path,
                 parser_factory: Any = protocol.MetricParser) -> None:
        self.platforms = platforms
        self.runners_dir, self.run_id, self.local_root = runners_dir, run_id, local_root
        self.parser_factory = parser_factory
        self.events: queue.Queue[Event] = queue.Queue()
        self.jobs: dict[str, Job] = {}  # by handle key
        self.lock = threading.RLock()
        self.ready: dict[str, str] = {}  # platform -> its runners dir on the shared file system
        self.squeue_calls = 0  # how many batched state queries this backend made (tests check the rate)
        self.closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        threading.Thread(target=self._follow, daemon=True, name="slurm-follow").start()

    def _work(self, platform: str) -> str:
        return os.path.expanduser(self.platforms[platform].work_dir).rstrip("/")

    # -- preparing a platform -----------------------------------------------------------
    def prepare(self, platform: str) -> None:
        """sinfo reachable, the partition exists, the runners copied to the shared work dir."""
        if platform in self.ready:
            return
        p = self.platforms[platform]
        opts = p.slurm
        assert opts is not None
        try:
            res = slurm_cmd(["sinfo", "-h", "-o", "%P"], timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostUnreachable(platform, "slurm", f"sinfo failed: {exc}") from None
        if res.returncode != 0:
            raise HostUnreachable(platform, "slurm", f"sinfo failed: {res.stderr.strip() or res.returncode}")
        partitions = [x.strip().rstrip("*") for x in res.stdout.split()]
        if opts.partition is not None and opts.partition not in partitions:
            raise RegistryError(f"platform {platform!r}: the cluster has no partition {opts.partition!r}",
                                file=opts.source, key=opts.key("partition"), valid=partitions)
        digest, files = runners_hash(self.runners_dir)
        dest = Path(self._work(platform)) / "runners" / digest
        if not (dest / ".complete").exists():
            dest.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (dest / name).write_bytes(data)
            (dest / ".complete").write_text("")
        self.ready[platform] = str(dest)

    def _data_path(self, platform: str, data: dict[str, Any] | None) -> str | None:
        """The data file on the shared file system, named by its sha256 (copied once)."""
        if data is None:
            return None
        dest = Path(self._work(platform)) / "data" / f"{data['sha256']}.csv"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(data["path"], tmp)
            tmp.replace(dest)
        return str(dest)

    # -- the contract -------------------------------------------------------------------
    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle:
        platform = allocation.platform
        self.prepare(platform)
        p = self.platforms[platform]
        opts = p.slurm
        assert opts is not None
        work = self._work(platform)
        layout = HostLayout(f"{work}/runs/{self.run_id}", self.ready[platform], p.python, work, opts.cpus_per_task)
        plan = build(recipe, attempt, allocation, layout, self._data_path(platform, recipe.data))
        handle = Handle(recipe.number, attempt, allocation)
        local_dir = self.local_root / "trials" / str(recipe.number) / f"attempt-{attempt}"
        local_dir.mkdir(parents=True, exist_ok=True)
        record = local_dir / "slurm.json"
        name = job_name(self.run_id, recipe.number, attempt)
        known = json.loads(record.read_text()) if record.exists() else None
        job = known.get("job") if known else None
        if known and not job:  # died between writing the record and sbatch's answer: look it up by name
            found = slurm_cmd(["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i"]).stdout.split()
            job = found[0] if found else None
        if not job:
            job = self._submit(platform, plan, name, record, local_dir)
        (local_dir / "plan.json").write_text(json.dumps(plan.record, indent=2, sort_keys=True), encoding="utf-8")
        # "w": a re-attach after a restart reads the job's output again from its first byte
        out = open(local_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        j = Job(handle, platform, str(job), plan.attempt_dir, local_dir, self.parser_factory(), out,
                timeout_s=recipe.timeout_s)
        with self.lock:
            self.jobs[handle.key] = j
        self._wake.set()
        return handle

    def _submit(self, platform: str, plan: Any, name: str, record: Path, local_dir: Path) -> str:
        opts = self.platforms[platform].slurm
        assert opts is not None
        adir = Path(plan.attempt_dir)
        adir.mkdir(parents=True, exist_ok=True)
        Path(plan.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        (adir / "spec.json").write_text(plan.spec_text, encoding="utf-8")
        script = job_script(plan, opts, name)
        (adir / "job.sh").write_text(script, encoding="utf-8")
        (local_dir / "job.sh").write_text(script, encoding="utf-8")
        record.write_text(json.dumps({"job": None, "name": name, "platform": platform}))
        res = slurm_cmd(["sbatch", "--parsable", str(adir / "job.sh")])
        job = res.stdout.strip().split(";")[0]
        if res.returncode != 0 or not job.isdigit():
            record.unlink(missing_ok=True)
            why = (res.stderr.strip() or res.stdout.strip()).replace("sbatch: error: ", "")
            keys = [k for k in ("partition", "account", "qos", "time_limit", "mem", "gpus", "cpus_per_task")
                    if k.split("_")[0] in why.lower()]
            raise RegistryError(f"platform {platform!r}: sbatch refused the job: {why}",
                                file=opts.source, key=opts.key(keys[0]) if keys else opts.key_path)
        record.write_text(json.dumps({"job": job, "name": name, "platform": platform, "script": str(adir / "job.sh")}))
        return job

    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        with self.lock:
            j = self.jobs.get(handle.key)
        if j is None:
            return
        j.reason = j.reason or reason
        res = slurm_cmd(["scancel", j.job])
        if res.returncode != 0:
            log.warning("scancel %s (trial %s): %s", j.job, handle.key, res.stderr.strip())
        self._wake.set()

    def detach(self) -> None:
        """Let the jobs run on (as after kill -9): ``coord resume`` re-attaches by job id."""
        self.closed = True
        self._stop.set()

    def close(self) -> None:
        if self.closed:
            return
        with self.lock:
            live = list(self.jobs.values())
        for j in live:
            j.reason = j.reason or "cancelled"
        if live:
            slurm_cmd(["scancel", *(j.job for j in live)])
        deadline = time.monotonic() + 20
        while self.jobs and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.1)
        self.closed = True
        self._stop.set()

    # -- following the jobs -------------------------------------------------------------
    def _follow(self) -> None:
        interval, next_q = SQUEUE_MIN_S, 0.0
        while not self._stop.is_set():
            self._wake.wait(TAIL_S)
            woken = self._wake.is_set()
            self._wake.clear()
            with self.lock:
                jobs = list(self.jobs.values())
            changed = any(self._tail(j) for j in jobs)
            now = time.monotonic()
            if jobs and (now >= next_q or woken):
                states = self._squeue([j.job for j in jobs])
                if states is not None:
                    changed = self._update(jobs, states) or changed
                interval = SQUEUE_MIN_S if changed or woken else min(SQUEUE_MAX_S, interval * 1.5)
                next_q = now + interval

    def _squeue(self, ids: list[str]) -> dict[str, JobState] | None:
        self.squeue_calls += 1
        try:
            res = slurm_cmd(["squeue", "-h", "--states=all", "-j", ",".join(ids), "-O", SQUEUE_FORMAT], 30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("squeue failed: %s", exc)
            return None
        if res.returncode != 0:
            if "Invalid job id" in res.stderr:
                return {}  # none of them is known any more
            log.warning("squeue failed: %s", res.stderr.strip())
            return None
        return parse_squeue(res.stdout)

    def _tail(self, j: Job) -> bool:
        """Read what the job printed since the last look; metric lines become events."""
        try:
            with open(f"{j.adir}/stdout", "rb") as fh:
                fh.seek(j.offset)
                data = fh.read()
        except OSError:
            return False
        if not data:
            return False
        j.offset += len(data)
        buf = j.partial + data
        *lines, j.partial = buf.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            j.out.write(line + "\n")
            values = j.parser.parse(line)
            if values:
                self.events.put(MetricEvent(j.handle, values))
        j.out.flush()
        return True

    def _update(self, jobs: list[Job], states: dict[str, JobState]) -> bool:
        changed = False
        now = time.monotonic()
        for j in jobs:
            st = states.get(j.job)
            state = st.state if st else "GONE"
            if state != j.state:
                changed = True
                j.state = state
                if state == "RUNNING" and j.running_since is None:
                    j.running_since = now
            if state == "RUNNING" and j.timeout_s and j.running_since and now - j.running_since > j.timeout_s \
                    and j.reason is None:
                self.cancel(j.handle, "timeout")
            if st is None or st.finished:
                self._end(j, st)
        return changed

    def _end(self, j: Job, st: JobState | None) -> None:
        self._tail(j)
        rec = None
        with contextlib.suppress(OSError):
            rec = parse_exit(Path(f"{j.adir}/exit.json").read_text())
        if rec is not None and st is not None and rec.get("restart") != st.restarts:
            rec = None  # written by an earlier run of a job SLURM requeued
        stderr = ""
        with contextlib.suppress(OSError):
            shutil.copyfile(f"{j.adir}/stderr", j.local_dir / "stderr")
            stderr = (j.local_dir / "stderr").read_text(errors="replace")[-4000:]
        state = st.state if st else "GONE"
        code = rec["exit"] if rec is not None else None
        assert code is None or isinstance(code, int)
        ran = time.monotonic() - (j.running_since or j.started)
        common: dict[str, Any] = {"duration_s": ran, "stderr": stderr,
                                  "logs": (str(j.local_dir / "stdout"), str(j.local_dir / "stderr"))}
        if j.reason is not None:
            out = Outcome(exit_code=code, cancelled=j.reason in ("cancelled", "pruned"),
                          timed_out=j.reason == "timeout", **common)
        elif state == "CANCELLED":
            out = Outcome(exit_code=None, signal=15, error=f"SLURM job {j.job} was cancelled outside coord", **common)
        elif state == "OUT_OF_MEMORY":
            out = Outcome(exit_code=code, error=f"SLURM job {j.job}: out of memory", **{**common,
                          "stderr": stderr + "\nout of memory (SLURM OUT_OF_MEMORY)"})
        elif code is not None:
            signalled = bool(rec and rec.get("signalled"))  # SLURM's --signal (or a preemption) reached it
            out = Outcome(exit_code=code, preempted=code == protocol.EXIT_REQUEUE and signalled, **common)
        elif state in ("NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "GONE"):
            out = Outcome(exit_code=None, lost=True, error=f"SLURM job {j.job} ended {state}", **common)
        else:
            out = Outcome(exit_code=None, signal=9, error=f"SLURM job {j.job} ended {state} without an exit record",
                          **common)
        j.out.close()
        with self.lock:
            self.jobs.pop(j.handle.key, None)
        self.events.put(EndEvent(j.handle, out, time.monotonic()))
