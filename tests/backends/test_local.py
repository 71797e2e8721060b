"""Local trials go through the same agent as SSH hosts (a child process on pipes): the
shared contract, the warm worker, and trials that outlive the coordinator's agent."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from coordinator import resources
from coordinator.backends.agent import AgentBackend
from coordinator.backends.base import Backend, EndEvent
from coordinator.backends.fake import FakeBackend, Script, VirtualClock
from coordinator.config.localhost import default_registry
from coordinator.records import Allocation, Recipe
from tests.backends.contract import AgentContract, BackendContract, Trial, collect

PRELUDE = "import json, os, sys, time\nspec = json.load(open(os.environ['COORD_SPEC']))\np = spec['params']\n"


def _backend(tmp_path: Path) -> AgentBackend:
    return AgentBackend(default_registry().platforms, Path("/nonexistent"), resources.folder("runners"),
                        run_id="t", local_root=tmp_path)


class TestLocalCommand(AgentContract):
    def make_backend(self, tmp_path: Path) -> Backend:
        return _backend(tmp_path)


class TestFake(BackendContract):
    """The virtual-clock backend every loop test relies on keeps the same contract."""

    processes = False  # nothing runs
    reattach = False  # nothing outlives it

    def make_backend(self, tmp_path: Path) -> Backend:
        self.trials: dict[int, Trial] = {}
        return FakeBackend(VirtualClock(), self._script)

    def _script(self, recipe: Recipe, attempt: int, alloc: Allocation) -> Script:
        t = self.trials[recipe.number]
        return Script(t.sleep_s, t.exit_code, t.report_after, ((0.0, t.report),) if t.report else ())

    def make_recipe(self, tmp_path: Path, number: int, trial: Trial, timeout_s: float | None = None) -> Recipe:
        self.trials[number] = trial
        return Recipe(number, "s", {"x": 3}, 0, None, ("true",), None, ("loss",), timeout_s=timeout_s)


def _worker_pid(tmp_path: Path) -> int:
    return int((tmp_path / "slots" / "0" / "worker.pid").read_text().split()[0])


def test_warm_worker_reuses_one_process_and_loads_data_once(tmp_path: Path, small_csv: Path) -> None:
    backend = _backend(tmp_path)
    data = {"path": str(small_csv), "target": "home_win", "cv": "holdout", "split_seed": 0, "task": "classification",
            "sha256": "x"}
    pids = []
    try:
        alloc = Allocation("local", 0, None, "test")
        for n in range(2):
            backend.launch(Recipe(n, "glm", {"C": 1.0}, n, "glm", None, data, ("auc",)), 1, alloc)
            (end,) = [e for e in collect(backend, 1, 60) if isinstance(e, EndEvent)]
            assert end.outcome.exit_code == 0
            pids.append(_worker_pid(tmp_path))
        assert pids[0] == pids[1]  # the same warm worker ran both trials
        spec = json.loads((tmp_path / "trials/1/attempt-1" / "spec.json").read_text())
        assert spec["params"] == {"C": 1.0} and spec["data"]["path"] == str(small_csv)
    finally:
        backend.close()
    time.sleep(0.2)
    assert not Path(f"/proc/{pids[0]}").exists() or "zombie" in Path(f"/proc/{pids[0]}/status").read_text().lower()


def test_a_trial_outlives_the_agent_and_a_second_backend_follows_it_without_rerunning(tmp_path: Path) -> None:
    """What ``coord resume`` relies on: the coordinator (here: its backend and agent) goes
    away mid-trial; the trial goes on; the same launch from a new backend re-attaches to
    it, replays its output from the first byte, and never starts it a second time."""
    script = tmp_path / "t.py"
    script.write_text(PRELUDE + "open(os.path.join(spec['attempt_dir'], '..', 'starts'), 'a').write('x')\n"
                      "print('[coord-metric] {\"loss\": 1}', flush=True)\ntime.sleep(1.5)\n"
                      "print('[coord-metric] {\"loss\": 2}')\n")
    spec = Recipe(0, "s", {"x": 3}, 0, None, (sys.executable, str(script)), None, ("loss",))
    alloc = Allocation("local", 0, None, "test")
    first = _backend(tmp_path)
    first.launch(spec, 1, alloc)
    time.sleep(0.6)
    first.closed = True  # as if the coordinator died: no re-attach, nothing cancelled
    first._stop.set()  # and no watchdog left to notice the silence
    agent = first.hosts["local"].conn.chan.proc  # type: ignore[union-attr]
    agent.kill()
    agent.wait()
    pid = int((tmp_path / "trials/0/attempt-1/pid").read_text())
    os.kill(pid, 0)  # still running
    second = _backend(tmp_path)
    try:
        second.launch(spec, 1, alloc)
        events = collect(second, 1, 20)
    finally:
        second.close()
    values = [e.values["loss"] for e in events if not isinstance(e, EndEvent)]
    (end,) = [e for e in events if isinstance(e, EndEvent)]
    assert values == [1.0, 2.0] and end.outcome.exit_code == 0
    assert (tmp_path / "trials/0/starts").read_text() == "x"  # started exactly once


def test_an_idle_warm_worker_ends_by_itself(tmp_path: Path) -> None:
    """A run whose coordinator died and is never resumed must not leave workers forever."""
    import subprocess

    fifo = tmp_path / "jobs"
    os.mkfifo(fifo)
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(resources.folder("runners") / "worker.py"), "--fifo", str(fifo)],
                            env={**os.environ, "COORD_WORKER_IDLE_S": "1.0", "COORD_PRELOAD": ""})
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - began >= 1.0
    assert not fifo.exists()  # it retired under the slot's lock and took its pipe with it
