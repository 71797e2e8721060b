"""The local backend against the shared contract, for both ways it runs trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from coordinator import resources
from coordinator.backends.base import Backend, EndEvent
from coordinator.backends.local import LocalBackend
from coordinator.registry import default_registry
from coordinator.trial import TrialSpec
from tests.backends.contract import BackendContract, collect

PRELUDE = "import json, os, sys, time\nspec = json.load(open(os.environ['COORD_SPEC']))\np = spec['params']\n"


class TestLocalCommand(BackendContract):
    def make_backend(self, tmp_path: Path) -> Backend:
        return LocalBackend(default_registry().platforms, resources.folder("runners"), cwd=tmp_path)

    def make_spec(self, tmp_path: Path, number: int, body: str) -> TrialSpec:
        script = tmp_path / f"t{number}.py"
        script.write_text(PRELUDE + body + "\n")
        return TrialSpec(number, 1, "s", {"x": 3}, 0, None, (sys.executable, str(script)), None, ("loss",),
                         str(tmp_path / "ckpt"), str(tmp_path / f"trials/{number}/attempt-1"))


def test_warm_worker_reuses_one_process_and_loads_data_once(tmp_path: Path, small_csv: Path) -> None:
    backend = LocalBackend(default_registry().platforms, resources.folder("runners"), cwd=tmp_path)
    data = {"path": str(small_csv), "target": "home_win", "cv": "holdout", "split_seed": 0, "task": "classification"}
    try:
        from coordinator.trial import Allocation

        alloc = Allocation("local", 0, None, "test")
        for n in range(2):
            backend.launch(TrialSpec(n, 1, "glm", {"C": 1.0}, n, "glm", None, data, ("auc",),
                                     str(tmp_path / "ck"), str(tmp_path / f"a{n}")), alloc)
            (end,) = [e for e in collect(backend, 1, 60) if isinstance(e, EndEvent)]
            assert end.outcome.exit_code == 0
        assert len(backend.workers) == 1  # the same warm worker ran both trials
        pid = next(iter(backend.workers.values())).proc.pid
        spec = json.loads((tmp_path / "a1" / "spec.json").read_text())
        assert spec["params"] == {"C": 1.0} and spec["data"]["path"] == str(small_csv)
    finally:
        backend.close()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
