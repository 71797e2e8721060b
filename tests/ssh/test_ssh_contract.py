"""The shared Backend contract, run against the SSH backend and a real sshd."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator import resources
from coordinator.backends.agent import AgentBackend
from coordinator.backends.base import Backend
from coordinator.config.registry import load_registry
from coordinator.records import Allocation, Recipe
from tests.backends.contract import BackendContract
from tests.ssh.conftest import Cluster

PRELUDE = "import json, os, sys, time\nspec = json.load(open(os.environ['COORD_SPEC']))\np = spec['params']\n"


class TestSSHContract(BackendContract):
    alloc = Allocation("alpha", 0, None, "test")

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def make_backend(self, tmp_path: Path) -> Backend:
        reg = load_registry(self.cluster.registry())
        return AgentBackend(reg.platforms, self.cluster.known_hosts, resources.folder("runners"), run_id="contract",
                            local_root=tmp_path, stall_s=3.0)

    def make_recipe(self, tmp_path: Path, number: int, body: str) -> Recipe:
        script = tmp_path / f"t{number}.py"
        script.write_text(PRELUDE + body + "\n")
        return Recipe(number, "s", {"x": 3}, 0, None, (sys.executable, str(script)), None, ("loss",))
