"""The SLURM backend (``connection: slurm``): each trial attempt is one batch job, or, with
``slurm.pilot: true``, an entry in the inbox of a pilot job (``slurmpilot.py``).

coord submits on the login node itself, or on one reached over SSH (``host:``);
``slurmsite.py`` is where commands and files go. Per attempt the backend writes ``spec.json``
and ``job.sh`` (``slurmjob.py``) into ``<work_dir>/runs/<run>/trials/<n>/attempt-<k>/`` on the
shared file system and records the job id in the run directory (``slurm.json``) before
anything else may happen, so ``coord resume`` re-attaches by id instead of resubmitting.

One thread follows every job: per tick ONE round trip per platform reads every running
attempt's stdout from the last byte seen (for pilot attempts also the exit record and the
claim), and ONE ``squeue`` asks about all jobs (every 0.5 s, backing off to 5 s while
nothing changes). A job's end is its terminal state plus the exit record its script wrote
for that run of the job (SLURM may requeue a job under the same id: the same attempt,
never counted twice). ``scancel`` cancels and prunes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from coordinator import protocol
from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent, drain
from coordinator.backends.plan import HostLayout, LaunchPlan, build
from coordinator.backends.slurmend import outcome
from coordinator.backends.slurmjob import JobState, job_name, job_script, parse_exit
from coordinator.backends.slurmpilot import Pilot, PilotPool, entry_name, entry_text
from coordinator.backends.slurmsite import Site, check_partition, site_for, squeue_states, upload_data, upload_runners
from coordinator.backends.sshconn import Result
from coordinator.config.registry import Platform
from coordinator.errors import HostError, RegistryError
from coordinator.records import Allocation, Recipe

log = logging.getLogger(__name__)

TAIL_S = 0.25  # stdout files are read this often (one round trip per platform)
SQUEUE_MIN_S, SQUEUE_MAX_S = 0.5, 5.0  # squeue: at first this often, backing off to this


@dataclass
class Job:
    handle: Handle
    platform: str
    job: str  # the SLURM job id (a pilot attempt: its pilot's)
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
    pilot: Pilot | None = None
    entry: str = ""  # its pilot inbox entry
    record: bytes | None = None  # a pilot attempt's exit record, once read


class SlurmBackend(Backend):
    def __init__(self, platforms: dict[str, Platform], runners_dir: Path, run_id: str, local_root: Path,
                 parser_factory: Any = protocol.MetricParser, known_hosts: Path | None = None) -> None:
        self.platforms = platforms
        self.runners_dir, self.run_id, self.local_root = runners_dir, run_id, local_root
        self.parser_factory = parser_factory
        self.sites: dict[str, Site] = {k: site_for(p, known_hosts or Path("/nonexistent"))
                                       for k, p in platforms.items()}
        self.events: queue.Queue[Event] = queue.Queue()
        self.jobs: dict[str, Job] = {}  # by handle key
        self.pool = PilotPool(run_id)
        self.lock = threading.RLock()
        self.ready: dict[str, str] = {}  # platform -> its runners dir on the shared file system
        self.squeue_calls = 0  # how many batched state queries this backend made (tests check the rate)
        self.read_calls = 0  # how many batched file reads (one per platform per tick)
        self.closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        threading.Thread(target=self._follow, daemon=True, name="slurm-follow").start()

    def _work(self, platform: str) -> str:
        return self.sites[platform].expand(self.platforms[platform].work_dir).rstrip("/")

    def _cmd(self, platform: str, argv: list[str], timeout: float = 60.0) -> Result:
        return self.sites[platform].run(argv, timeout)

    # -- preparing a platform -----------------------------------------------------------
    def prepare(self, platform: str) -> None:
        """sinfo reachable, the partition exists, the runners copied to the shared work dir."""
        if platform in self.ready:
            return
        site, opts = self.sites[platform], self.platforms[platform].slurm
        assert opts is not None
        check_partition(site, platform, opts)
        self.ready[platform] = upload_runners(site, self._work(platform), self.runners_dir)

    def _data_path(self, platform: str, data: dict[str, Any] | None) -> str | None:
        return None if data is None else upload_data(self.sites[platform], self._work(platform), data)

    # -- the contract -------------------------------------------------------------------
    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle:
        platform = allocation.platform
        self.prepare(platform)
        p, work = self.platforms[platform], self._work(platform)
        opts = p.slurm
        assert opts is not None
        layout = HostLayout(f"{work}/runs/{self.run_id}", self.ready[platform], p.python, work, opts.cpus_per_task)
        plan = build(recipe, attempt, allocation, layout, self._data_path(platform, recipe.data))
        handle = Handle(recipe.number, attempt, allocation)
        local_dir = self.local_root / "trials" / str(recipe.number) / f"attempt-{attempt}"
        local_dir.mkdir(parents=True, exist_ok=True)
        record = local_dir / "slurm.json"
        known = json.loads(record.read_text()) if record.exists() else None
        (local_dir / "plan.json").write_text(json.dumps(plan.record, indent=2, sort_keys=True), encoding="utf-8")
        # "w": a re-attach after a restart reads the job's output again from its first byte
        out = open(local_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        j = Job(handle, platform, "", plan.attempt_dir, local_dir, self.parser_factory(), out,
                timeout_s=recipe.timeout_s, entry=entry_name(recipe.number, attempt))
        if opts.pilot or (known and known.get("pilot")):
            self._launch_pilot(j, plan, known, record)
        else:
            j.job = self._job_id(platform, plan, record, known)
        with self.lock:
            self.jobs[handle.key] = j
        self._wake.set()
        return handle

    def _job_id(self, platform: str, plan: LaunchPlan, record: Path, known: dict[str, Any] | None) -> str:
        name = job_name(self.run_id, plan.number, plan.attempt)
        job = known.get("job") if known else None
        if known and not job:  # died between writing the record and sbatch's answer: look it up by name
            found = self._cmd(platform, ["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i"]).stdout.split()
            job = found[0] if found else None
        return str(job) if job else self._submit(platform, plan, name, record)

    def _submit(self, platform: str, plan: LaunchPlan, name: str, record: Path) -> str:
        opts = self.platforms[platform].slurm
        assert opts is not None
        site, adir = self.sites[platform], plan.attempt_dir
        self._write_spec(site, plan)
        script = job_script(plan, opts, name)
        site.write(f"{adir}/job.sh", script.encode())
        (record.parent / "job.sh").write_text(script, encoding="utf-8")
        record.write_text(json.dumps({"job": None, "name": name, "platform": platform}))
        res = self._cmd(platform, ["sbatch", "--parsable", f"{adir}/job.sh"])
        job = res.stdout.strip().split(";")[0]
        if res.exit_code != 0 or not job.isdigit():
            record.unlink(missing_ok=True)
            why = (res.stderr.strip() or res.stdout.strip()).replace("sbatch: error: ", "")
            keys = [k for k in ("partition", "account", "qos", "time_limit", "mem", "gpus", "cpus_per_task")
                    if k.split("_")[0] in why.lower()]
            raise RegistryError(f"platform {platform!r}: sbatch refused the job: {why}",
                                file=opts.source, key=opts.key(keys[0]) if keys else opts.key_path)
        record.write_text(json.dumps({"job": job, "name": name, "platform": platform, "script": f"{adir}/job.sh"}))
        return job

    @staticmethod
    def _write_spec(site: Site, plan: LaunchPlan) -> None:
        site.makedirs(plan.attempt_dir)
        site.makedirs(plan.checkpoint_dir)
        site.write(f"{plan.attempt_dir}/spec.json", plan.spec_text.encode())

    def _launch_pilot(self, j: Job, plan: LaunchPlan, known: dict[str, Any] | None, record: Path) -> None:
        site = self.sites[j.platform]
        if known and known.get("pilot"):  # re-attach: the attempt stays where it was placed
            j.pilot = self.pool.adopt(j.platform, str(known["job"]), str(known["pilot"]), j.handle.key)
            j.job = j.pilot.job
            where = [f"{j.pilot.dir}/inbox/{j.entry}.json", f"{j.pilot.dir}/claimed/{j.entry}.json",
                     f"{j.adir}/exit.json"]
            if any(site.exists(w) for w in where) or site.exists(f"{j.pilot.dir}/inbox.closed/{j.entry}.json"):
                return  # placed (an entry in a closed inbox is placed again when its pilot's job has ended)
        else:
            self._write_spec(site, plan)
        self._place(j, entry_text(plan), record)

    def _place(self, j: Job, data: bytes, record: Path) -> None:
        """Put the attempt on a pilot: the record first, then the inbox entry."""
        p, site, work = self.platforms[j.platform], self.sites[j.platform], self._work(j.platform)
        opts = p.slurm
        assert opts is not None
        (record.parent / "entry.json").write_bytes(data)
        while True:
            pilot = j.pilot if j.pilot is not None and not j.pilot.closed else self.pool.choose(
                site, j.platform, opts, p.python, self.ready[j.platform], f"{work}/runs/{self.run_id}", work,
                j.handle.key)
            record.write_text(json.dumps({"job": pilot.job, "pilot": pilot.dir, "entry": j.entry,
                                          "platform": j.platform}))
            j.pilot, j.job = pilot, pilot.job
            if self.pool.place(site, pilot, j.entry, data):
                return
            pilot.busy = None

    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        with self.lock:
            j = self.jobs.get(handle.key)
        if j is None:
            return
        j.reason = j.reason or reason
        if j.pilot is not None:  # the pilot ends the trial, not the pilot job
            self._cancel_entry(j)
        else:
            res = self._cmd(j.platform, ["scancel", j.job])
            if res.exit_code != 0:
                log.warning("scancel %s (trial %s): %s", j.job, handle.key, res.stderr.strip())
        self._wake.set()

    def _cancel_entry(self, j: Job) -> None:
        assert j.pilot is not None
        site = self.sites[j.platform]
        try:
            if site.rename(f"{j.pilot.dir}/inbox/{j.entry}.json", f"{j.adir}/withdrawn.json"):
                self._end(j, None)  # taken back before any pilot claimed it: it never ran
                return
            site.write(f"{j.adir}/cancel", b"")
        except HostError as exc:
            log.warning("cancelling trial %s: %s", j.handle.key, exc)

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
        ids: dict[str, set[str]] = {}
        for platform, job in [(j.platform, j.job) for j in live] + [(p.platform, p.job) for p in self.pool.live()]:
            ids.setdefault(platform, set()).add(job)
        for platform, jobs in ids.items():
            with contextlib.suppress(HostError, OSError):
                self._cmd(platform, ["scancel", *sorted(jobs)])
        deadline = time.monotonic() + 20
        while self.jobs and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.1)
        self.closed = True
        self._stop.set()
        for site in self.sites.values():
            site.close()

    # -- following the jobs -------------------------------------------------------------
    def _follow(self) -> None:
        interval, next_q = SQUEUE_MIN_S, 0.0
        while not self._stop.is_set():
            self._wake.wait(TAIL_S)
            woken = self._wake.is_set()
            self._wake.clear()
            with self.lock:
                jobs = list(self.jobs.values())
            changed = self._read_all(jobs)
            now = time.monotonic()
            if (jobs or self.pool.pilots) and (now >= next_q or woken):
                for platform in {j.platform for j in jobs} | {p.platform for p in self.pool.live()}:
                    mine = [j for j in jobs if j.platform == platform]
                    ids = {j.job for j in mine} | {p.job for p in self.pool.live(platform)}
                    states = self._squeue(platform, sorted(ids))
                    if states is not None:
                        changed = self._update(mine, states) or changed
                        for p in self.pool.live(platform):
                            if p.busy is None and (p.job not in states or states[p.job].finished):
                                self.pool.ended(p.job)
                interval = SQUEUE_MIN_S if changed or woken else min(SQUEUE_MAX_S, interval * 1.5)
                next_q = now + interval

    def _squeue(self, platform: str, ids: list[str]) -> dict[str, JobState] | None:
        self.squeue_calls += 1
        return squeue_states(self.sites[platform], ids)

    def _read_all(self, jobs: list[Job]) -> bool:
        """One batched read per platform: stdout from the last byte; a pilot attempt's
        exit record and its claim too."""
        changed = False
        for platform in {j.platform for j in jobs}:
            mine = [j for j in jobs if j.platform == platform]
            items: list[tuple[str, int]] = []
            for j in mine:
                items.append((f"{j.adir}/stdout", j.offset))
                if j.pilot is not None:
                    items.append((f"{j.adir}/exit.json", 0))
                    items.append((f"{j.pilot.dir}/claimed/{j.entry}.json", 0))
            self.read_calls += 1
            try:
                got = iter(self.sites[platform].reads(items))
            except (OSError, HostError) as exc:
                log.warning("reading the jobs' files on %s: %s", platform, exc)
                continue
            for j in mine:
                changed = self._tail(j, next(got)) or changed
                if j.pilot is not None:
                    rec, claim = next(got), next(got)
                    if claim is not None and j.running_since is None:
                        j.running_since, j.state, changed = time.monotonic(), "RUNNING", True
                    if parse_exit(rec.decode() if rec else None) is not None:
                        j.record = rec
                        self._end(j, None)
                        changed = True
        return changed

    def _tail(self, j: Job, data: bytes | None) -> bool:
        """What the job printed since the last look; metric lines become events."""
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
            if j.handle.key not in self.jobs:
                continue  # ended by this tick's reads
            st = states.get(j.job)
            if j.pilot is not None:
                if st is None or st.finished:
                    self._pilot_gone(j)
                    changed = True
            else:
                state = st.state if st else "GONE"
                if state != j.state:
                    changed = True
                    j.state = state
                    if state == "RUNNING" and j.running_since is None:
                        j.running_since = now
                if st is None or st.finished:
                    self._end(j, st)
                    continue
            if j.state == "RUNNING" and j.timeout_s and j.running_since and now - j.running_since > j.timeout_s \
                    and j.reason is None:
                self.cancel(j.handle, "timeout")
        return changed

    def _pilot_gone(self, j: Job) -> None:
        """The pilot job holding this attempt ended: its exit record, else placed again if
        it was never claimed, else lost (the pilot died while running it)."""
        assert j.pilot is not None
        site = self.sites[j.platform]
        try:
            self._tail(j, site.reads([(f"{j.adir}/stdout", j.offset)])[0])
            j.record = site.read(f"{j.adir}/exit.json")
            claimed = site.exists(f"{j.pilot.dir}/claimed/{j.entry}.json")
        except (OSError, HostError) as exc:
            log.warning("pilot %s ended; reading trial %s: %s", j.job, j.handle.key, exc)
            return
        self.pool.ended(j.job)
        j.pilot.closed = True
        if parse_exit(j.record.decode() if j.record else None) is None and not claimed and j.reason is None:
            log.info("pilot %s ended before taking trial %s: placing it again", j.job, j.handle.key)
            j.pilot = None
            self._place(j, (j.local_dir / "entry.json").read_bytes(), j.local_dir / "slurm.json")
            return
        self._end(j, JobState(j.job, "GONE", 0, ""))

    def _end(self, j: Job, st: JobState | None) -> None:
        site = self.sites[j.platform]
        rec = None
        with contextlib.suppress(OSError, HostError):
            if j.pilot is None:
                self._tail(j, site.reads([(f"{j.adir}/stdout", j.offset)])[0])
            rec = parse_exit((j.record or site.read(f"{j.adir}/exit.json") or b"").decode())
        if rec is not None and st is not None and j.pilot is None and rec.get("restart") != st.restarts:
            rec = None  # written by an earlier run of a job SLURM requeued
        stderr = ""
        with contextlib.suppress(OSError, HostError):
            site.fetch(f"{j.adir}/stderr", j.local_dir / "stderr")
            stderr = (j.local_dir / "stderr").read_text(errors="replace")[-4000:]
        self._finish(j, st.state if st else ("PILOT" if j.pilot else "GONE"), rec, stderr)

    def _finish(self, j: Job, state: str, rec: dict[str, Any] | None, stderr: str) -> None:
        logs, ran = (str(j.local_dir / "stdout"), str(j.local_dir / "stderr")), time.monotonic() - (
            j.running_since or j.started)
        out = outcome(j.job, state, rec, j.reason, j.pilot is not None, stderr, ran, logs)
        j.out.close()
        with self.lock:
            self.jobs.pop(j.handle.key, None)
        self.pool.release(j.handle.key)
        self.events.put(EndEvent(j.handle, out, time.monotonic()))
