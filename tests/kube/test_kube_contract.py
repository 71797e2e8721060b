"""The Backend contract (tests/backends/contract.py) run against the Kubernetes backend and
the in-process fake API: real trials, run by the fake's pods as local processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import resources
from coordinator.backends.base import Backend
from coordinator.backends.kube import KubeBackend
from coordinator.config.registry import load_registry
from coordinator.records import Allocation
from tests import kubefake
from tests.backends.contract import AgentContract
from tests.kube.conftest import registry_text


def kube_backend(tmp_path: Path, run_id: str = "contract") -> KubeBackend:
    reg = tmp_path / "reg.yaml"
    if not reg.exists():
        reg.write_text(registry_text(tmp_path))
    return KubeBackend(load_registry(reg).platforms, resources.folder("runners"), run_id, tmp_path / "run")


class TestKube(AgentContract):
    alloc = Allocation("kube", 0, None, "test")

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster: kubefake.Cluster) -> None:
        self.cluster = cluster

    def make_backend(self, tmp_path: Path) -> Backend:
        return kube_backend(tmp_path)
