"""Fixtures: one real one-node SLURM cluster per test session (tests/slurmcluster.py), and a
clean queue for every test."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import slurmcluster, sshd


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[slurmcluster.Cluster]:
    why = slurmcluster.available()
    if why:
        pytest.skip(f"no test SLURM cluster: {why}")
    root = Path(tempfile.mkdtemp(prefix="coord-slurm-"))
    cluster = slurmcluster.Cluster(root)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
    slurmcluster.remove(root)


@pytest.fixture
def slurm(slurm_cluster: slurmcluster.Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[slurmcluster.Cluster]:
    """The cluster, its SLURM_CONF in this process's environment (so coord's own sbatch and
    squeue find it), and no job of an earlier test left in its queue."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    yield slurm_cluster
    slurm_cluster.run("scancel", "--full", "-p", slurmcluster.PARTITION, check=False)


LOGIN_USER = "coordslurm"


@dataclass
class Login:
    """A login node reached over SSH: a real loopback sshd whose sessions see the test
    cluster (SLURM_CONF set by the sshd for every session), as an unprivileged user of
    their own, so what coord does there is done as that user, not as the root that runs coord."""

    host: sshd.SSHHost
    key: Path
    known_hosts: Path
    user: str
    home: Path
    shared: Path  # a directory the login user's jobs can read (the trial scripts)

    def platform_lines(self) -> str:
        return (f"    host: 127.0.0.1\n    port: {self.host.port}\n    user: {self.user}\n"
                f"    identity_file: {self.key}\n")

    def trust(self) -> None:
        self.known_hosts.write_text(self.host.known_hosts_line() + "\n")


@pytest.fixture
def login(slurm: slurmcluster.Cluster, tmp_path: Path) -> Iterator[Login]:
    if not sshd.available() or not sshd.ensure_user(LOGIN_USER, "/bin/bash"):
        pytest.skip("no OpenSSH server or cannot add the login user")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    for d in (slurm.root, slurm.root / "munge"):  # the login user's sbatch reads slurm.conf, talks to munged
        os.chmod(d, 0o755)
    # sshd reads authorized_keys as the login user, and the jobs read the trial scripts: both
    # in a directory of our own (pytest's base temp dir is 0700 and reset so by every session)
    shared = Path(tempfile.mkdtemp(prefix="coord-login-"))
    os.chmod(shared, 0o755)
    key = tmp_path / "client_key"
    host = sshd.make_host(shared, "login", sshd.keygen(key), user=LOGIN_USER)
    with open(host.root / "sshd_config", "a") as fh:
        fh.write(f"SetEnv SLURM_CONF={slurm.conf}\n")
    for f in (host.root, host.root / "authorized_keys"):
        f.chmod(f.stat().st_mode | 0o044 | (0o011 if f.is_dir() else 0))
    host.start()
    home = Path(pwd.getpwnam(LOGIN_USER).pw_dir)
    lg = Login(host, key, tmp_path / "known_hosts", LOGIN_USER, home, shared)
    lg.trust()
    try:
        yield lg
    finally:
        host.stop()
        shutil.rmtree(shared, ignore_errors=True)
