"""Fixtures: one real one-node SLURM cluster per test session (tests/slurmcluster.py), and a
clean queue for every test."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurmcluster


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
