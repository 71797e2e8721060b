"""The run directory: the source of truth. Optuna storage, CSV and LaTeX are
projections of it and can be rebuilt from it.

    runs/<name>-<YYYYmmdd-HHMMSS>/
      run.json                      resolved config snapshot
      study.journal                 Optuna journal storage (default)
      events.jsonl                  append-only event log
      data/                         the generated data set, when the built-in one is used
      trials/<n>/trial.json         number, study, params, seed (written when asked)
      trials/<n>/attempt-<k>/       spec.json, stdout, stderr of each attempt
      trials/<n>/result.json        the committed terminal record (written once)
      report/                       trials.csv, best.json, tables/*.tex

Every file is written atomically (temp file, fsync, ``os.replace``), so a crash leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from coordinator.errors import StoreError

RUN_FILE = "run.json"
FORMAT_VERSION = 1


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@dataclass
class TrialRecord:
    """A trial as the store knows it: what was asked, and its committed result if any."""

    number: int
    info: dict[str, Any]
    result: dict[str, Any] | None


class RunStore:
    """One run directory. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._events: Any = None

    @classmethod
    def create(cls, parent: Path, name: str, config: dict[str, Any], run_dir: Path | None = None) -> RunStore:
        if run_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = parent / f"{name}-{stamp}"
            n = 1
            while run_dir.exists():
                n += 1
                run_dir = parent / f"{name}-{stamp}-{n}"
        elif (run_dir / RUN_FILE).exists():
            raise StoreError(f"{run_dir} already holds a run; choose another --run-dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        store = cls(run_dir)
        write_json(run_dir / RUN_FILE, {"format": FORMAT_VERSION, **config})
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        if not (path / RUN_FILE).is_file():
            raise StoreError(f"{path} is not a coord run directory (no {RUN_FILE})")
        return cls(path)

    @property
    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = read_json(self.root / RUN_FILE)
        return data

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / str(number)

    def attempt_dir(self, number: int, attempt: int) -> Path:
        return self.trial_dir(number) / f"attempt-{attempt}"

    def record_trial(self, number: int, info: dict[str, Any]) -> None:
        write_json(self.trial_dir(number) / "trial.json", {"number": number, **info})

    def commit_result(self, number: int, result: dict[str, Any]) -> bool:
        """Write the terminal record once. A second commit (a late or duplicate result)
        is rejected and returns False, so every trial has exactly one result."""
        path = self.trial_dir(number) / "result.json"
        if path.exists():
            return False
        write_json(path, {"number": number, **result})
        return True

    def event(self, event_name: str, /, **fields: Any) -> None:
        if self._events is None:
            self._events = open(self.root / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._events.write(json.dumps({"t": round(time.time(), 3), "event": event_name, **fields}, default=str) + "\n")
        self._events.flush()

    def trials(self) -> list[TrialRecord]:
        out: list[TrialRecord] = []
        base = self.root / "trials"
        if not base.is_dir():
            return out
        for d in sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
            info_path = d / "trial.json"
            if not info_path.exists():
                continue
            result_path = d / "result.json"
            out.append(TrialRecord(int(d.name), read_json(info_path),
                                   read_json(result_path) if result_path.exists() else None))
        return out

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
