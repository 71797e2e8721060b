"""The Backend contract (``coordinator/backends/base.py``), as one test class that every
backend runs: the fake one (virtual clock; every loop test relies on it), the local agent,
and the SSH agent against a real sshd.

A subclass provides ``make_backend(tmp_path)`` and ``make_recipe(tmp_path, number,
trial)``, turning a backend-neutral ``Trial`` (what the attempt does) into what that backend
runs: Python source for the agent backends, a ``Script`` for the fake one. Capability flags
say which parts apply: ``processes`` (real processes that ``close`` must kill) and
``reattach`` (a trial outlives its backend and a new one follows it by relaunching).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent
from coordinator.records import Allocation, Recipe


@dataclass(frozen=True)
class Trial:
    """What one attempt does: report ``report`` (if any), run ``sleep_s``, exit ``exit_code``."""

    report: dict[str, float] | None = None
    sleep_s: float = 0.0
    exit_code: int = 0
    pid_file: Path | None = None  # real processes: the trial writes its pid here first
    report_after: dict[str, float] | None = None  # a second report, after the sleep


def collect(backend: Backend, n_ends: int, timeout: float = 30.0) -> list[Event]:
    events: list[Event] = []
    end = time.monotonic() + timeout
    while sum(isinstance(e, EndEvent) for e in events) < n_ends and time.monotonic() < end:
        events.extend(backend.poll(0.2))
    return events


def ends(events: list[Event]) -> list[EndEvent]:
    return [e for e in events if isinstance(e, EndEvent)]


class BackendContract:
    processes = True
    reattach = True
    alloc = Allocation("local", 0, None, "test")

    def make_backend(self, tmp_path: Path) -> Backend:
        raise NotImplementedError

    def make_recipe(self, tmp_path: Path, number: int, trial: Trial, timeout_s: float | None = None) -> Recipe:
        raise NotImplementedError

    def launch(self, backend: Backend, tmp_path: Path, number: int, trial: Trial,
               timeout_s: float | None = None) -> Handle:
        return backend.launch(self.make_recipe(tmp_path, number, trial, timeout_s), 1, self.alloc)

    def test_prepare_is_idempotent(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            backend.prepare(self.alloc.platform)
            backend.prepare(self.alloc.platform)
        finally:
            backend.close()

    def test_metrics_then_exactly_one_end(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            h = self.launch(backend, tmp_path, 0, Trial(report={"loss": 3.0}))
            events = collect(backend, 1)
            metrics = [e for e in events if isinstance(e, MetricEvent)]
            assert [m.values for m in metrics] == [{"loss": 3.0}]
            (end,) = ends(events)
            assert end.handle == h and end.outcome.exit_code == 0 and not end.outcome.cancelled
            assert events[-1] is end
            assert backend.poll(0.3) == []  # nothing after the end
        finally:
            backend.close()

    def test_failure_exit_code_is_reported(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            self.launch(backend, tmp_path, 0, Trial(exit_code=78))
            (end,) = ends(collect(backend, 1))
            assert end.outcome.exit_code == 78 and not end.outcome.cancelled and not end.outcome.timed_out
        finally:
            backend.close()

    def test_cancel_ends_a_running_attempt_promptly(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            h = self.launch(backend, tmp_path, 0, Trial(report={"a": 1.0}, sleep_s=60))
            first = collect(backend, 0, 0.0) + backend.poll(10)
            assert any(isinstance(e, MetricEvent) for e in first)
            t0 = time.monotonic()
            backend.cancel(h)
            events = collect(backend, 1, 10)
            (end,) = ends(events)
            assert end.outcome.cancelled and time.monotonic() - t0 < 5
            assert not ends(backend.poll(0.5))  # exactly one end, also after a cancel
        finally:
            backend.close()

    def test_a_stopped_attempt_ends_once_and_not_as_complete(self, tmp_path: Path) -> None:
        """``stop`` (a prune): the trial ends early, with exactly one end event."""
        backend = self.make_backend(tmp_path)
        try:
            h = self.launch(backend, tmp_path, 0, Trial(report={"a": 1.0}, sleep_s=60, report_after={"a": 2.0}))
            collect(backend, 0, 0.0)
            backend.poll(10)
            backend.stop(h)
            events = collect(backend, 1, 20)
            (end,) = ends(events)
            assert end.outcome.exit_code != 0 and end.outcome.duration_s < 30
            assert not [e for e in events if isinstance(e, MetricEvent) and e.values == {"a": 2.0}]
            assert not ends(backend.poll(0.5))
        finally:
            backend.close()

    def test_the_time_limit_ends_an_attempt_as_timed_out(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            self.launch(backend, tmp_path, 0, Trial(sleep_s=60), timeout_s=1.0)
            (end,) = ends(collect(backend, 1, 30))
            assert end.outcome.timed_out and not end.outcome.cancelled
            assert 0.9 <= end.outcome.duration_s < 20
        finally:
            backend.close()

    def test_close_ends_every_attempt_once_and_is_idempotent(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        pid_file = tmp_path / "pid"
        h = self.launch(backend, tmp_path, 0, Trial(sleep_s=60, pid_file=pid_file if self.processes else None))
        for _ in range(100):
            if not self.processes or (pid_file.exists() and pid_file.read_text()):
                break
            time.sleep(0.05)
        backend.close()
        backend.close()
        events = collect(backend, 1, 5)
        assert [e.handle for e in ends(events)] == [h]  # exactly one end, and it is the close's
        assert ends(events)[0].outcome.exit_code != 0
        if self.processes:
            pid = int(pid_file.read_text())
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()

    def test_a_relaunch_from_a_new_backend_follows_the_running_attempt(self, tmp_path: Path) -> None:
        """What ``coord resume`` relies on: the first backend lets go (``detach``, as a
        coordinator that died); a second one launched with the same recipe and attempt
        follows the attempt from its first byte and never starts it twice."""
        if not self.reattach:
            return
        starts = tmp_path / "starts"
        trial = Trial(report={"loss": 1.0}, sleep_s=1.5, report_after={"loss": 2.0}, pid_file=starts)
        recipe = self.make_recipe(tmp_path, 0, trial)
        first = self.make_backend(tmp_path)
        first.launch(recipe, 1, self.alloc)
        collect(first, 0, 0.0)
        first.poll(10)
        first.detach()
        second = self.make_backend(tmp_path)
        try:
            second.launch(recipe, 1, self.alloc)
            events = collect(second, 1, 30)
        finally:
            second.close()
        values = [e.values["loss"] for e in events if isinstance(e, MetricEvent)]
        (end,) = ends(events)
        assert values == [1.0, 2.0] and end.outcome.exit_code == 0
        assert len(starts.read_text().split()) == 1  # started exactly once


def python_source(trial: Trial) -> str:
    """A real trial doing what ``trial`` says; it first checks that its parameters came in
    its spec file (exit 99 if not): they never travel on a command line."""
    lines = ["import json, os, sys, time",
             "if json.load(open(os.environ['COORD_SPEC']))['params'] != {'x': 3}: sys.exit(99)"]
    if trial.pid_file is not None:
        lines.append(f"open({str(trial.pid_file)!r}, 'a').write(str(os.getpid()) + '\\n')")
    for values, wait in ((trial.report, trial.sleep_s), (trial.report_after, 0.0)):
        if values is not None:
            lines.append(f"print('[coord-metric] ' + json.dumps({values!r}), flush=True)")
        if wait:
            lines.append(f"time.sleep({wait})")
    lines.append(f"sys.exit({trial.exit_code})")
    return "\n".join(lines) + "\n"


class AgentContract(BackendContract):
    """The agent backends (local, SSH): the trial is a Python script."""

    def make_recipe(self, tmp_path: Path, number: int, trial: Trial, timeout_s: float | None = None) -> Recipe:
        import sys

        script = tmp_path / f"t{number}.py"
        script.write_text(python_source(trial))
        return Recipe(number, "s", {"x": 3}, 0, None, (sys.executable, str(script)), None, ("loss",),
                      timeout_s=timeout_s)
