"""The invariant checker of docs/reliability.md (I1-I6, I9) over a run directory.

Test trials compute a pure function of their parameters and log every start and end of
every attempt to ``<run>/trace.log`` (one appended line each), so the checker can prove
what ran, how often and when, independently of what the coordinator recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

TERMINAL = {"COMPLETE", "FAILED", "PRUNED", "CANCELLED"}
FREE_KINDS = {"migrated", "segment", "interrupted"}

# A trial script: f(x, y) = (x - 0.3)^2 + y, one intermediate report, ``sleep`` seconds of work.
TRIAL = """import json, os, sys, time
spec = json.load(open(os.environ["COORD_SPEC"]))
p, adir = spec["params"], spec["attempt_dir"]
trace = os.path.join(adir, "..", "..", "..", "trace.log")
def log(what):
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%d %d %s %.6f\\n" % (spec["number"], spec["attempt"], what, time.time())).encode())
    os.close(fd)
log("start")
print('[coord-metric] {"step": 1, "loss": 9.0}', flush=True)
time.sleep(float(os.environ.get("TRIAL_SLEEP", "0.4")))
log("end")
print('[coord-metric] {"loss": %r}' % ((p["x"] - 0.3) ** 2 + p["y"]))
"""
SPACE = "params:\n  x: {type: float, low: 0, high: 1}\n  y: {type: int, low: 0, high: 3}\n"


def f(params: dict[str, Any]) -> float:
    return float((params["x"] - 0.3) ** 2 + params["y"])


def committed_bytes(run: Path) -> dict[str, bytes]:
    """trial.json and result.json of every committed trial: what I3 says must not change."""
    out = {}
    for res in sorted(run.glob("trials/*/result.json")):
        out[str(res)] = res.read_bytes()
        out[str(res.parent / "trial.json")] = (res.parent / "trial.json").read_bytes()
    return out


def check(run: Path, *, trials: int, max_retries: int, before: dict[str, bytes] | None = None,
          value: Callable[[dict[str, Any]], float] = f) -> dict[str, int]:
    """Assert I1-I6 and I9; return counts (by status, and attempts)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    dirs = sorted((d for d in (run / "trials").iterdir() if d.name.isdigit()), key=lambda d: int(d.name))
    assert [int(d.name) for d in dirs] == list(range(len(dirs))), "trial numbers have a gap"
    assert len(dirs) >= trials, f"{len(dirs)} trials recorded, {trials} planned"
    counts: dict[str, int] = {"attempts": 0}
    optuna_numbers = set()
    for d in dirs:
        info = json.loads((d / "trial.json").read_text())
        assert (d / "result.json").exists(), f"I1: trial {d.name} has no terminal record"
        result = json.loads((d / "result.json").read_text())
        assert result["status"] in TERMINAL, f"I1: trial {d.name} ended {result['status']}"
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        assert info["optuna_number"] not in optuna_numbers, f"I2: Optuna trial {info['optuna_number']} twice"
        optuna_numbers.add(info["optuna_number"])
        assert result["params"] == info["params"], f"trial {d.name}: params changed"
        if result["status"] == "COMPLETE":
            assert result["values"] == [value(info["params"])], f"I4: trial {d.name} recorded a wrong value"
        attempts = sorted(int(a.name[8:]) for a in d.glob("attempt-*") if (a / "allocation.json").exists())
        assert attempts == list(range(1, len(attempts) + 1)), f"trial {d.name}: attempts {attempts}"
        # moves, PBT segments and coordinator interruptions spend no retry
        spent = [h for h in result.get("attempts", []) if h["kind"] not in FREE_KINDS]
        assert len(spent) <= 1 + max_retries, f"I5: trial {d.name} spent {len(spent)} attempts"
        assert len(result.get("attempts", [])) == len(attempts), f"trial {d.name}: attempts on disk and on record differ"
        if attempts:
            assert result["attempt"] == attempts[-1], f"I2: trial {d.name} committed attempt {result['attempt']}"
        counts["attempts"] += len(attempts)
        for a in attempts:  # I9: nothing of it still runs
            pid_file = d / f"attempt-{a}" / "pid"
            if pid_file.exists():
                assert not _alive(int(pid_file.read_text())), f"I9: trial {d.name} attempt {a} still runs"
    study_trials = []
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run / "study.journal")))
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        study_trials.extend(study.get_trials(deepcopy=False))
    states = [t.state for t in study_trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, "I1: a stale Optuna trial"
    complete = [t for t in study_trials if t.state == TrialState.COMPLETE]
    assert len(complete) == counts.get("COMPLETE", 0), "I2: Optuna and the run disagree on COMPLETE trials"
    for t in complete:
        assert t.value == f({**t.params}), "I4: Optuna holds a wrong value"
    if before:
        for path, data in before.items():
            assert Path(path).read_bytes() == data, f"I3: {path} changed"
    check_trace(run)
    return counts


def check_trace(run: Path) -> None:
    """I6 and exactly-once starts: each attempt started once; attempts of a trial never overlap."""
    trace = run / "trace.log"
    if not trace.exists():
        return
    spans: dict[tuple[int, int], dict[str, float]] = {}
    for line in trace.read_text().splitlines():
        number, attempt, what, t = line.split()
        span = spans.setdefault((int(number), int(attempt)), {})
        assert what not in span, f"attempt {number}.{attempt} logged '{what}' twice: it ran twice"
        span[what] = float(t)
    by_trial: dict[int, list[dict[str, float]]] = {}
    for (number, _), span in sorted(spans.items()):
        by_trial.setdefault(number, []).append(span)
    for number, seq in by_trial.items():
        for a, b in zip(seq, seq[1:], strict=False):
            assert "end" not in a or a["end"] <= b["start"], f"I6: trial {number}'s attempts overlapped"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False
