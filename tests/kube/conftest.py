"""Fixtures: an in-process fake Kubernetes API (tests/kubefake.py) per test, which the
Kubernetes backend connects to instead of a cluster (none can run on these machines)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from tests import kubefake  # noqa: E402


def registry_text(tmp: Path, slots: int = 2, extra: str = "", image: str = "ghcr.io/lab/coord-trials:1") -> str:
    return f"""\
platforms:
  kube:
    connection: kubernetes
    python: {sys.executable}
    specs: {{cpu_cores: 4, memory_gb: 8}}
    max_concurrent_jobs: {slots}
    kubernetes:
      namespace: coord-test
      image: {image}
      volume_claim: coord-data
      mount_path: /coord
      cpu_request: 500m
      memory_request: 256Mi
{extra}task_routing_rules:
  - model_type: "*"
    route_to: [kube]
allow_local_fallback: false
"""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[kubefake.Cluster]:
    """The fake API, its claim coord-data a local directory, and the backend's connect
    pointed at it."""
    volume = tmp_path / "volume"
    volume.mkdir()
    c = kubefake.Cluster(tmp_path / "fake", {"coord-data": volume})
    import coordinator.backends.kube as kube
    import coordinator.backends.kubeapi as kubeapi

    monkeypatch.setattr(kubeapi, "connect", c.connect)
    monkeypatch.setattr(kube, "PULL_GRACE_S", 1.0)
    yield c
    c.close()
