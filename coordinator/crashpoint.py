"""The crash-point hook: ``COORD_CRASH_AT=POINT[:N[:SIGNAL]]`` makes the coordinator kill itself
with SIGKILL the Nth time (default the first) it reaches POINT, so tests can prove that
``coord resume`` recovers from a crash at every step that changes state.

The points, in the order a trial passes them: after Optuna's ask, after trial.json is
written, after the launch, at an intermediate report, when the end arrives (before it is
committed), after result.json is committed (before Optuna is told), after the tell, and
half-way through writing the report.
"""

from __future__ import annotations

import os
import signal

ENV = "COORD_CRASH_AT"
POINTS = ("after_ask", "after_record", "after_launch", "mid_run", "after_end", "after_commit", "after_tell",
          "mid_report")
_hits: dict[str, int] = {}


def reached(point: str) -> None:
    """Die here, as ``kill -9`` would, if the environment asks for it; with a third field
    (``after_commit:2:INT``) send that signal instead, once (a Ctrl-C at that very moment)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, rest = wanted.partition(":")
    nth, _, sig = rest.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == int(nth or 1) and sig:
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
    elif _hits[point] >= int(nth or 1) and not sig:
        os.kill(os.getpid(), signal.SIGKILL)
