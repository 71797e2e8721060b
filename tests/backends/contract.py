"""The Backend contract, as one test class every backend runs (local now; SSH and fake next).

A subclass provides ``make_backend(tmp_path)`` and ``make_recipe(tmp_path, number, body)``,
where ``body`` is Python source for a trial that reads its spec from COORD_SPEC.
"""

from __future__ import annotations

import time
from pathlib import Path

from coordinator.backends.base import Backend, EndEvent, Event, MetricEvent
from coordinator.records import Allocation, Recipe


def collect(backend: Backend, n_ends: int, timeout: float = 30.0) -> list[Event]:
    events: list[Event] = []
    end = time.monotonic() + timeout
    while sum(isinstance(e, EndEvent) for e in events) < n_ends and time.monotonic() < end:
        events.extend(backend.poll(0.2))
    return events


class BackendContract:
    def make_backend(self, tmp_path: Path) -> Backend:
        raise NotImplementedError

    def make_recipe(self, tmp_path: Path, number: int, body: str) -> Recipe:
        raise NotImplementedError

    alloc = Allocation("local", 0, None, "test")

    def first(self, tmp_path: Path, number: int, body: str) -> tuple[Recipe, int]:
        """The first attempt of a trial running ``body``: ``launch(*first(...), alloc)``."""
        return self.make_recipe(tmp_path, number, body), 1

    def test_metrics_then_exactly_one_end(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            h = backend.launch(*self.first(tmp_path, 0, "print('[coord-metric] {\"loss\": %d}' % p['x'])"),
                               self.alloc)
            events = collect(backend, 1)
            metrics = [e for e in events if isinstance(e, MetricEvent)]
            ends = [e for e in events if isinstance(e, EndEvent)]
            assert [m.values for m in metrics] == [{"loss": 3.0}]
            assert len(ends) == 1 and ends[0].handle == h and ends[0].outcome.exit_code == 0
            assert events[-1] is ends[0]
            assert backend.poll(0.3) == []  # nothing after the end
        finally:
            backend.close()

    def test_failure_exit_code_is_reported(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            backend.launch(*self.first(tmp_path, 0, "sys.exit(78)"), self.alloc)
            (end,) = [e for e in collect(backend, 1) if isinstance(e, EndEvent)]
            assert end.outcome.exit_code == 78 and not end.outcome.cancelled
        finally:
            backend.close()

    def test_cancel_ends_a_running_attempt_promptly(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        try:
            h = backend.launch(*self.first(tmp_path, 0, "print('[coord-metric] {\"a\": 1}', flush=True)\n"
                                                            "time.sleep(60)"), self.alloc)
            first = collect(backend, 0, 0.0) + backend.poll(10)
            assert any(isinstance(e, MetricEvent) for e in first)
            t0 = time.monotonic()
            backend.cancel(h)
            (end,) = [e for e in collect(backend, 1, 10) if isinstance(e, EndEvent)]
            assert end.outcome.cancelled and time.monotonic() - t0 < 5
        finally:
            backend.close()

    def test_close_kills_what_runs_and_is_idempotent(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path)
        pid_file = tmp_path / "pid"
        backend.launch(*self.first(tmp_path, 0, f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                                   "time.sleep(60)"), self.alloc)
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        backend.close()
        backend.close()
        pid = int(pid_file.read_text())
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
