"""Searches routed to a real one-node SLURM cluster (tests/slurmcluster.py) through `coord`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests import slurmcluster

ROOT = Path(__file__).resolve().parents[2]
TRIAL = """\
import json, os, sys, time
spec = json.load(open(os.environ['COORD_SPEC']))
x = spec['params']['x']
for step in range(int(os.environ.get('TRIAL_STEPS', '1'))):
    print('[coord-metric] ' + json.dumps({'step': step, 'loss': (x - 3) ** 2 + step}), flush=True)
    time.sleep(float(os.environ.get('TRIAL_SLEEP', '0')))
print('[coord-metric] ' + json.dumps({'loss': (x - 3) ** 2}), flush=True)
"""


def registry(tmp: Path, partition: str = slurmcluster.PARTITION, slots: int = 2) -> Path:
    path = tmp / "reg.yaml"
    path.write_text(f"""\
platforms:
  laptop:
    connection: local
    specs: {{cpu_cores: 1, memory_gb: 1}}
    max_concurrent_jobs: 1
  cluster:
    connection: slurm
    python: {sys.executable}
    work_dir: {tmp / 'shared'}
    specs: {{cpu_cores: 2, memory_gb: 1}}
    max_concurrent_jobs: {slots}
    slurm:
      partition: {partition}
      time_limit: "00:10:00"
      cpus_per_task: 1
      mem: 100M
task_routing_rules:
  - model_type: custom
    route_to: [cluster]
allow_local_fallback: false
""")
    return path


def coord(tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=tmp, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=timeout)


def search_args(tmp: Path, trials: int, parallel: int = 2) -> list[str]:
    (tmp / "trial.py").write_text(TRIAL)
    (tmp / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 6}\n")
    return ["search", "--command", f"{sys.executable} {tmp / 'trial.py'}", "--space", "space.yaml",
            "--metric", "loss", "--trials", str(trials), "--parallel", str(parallel), "--sampler", "random",
            "--seed", "1", "--registry", "reg.yaml", "--run-dir", "run", "--quiet"]


def results(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.glob("trials/*/result.json"))]


def wait_job(run: Path, number: int = 0, attempt: int = 1, timeout: float = 60) -> str:
    record = run / "trials" / str(number) / f"attempt-{attempt}" / "slurm.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists() and (job := json.loads(record.read_text()).get("job")):
            return str(job)
        time.sleep(0.2)
    raise AssertionError(f"no job id in {record}")


def wait_state(slurm: slurmcluster.Cluster, job: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = slurm.run("squeue", "-h", "--states=all", "-j", job, "-o", "%T", check=False).stdout.strip()
        if seen == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} never {state} (last {seen!r})")


def test_search_runs_every_trial_as_a_slurm_job(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    registry(tmp_path)
    done = coord(tmp_path, *search_args(tmp_path, trials=4))
    assert done.returncode == 0, done.stderr[-3000:]
    res = results(tmp_path / "run")
    assert len(res) == 4 and all(r["status"] == "COMPLETE" and r["platform"] == "cluster" for r in res), res
    jobs = set()
    for n in range(4):
        adir = tmp_path / "run" / "trials" / str(n) / "attempt-1"
        jobs.add(json.loads((adir / "slurm.json").read_text())["job"])
        script = (adir / "job.sh").read_text()
        assert "#SBATCH --partition=debug" in script and "#SBATCH --signal=B:TERM@60" in script
        assert "params" not in script and '"x"' not in script  # parameters only in spec.json
        assert "[coord-metric]" in (adir / "stdout").read_text()  # the job's stdout, followed home
    assert len(jobs) == 4  # one job per attempt
    states = slurm.run("squeue", "-h", "--states=all", "-j", ",".join(jobs), "-o", "%T").stdout.split()
    assert states == ["COMPLETED"] * 4


def test_a_bad_partition_is_one_error_naming_the_platform_and_key(slurm: slurmcluster.Cluster,
                                                                 tmp_path: Path) -> None:
    registry(tmp_path, partition="nope")
    done = coord(tmp_path, *search_args(tmp_path, trials=1))
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert any("platforms.cluster.slurm.partition" in ln and "'nope'" in ln and "cluster" in ln
               and "debug" in ln for ln in err), done.stderr
    assert not list((tmp_path / "run").glob("trials/*/attempt-*/slurm.json"))  # nothing was submitted


def test_a_job_scancelled_from_outside_is_retried(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    registry(tmp_path, slots=1)
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *search_args(tmp_path, trials=1, parallel=1)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "TRIAL_STEPS": "20",
                                               "TRIAL_SLEEP": "0.3"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        job = wait_job(tmp_path / "run")
        wait_state(slurm, job, "RUNNING")
        time.sleep(1)
        slurm.run("scancel", job)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    (res,) = results(tmp_path / "run")
    assert res["status"] == "COMPLETE" and res["attempt"] == 2, res
    assert res["attempts"][0]["kind"] == "killed"
    assert wait_job(tmp_path / "run", attempt=2) != job


def test_kill_9_then_resume_reattaches_to_the_running_jobs(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    registry(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIAL_STEPS": "12", "TRIAL_SLEEP": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *search_args(tmp_path, trials=2)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        jobs = [wait_job(tmp_path / "run", n) for n in (0, 1)]
        for job in jobs:
            wait_state(slurm, job, "RUNNING")
    finally:
        proc.kill()  # SIGKILL: the coordinator dies as in a crash; the jobs run on
        proc.wait()
    assert [slurm.run("squeue", "-h", "-j", j, "-o", "%T").stdout.strip() for j in jobs] == ["RUNNING"] * 2
    done = coord(tmp_path, "resume", "run", "--json", env={"TRIAL_STEPS": "12", "TRIAL_SLEEP": "0.5"})
    assert done.returncode == 0, done.stderr[-3000:]
    res = results(tmp_path / "run")
    assert [r["status"] for r in res] == ["COMPLETE"] * 2 and all(r["attempt"] == 1 for r in res), res
    assert [wait_job(tmp_path / "run", n) for n in (0, 1)] == jobs  # re-attached by job id, nothing resubmitted
    assert not list((tmp_path / "run").glob("trials/*/attempt-2"))


def test_scontrol_requeue_resumes_the_builtin_model_from_its_checkpoint(slurm: slurmcluster.Cluster,
                                                                       small_csv: Path, tmp_path: Path) -> None:
    reg = registry(tmp_path, slots=1)
    reg.write_text(reg.read_text().replace("model_type: custom", 'model_type: "*"'))
    (tmp_path / "space.yaml").write_text("params:\n  max_depth: {type: int, low: 4, high: 5}\n"
                                         "fixed: {n_estimators: 1500}\n")
    args = ["search", "--model", "random_forest", "--data", str(small_csv), "--target", "home_win",
            "--space", "space.yaml",
            "--trials", "1", "--parallel", "1", "--checkpoint-every", "0", "--registry", "reg.yaml",
            "--run-dir", "run", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *args], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        job = wait_job(tmp_path / "run")
        shared = next((tmp_path / "shared" / "runs").glob("run/trials/0/attempt-1"))
        deadline = time.monotonic() + 120
        while "[coord-ckpt]" not in ((shared / "stdout").read_text() if (shared / "stdout").exists() else ""):
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.2)
        slurm.run("scontrol", "requeue", job)
        wait_state(slurm, job, "PENDING")
        slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")  # SLURM holds a requeued job ~2 min
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    (res,) = results(tmp_path / "run")
    assert res["status"] == "COMPLETE" and res["attempt"] == 1, res  # the same attempt: not counted twice
    restarts = slurm.run("squeue", "-h", "--states=all", "-j", job, "-O", "RestartCnt").stdout.strip()
    assert restarts == "1"
    assert "resuming from the checkpoint at step" in (shared / "stderr").read_text()
