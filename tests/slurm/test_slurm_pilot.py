"""Pilot jobs (``slurm.pilot: true``) on the real one-node cluster: one long-lived job per
slot takes attempts one after another; an attempt is never lost or run twice when a pilot
is scancelled, dies before it took the attempt, or the coordinator is killed and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests import slurmcluster
from tests.slurm.test_slurm_search import ROOT, coord, registry, results, search_args, wait_job, wait_state


def pilot_registry(tmp: Path, slots: int = 2, idle_s: int = 60) -> None:
    reg = registry(tmp, slots=slots)
    reg.write_text(reg.read_text().replace("      mem: 100M\n", f"      mem: 100M\n      pilot: true\n"
                                                                 f"      pilot_idle_s: {idle_s}\n"))


def records(run: Path) -> dict[tuple[int, int], dict[str, Any]]:
    return {(int(p.parent.parent.name), int(p.parent.name.split("-")[1])): json.loads(p.read_text())
            for p in run.glob("trials/*/attempt-*/slurm.json")}


def claimed(tmp: Path) -> list[str]:
    return sorted(p.name for p in (tmp / "shared" / "runs" / "run" / "pilots").glob("*/claimed/*.json"))


def test_pilots_take_trials_one_after_another(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    pilot_registry(tmp_path)
    done = coord(tmp_path, *search_args(tmp_path, trials=6))
    assert done.returncode == 0, done.stderr[-3000:]
    res = results(tmp_path / "run")
    assert len(res) == 6 and all(r["status"] == "COMPLETE" and r["attempt"] == 1 for r in res), res
    recs = records(tmp_path / "run")
    pilots = {r["job"] for r in recs.values()}
    assert all(r.get("pilot") for r in recs.values()) and len(pilots) == 2, recs  # 6 trials, 2 jobs
    assert claimed(tmp_path) == sorted(f"t{n}-a1.json" for n in range(6))  # each claimed once
    for n in range(6):
        adir = tmp_path / "run" / "trials" / str(n) / "attempt-1"
        assert "[coord-metric]" in (adir / "stdout").read_text()
        assert not (adir / "job.sh").exists() and "params" not in (adir / "entry.json").read_text()
    states = slurm.run("squeue", "-h", "--states=all", "-j", ",".join(sorted(pilots)), "-o", "%T").stdout.split()
    assert states and all(s in ("CANCELLED", "COMPLETED") for s in states), states  # none left running


def _start(tmp: Path, env: dict[str, str], trials: int = 1, parallel: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "coordinator", *search_args(tmp, trials=trials, parallel=parallel)],
                            cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_a_pilot_scancelled_mid_trial_is_retried_in_a_new_pilot(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    pilot_registry(tmp_path, slots=1)
    proc = _start(tmp_path, {"TRIAL_STEPS": "20", "TRIAL_SLEEP": "0.3"})
    try:
        job = wait_job(tmp_path / "run")
        _wait(tmp_path / "run" / "trials" / "0" / "attempt-1" / "stdout")  # the pilot runs it
        while "[coord-metric]" not in (tmp_path / "run" / "trials" / "0" / "attempt-1" / "stdout").read_text():
            time.sleep(0.1)
        slurm.run("scancel", job)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    (res,) = results(tmp_path / "run")
    assert res["status"] == "COMPLETE" and res["attempt"] == 2 and res["attempts"][0]["kind"] == "killed", res
    assert wait_job(tmp_path / "run", attempt=2) != job  # a new pilot
    assert claimed(tmp_path) == ["t0-a1.json", "t0-a2.json"]


def test_a_pilot_that_ends_before_taking_its_attempt_costs_no_retry(slurm: slurmcluster.Cluster,
                                                                   tmp_path: Path) -> None:
    """The cluster is full, so the pilot waits in the queue with the attempt in its inbox;
    scancelled there, it never took it: the same attempt is placed on a new pilot."""
    blocker = slurm.run("sbatch", "--parsable", "-c", "2", "-o", "/dev/null", "--wrap", "sleep 300").stdout.strip()
    wait_state(slurm, blocker, "RUNNING")
    pilot_registry(tmp_path, slots=1)
    proc = _start(tmp_path, {})
    try:
        first = wait_job(tmp_path / "run")
        wait_state(slurm, first, "PENDING")
        slurm.run("scancel", first)
        deadline = time.monotonic() + 60
        while records(tmp_path / "run")[(0, 1)]["job"] == first:
            assert time.monotonic() < deadline, "never placed again"
            time.sleep(0.2)
        slurm.run("scancel", blocker)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    (res,) = results(tmp_path / "run")
    assert res["status"] == "COMPLETE" and res["attempt"] == 1, res  # no retry spent, nothing run twice
    assert claimed(tmp_path) == ["t0-a1.json"]


def test_kill_9_then_resume_finds_attempts_on_their_pilots(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    pilot_registry(tmp_path)
    env = {"TRIAL_STEPS": "12", "TRIAL_SLEEP": "0.5"}
    proc = _start(tmp_path, env, trials=2, parallel=2)
    try:
        jobs = [wait_job(tmp_path / "run", n) for n in (0, 1)]
        for n in (0, 1):
            _wait(tmp_path / "shared" / "runs" / "run" / "trials" / str(n) / "attempt-1" / "stdout")
    finally:
        proc.kill()  # SIGKILL: the coordinator dies; the pilots and their trials run on
        proc.wait()
    done = coord(tmp_path, "resume", "run", "--json", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    res = results(tmp_path / "run")
    assert [r["status"] for r in res] == ["COMPLETE"] * 2 and all(r["attempt"] == 1 for r in res), res
    assert [wait_job(tmp_path / "run", n) for n in (0, 1)] == jobs  # re-attached to the same pilots
    assert claimed(tmp_path) == ["t0-a1.json", "t1-a1.json"] and not list((tmp_path / "run").glob("trials/*/attempt-2"))
