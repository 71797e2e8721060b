"""The shared Backend contract, run against the SSH backend and a real sshd."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import resources
from coordinator.backends.agent import AgentBackend
from coordinator.backends.base import Backend
from coordinator.config.registry import load_registry
from coordinator.records import Allocation
from tests.backends.contract import AgentContract
from tests.ssh.conftest import Cluster


class TestSSHContract(AgentContract):
    alloc = Allocation("alpha", 0, None, "test")

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def make_backend(self, tmp_path: Path) -> Backend:
        reg = load_registry(self.cluster.registry())
        return AgentBackend(reg.platforms, self.cluster.known_hosts, resources.folder("runners"), run_id="contract",
                            local_root=tmp_path, stall_s=3.0)
