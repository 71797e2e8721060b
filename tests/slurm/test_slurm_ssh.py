"""SLURM from a laptop: coord submits over SSH to a login node (a real loopback sshd whose
sessions see the real one-node test cluster), as an unprivileged login user.

Why these tests prove the files went over SSH: the platform's work_dir is ``~/...``,
which is the LOGIN user's home (/home/coordslurm/...), not the home of the root that runs
coord (/root/... never exists); every file there is owned by the login user, which only
that user's SFTP session can have created (a local write by coord would be root's); and
squeue names the login user as the owner of every job (sbatch ran in that user's session).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

from tests import slurmcluster
from tests.slurm.conftest import Login
from tests.slurm.test_slurm_search import ROOT, TRIAL, coord, results, wait_job, wait_state

PYTHON = "/usr/bin/python3"  # the cluster's Python: the login user cannot reach the coordinator's (under /root)


def ssh_registry(tmp: Path, login: Login, slots: int = 2, extra: str = "") -> str:
    """The registry, and the work dir's name under the login user's home."""
    name = f"coordwork-{time.monotonic_ns()}"
    (tmp / "reg.yaml").write_text(f"""\
platforms:
  cluster:
    connection: slurm
{login.platform_lines()}    python: {PYTHON}
    work_dir: ~/{name}
    specs: {{cpu_cores: 2, memory_gb: 1}}
    max_concurrent_jobs: {slots}
    slurm:
      partition: {slurmcluster.PARTITION}
      time_limit: "00:10:00"
      mem: 100M
{extra}task_routing_rules:
  - model_type: custom
    route_to: [cluster]
allow_local_fallback: false
known_hosts: {login.known_hosts}
""")
    return name


def ssh_search(login: Login, tmp: Path, trials: int, parallel: int = 2, steps: int = 1, sleep: float = 0) -> list[str]:
    """The search's arguments; the trial's length is in its script (coord's environment stays
    on this side: a job submitted over SSH gets the login session's)."""
    script = login.shared / f"trial-{steps}-{sleep}.py"
    script.write_text(TRIAL.replace("'TRIAL_STEPS', '1'", f"'TRIAL_STEPS', '{steps}'").replace(
        "'TRIAL_SLEEP', '0'", f"'TRIAL_SLEEP', '{sleep}'"))
    script.chmod(0o644)
    (tmp / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 6}\n")
    return ["search", "--command", f"{PYTHON} {script}", "--space", "space.yaml", "--metric", "loss",
            "--trials", str(trials), "--parallel", str(parallel), "--sampler", "random", "--seed", "1",
            "--registry", "reg.yaml", "--run-dir", "run", "--quiet"]


def no_local_slurm(env: dict[str, str] | None = None) -> dict[str, str]:
    """coord's own environment has no SLURM_CONF: a local sbatch could not reach the cluster."""
    return {**(env or {}), "SLURM_CONF": "/nonexistent/slurm.conf"}


def assert_went_over_ssh(login: Login, work: str, slurm: slurmcluster.Cluster, jobs: list[str]) -> None:
    remote = login.home / work
    assert not (Path("/root") / work).exists()
    uid = pwd.getpwnam(login.user).pw_uid
    files = [p for p in remote.rglob("*") if p.is_file()]
    assert any(p.name == "spec.json" for p in files) and any(p.parent.parent.name == "runners" for p in files)
    assert all(p.stat().st_uid == uid for p in files), [p for p in files if p.stat().st_uid != uid]
    owners = slurm.run("squeue", "-h", "--states=all", "-j", ",".join(jobs), "-o", "%u").stdout.split()
    assert owners == [login.user] * len(jobs)


def test_search_over_ssh_end_to_end(slurm: slurmcluster.Cluster, login: Login, tmp_path: Path) -> None:
    work = ssh_registry(tmp_path, login)
    done = coord(tmp_path, *ssh_search(login, tmp_path, trials=4), env=no_local_slurm())
    assert done.returncode == 0, done.stderr[-3000:]
    res = results(tmp_path / "run")
    assert len(res) == 4 and all(r["status"] == "COMPLETE" and r["platform"] == "cluster" for r in res), res
    jobs = [wait_job(tmp_path / "run", n) for n in range(4)]
    for n in range(4):
        assert "[coord-metric]" in (tmp_path / "run" / "trials" / str(n) / "attempt-1" / "stdout").read_text()
    assert_went_over_ssh(login, work, slurm, jobs)


def test_hosts_checks_the_login_node_over_ssh(slurm: slurmcluster.Cluster, login: Login, tmp_path: Path) -> None:
    work = ssh_registry(tmp_path, login)
    done = coord(tmp_path, "hosts", "--registry", "reg.yaml", env=no_local_slurm())
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("cluster"))
    # sinfo answered and the partition exists; the probe ran with the cluster's Python, as the
    # login user: that Python has no model libraries (the coordinator's has), and says so
    assert "missing libraries: numpy, pandas, sklearn" in done.stdout and "3.11" in line, done.stdout
    assert (login.home / work).stat().st_uid == pwd.getpwnam(login.user).pw_uid
    text = (tmp_path / "reg.yaml").read_text().replace(f"partition: {slurmcluster.PARTITION}", "partition: nope")
    (tmp_path / "reg.yaml").write_text(text)
    bad = coord(tmp_path, "hosts", "--registry", "reg.yaml", env=no_local_slurm())
    line = next(ln for ln in bad.stdout.splitlines() if ln.startswith("cluster"))
    assert "FAIL" in line and "slurm.partition 'nope' does not exist" in line and "debug" in line, bad.stdout


def test_an_unknown_login_host_key_is_refused(slurm: slurmcluster.Cluster, login: Login, tmp_path: Path) -> None:
    ssh_registry(tmp_path, login)
    login.known_hosts.write_text("")  # never trusted: coord must not accept the key it is offered
    done = coord(tmp_path, *ssh_search(login, tmp_path, trials=1), env=no_local_slurm())
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "unknown host key" in done.stderr and "coord hosts trust cluster" in done.stderr, done.stderr
    assert not list((tmp_path / "run").glob("trials/*/attempt-*/slurm.json"))  # nothing was submitted
    assert login.known_hosts.read_text() == ""  # and nothing was added


def test_scancel_from_outside_is_retried_over_ssh(slurm: slurmcluster.Cluster, login: Login, tmp_path: Path) -> None:
    ssh_registry(tmp_path, login, slots=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **no_local_slurm()}
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *ssh_search(login, tmp_path, 1, 1, 20, 0.3)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    assert res["status"] == "COMPLETE" and res["attempt"] == 2 and res["attempts"][0]["kind"] == "killed", res
    assert wait_job(tmp_path / "run", attempt=2) != job


def test_kill_9_then_resume_reattaches_over_ssh(slurm: slurmcluster.Cluster, login: Login, tmp_path: Path) -> None:
    work = ssh_registry(tmp_path, login)
    args = ssh_search(login, tmp_path, trials=2, steps=12, sleep=0.5)
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *args],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), **no_local_slurm()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        jobs = [wait_job(tmp_path / "run", n) for n in (0, 1)]
        for job in jobs:
            wait_state(slurm, job, "RUNNING")
    finally:
        proc.kill()  # the coordinator dies as in a crash; the jobs run on
        proc.wait()
    done = coord(tmp_path, "resume", "run", "--json", env=no_local_slurm())
    assert done.returncode == 0, done.stderr[-3000:]
    res = results(tmp_path / "run")
    assert [r["status"] for r in res] == ["COMPLETE"] * 2 and all(r["attempt"] == 1 for r in res), res
    assert [wait_job(tmp_path / "run", n) for n in (0, 1)] == jobs  # re-attached by id, nothing resubmitted
    assert_went_over_ssh(login, work, slurm, jobs)


def test_every_command_of_the_ssh_example_in_docs_slurm_md_runs(slurm: slurmcluster.Cluster, login: Login,
                                                                 tmp_path: Path) -> None:
    """docs/slurm.md's laptop example: its registry (the login node, its key and paths made
    this test's) and its commands, in order, starting from an empty known_hosts."""
    from tests.slurm.test_slurm_cli import commands, section
    text = section("## A worked example: from a laptop, over SSH")
    reg = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    work = f"coordwork-{time.monotonic_ns()}"
    reg = (reg.replace("host: login.cluster.example.org", f"host: 127.0.0.1\n    port: {login.host.port}")
           .replace("user: alice", f"user: {login.user}").replace("~/.ssh/id_ed25519", str(login.key))
           .replace("/shared/envs/coord/bin/python", PYTHON).replace("~/coord", f"~/{work}")
           .replace("partition: short", f"partition: {slurmcluster.PARTITION}")
           .replace("~/.config/coord/known_hosts", str(login.known_hosts)))
    (tmp_path / "laptop.yaml").write_text(reg)
    login.known_hosts.write_text("")
    ssh_search(login, tmp_path, trials=1)  # the trial script and space.yaml
    for args in commands(text, tmp_path):
        args = [a.replace("python /shared/alice/train.py", f"{PYTHON} {login.shared / 'trial-1-0.py'}") for a in args]
        done = coord(tmp_path, *args, env=no_local_slurm())
        if args[:3] == ["hosts", "--registry", "laptop.yaml"] and len(args) == 3:
            # the probe ran on the login node; the test cluster's Python lacks the model libraries
            assert "cluster" in done.stdout and "missing libraries" in done.stdout, done.stdout + done.stderr
            continue
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    assert login.known_hosts.read_text().startswith(f"[127.0.0.1]:{login.host.port} ")
    res = results(tmp_path / "run")
    assert len(res) == 4 and all(r["status"] == "COMPLETE" for r in res), res
    recs = [json.loads(p.read_text()) for p in (tmp_path / "run").glob("trials/*/attempt-1/slurm.json")]
    assert all(r.get("pilot") for r in recs) and len({r["job"] for r in recs}) <= 2, recs  # pilot jobs
    assert_went_over_ssh(login, work, slurm, sorted({r["job"] for r in recs}))


def test_the_follow_reads_are_one_ssh_command_for_all_jobs(slurm: slurmcluster.Cluster, login: Login,
                                                           tmp_path: Path) -> None:
    """What the follow thread reads per tick (every job's stdout from its offset, exit
    records, claims) is one command on the login node, not one per file."""
    from coordinator.backends.slurmsite import SshSite
    from coordinator.config.registry import load_registry
    ssh_registry(tmp_path, login)
    site = SshSite(load_registry(str(tmp_path / "reg.yaml")).platforms["cluster"], login.known_hosts)
    files = []
    for i in range(5):
        f = login.shared / f"out{i}"
        f.write_bytes(b"x" * i + f"line {i}\n".encode())
        files.append((str(f), i))
    calls: list[object] = []
    run = site.conn.run

    def counted(argv: list[str], timeout: float = 30.0) -> object:
        calls.append(argv)
        return run(argv, timeout)
    site.conn.run = counted  # type: ignore[method-assign,assignment]
    try:
        got = site.reads([*files, (str(login.shared / "absent"), 0)])
    finally:
        site.close()
    assert got == [f"line {i}\n".encode() for i in range(5)] + [None]
    assert len(calls) == 1, calls
