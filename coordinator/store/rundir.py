"""The run directory: the source of truth. Optuna storage, CSV and LaTeX are
projections of it and can be rebuilt from it.

    runs/<name>-<YYYYmmdd-HHMMSS>/
      run.json                      resolved config snapshot
      study.journal                 Optuna journal storage (default)
      events.jsonl                  append-only event log
      data/                         the generated data set, when the built-in one is used
      trials/<n>/trial.json         number, study, params, seed (written when asked)
      trials/<n>/attempt-<k>/       allocation.json (where it runs), spec.json, stdout, stderr
      trials/<n>/result.json        the committed terminal record (written once)
      report/                       trials.csv, best.json, tables/*.tex

Every file is written atomically (temp file, ``os.replace``), so a crash leaves either the
old file or the new one, never half of one. Committed results are also fsync'd; trial.json
and allocation.json are not (they sit on the refill path, and a coordinator crash, unlike
a machine crash, keeps what the kernel was given). A live run holds ``lock`` (flock), so
two coordinators never drive one run, and ``coord status`` can tell a live run from a dead one.

A full disk (ENOSPC, EDQUOT) writing any of these is a ``DiskFull`` naming the file. A torn
tail of an append-only file (events.jsonl, study.journal) is repaired when the run is opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from coordinator.errors import DiskFull, StoreError
from coordinator.records import KNOWN_SCHEMAS, SCHEMA, Recipe, Result, RunConfig, TrialInfo
from coordinator.store.files import (
    RUN_FILE,
    _complete_length,
    _last_byte,
    read_json,
    write_json,
    writing,
)

log = logging.getLogger(__name__)
JOURNAL = "study.journal"
JOURNAL_LOCK = JOURNAL + ".lock"  # Optuna's JournalFileSymlinkLock: a symlink held during each append
FORMAT_VERSION = SCHEMA  # run.json's "format": see records.py for what each format holds


# What status, report and resume read from run.json, by type: a run.json without them is damaged.
_CONFIG_KEYS = {"name": str, "options": dict, "metrics": list, "directions": list, "studies": list,
                "trials": int, "registry": dict}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0][:120]
        raise StoreError(f"{path} is damaged ({why}); it holds the run's configuration, written when "
                         "the run was created, and the run cannot be read without it") from None
    bad = [k for k, kind in _CONFIG_KEYS.items() if not isinstance(data, dict) or not isinstance(data.get(k), kind)]
    if bad:
        raise StoreError(f"{path} is damaged (missing or wrong: {', '.join(bad)}); it holds the run's "
                         "configuration, written when the run was created, and the run cannot be read "
                         "without it")
    fmt = data.get("format", 1)
    if fmt not in KNOWN_SCHEMAS:
        raise StoreError(f"{path}: run format {fmt!r} is newer than this coord reads (formats "
                         f"{', '.join(map(str, KNOWN_SCHEMAS))}); upgrade coord to read or resume this run")
    return dict(data)


def _check_run_dir(run_dir: Path) -> None:
    """--run-dir must be new or an empty directory, so a run's files never mix with others."""
    if (run_dir.is_symlink() and not run_dir.exists()) or (run_dir.exists() and not run_dir.is_dir()):
        raise StoreError(f"--run-dir {run_dir} exists and is not a directory; choose a new or empty directory")
    if not run_dir.is_dir():
        return
    if (run_dir / RUN_FILE).exists():
        raise StoreError(f"--run-dir {run_dir} already holds a run; choose another --run-dir "
                         f"(or continue it: coord resume {run_dir})")
    try:
        used = next(iter(run_dir.iterdir()), None)
    except OSError as exc:
        raise StoreError(f"--run-dir {run_dir} cannot be read: {exc.strerror or exc}") from None
    if used is not None:
        raise StoreError(f"--run-dir {run_dir} is not empty and is not a coord run (it holds {used.name!r}); "
                         "choose a new or empty directory")


def _check_creatable(run_dir: Path, what: str) -> None:
    """The nearest existing ancestor must be a writable directory; checked first so that a
    refused run leaves no half-made parents behind."""
    ancestor = run_dir.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"cannot create {what} {run_dir}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create {what} {run_dir}: {ancestor} is not writable")


@dataclass(frozen=True)
class TrialRecord:
    """A trial as the store knows it: what was asked, and its committed result if any."""

    number: int
    info: TrialInfo
    result: Result | None


class RunStore:
    """One run directory. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()  # attempts and agents may run in another working directory
        self._events: Any = None
        self._lock: int | None = None
        self._config: dict[str, Any] | None = None  # run.json, written once at create

    @classmethod
    def create(cls, parent: Path, name: str, config: dict[str, Any], run_dir: Path | None = None) -> RunStore:
        """A new run directory: RUNS/<name>-<time>, or ``run_dir`` (--run-dir) when it is new
        or an empty directory. Every refusal comes before anything is written."""
        if run_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = parent / f"{name}-{stamp}"
            n = 1
            while run_dir.exists():
                n += 1
                run_dir = parent / f"{name}-{stamp}-{n}"
            what = "the run directory"
        else:
            _check_run_dir(run_dir)
            what = "--run-dir"
        _check_creatable(run_dir, what)
        new = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {what} {run_dir}: {exc.strerror or exc}") from None
        store = cls(run_dir)
        snapshot = {"format": FORMAT_VERSION, **config}
        try:
            # in the given order: the reports list parameters in search-space order, and the
            # file is all a rebuild (coord report, resume) has of that order
            write_json(run_dir / RUN_FILE, snapshot, sort_keys=False)
        except DiskFull:  # no run.json, no run: leave nothing half-made ("start again")
            if new:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        # what was written, read back: the live run and a later rebuild see one config (the
        # same key order, lists for tuples), so their reports are the same bytes
        store._config = dict(read_json(run_dir / RUN_FILE))
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        if not (path / RUN_FILE).is_file():
            raise StoreError(f"{path} is not a coord run directory (no {RUN_FILE})")
        store = cls(path)
        store._config = _read_config(path / RUN_FILE)  # damaged: one clear error now, not a KeyError later
        return store

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = _read_config(self.root / RUN_FILE)
        return self._config

    @property
    def run(self) -> RunConfig:
        """run.json, typed (``config`` keeps every key as it was written)."""
        return RunConfig.from_json(self.config)

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / str(number)

    def attempt_dir(self, number: int, attempt: int) -> Path:
        return self.trial_dir(number) / f"attempt-{attempt}"

    def record_trial(self, info: TrialInfo) -> None:
        write_json(self.trial_dir(info.number) / "trial.json", info.to_json(), durable=False)

    def record_attempt(self, number: int, attempt: int, allocation: dict[str, Any], recipe: Recipe) -> None:
        """Where an attempt runs and what it runs, written before it is launched: a resumed
        coordinator re-attaches to it there; ``recipe.json`` (location-free) is what an exact
        rerun replays."""
        adir = self.attempt_dir(number, attempt)
        write_json(adir / "recipe.json", {**recipe.to_json(), "attempt": attempt}, durable=False)
        write_json(adir / "allocation.json", allocation, durable=False)

    def attempts(self, number: int) -> dict[int, dict[str, Any]]:
        """The attempts that were launched (or about to be), by number: their allocation."""
        out: dict[int, dict[str, Any]] = {}
        for d in self.trial_dir(number).glob("attempt-*"):
            path = d / "allocation.json"
            if d.name[8:].isdigit() and path.exists():
                out[int(d.name[8:])] = read_json(path)
        return dict(sorted(out.items()))

    def lock(self) -> None:
        """Hold the run's lock until this process ends; StoreError if another holds it."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(f"{self.root} is being driven by a live coordinator (pid {holder}); "
                             "wait for it or stop it first") from None
        self._lock = fd
        with writing(self.root / "lock"):
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())

    def repair_journal(self) -> None:
        """Before Optuna opens the journal: cut a torn last record back to the last newline,
        and remove a stale append lock. Optuna appends each record with one write; a full
        disk or a ``kill -9`` mid-write leaves a line without its newline, and the next
        append would glue onto it (every later open then fails to parse the journal). A
        ``kill -9`` inside an append also leaves Optuna's lock symlink, which the next open
        waits 30 s for. Both are safe to undo only while this process holds the run's lock:
        then no other coordinator can be writing the journal."""
        if self._lock is None:
            raise RuntimeError("repair_journal needs the run's lock")
        path, lock = self.root / JOURNAL, self.root / JOURNAL_LOCK
        if lock.is_symlink() or lock.exists():
            lock.unlink()
            log.warning("removed a stale journal lock (%s) left by a coordinator that died mid-write", lock)
            self.event("repaired", file=JOURNAL_LOCK, action="removed a stale journal lock")
        if not path.is_file():
            return
        size, keep = _complete_length(path)
        if keep < size:
            with writing(path):
                os.truncate(path, keep)
            log.warning("%s ended in a record cut short by a full disk or a crash; cut back to its last "
                        "complete record (%d bytes)", path, size - keep)
            self.event("repaired", file=JOURNAL, cut_bytes=size - keep)

    def live_pid(self) -> int | None:
        """The pid of the coordinator driving this run, or None if no one is."""
        try:
            fd = os.open(self.root / "lock", os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        finally:
            os.close(fd)

    def events_read(self) -> list[dict[str, Any]]:
        """Every event so far; a line cut short by a crash is skipped."""
        out: list[dict[str, Any]] = []
        try:
            with open(self.root / "events.jsonl", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        continue
        except FileNotFoundError:
            pass
        return out

    def commit_result(self, result: Result) -> bool:
        """Write the terminal record once. A second commit (a late or duplicate result)
        is rejected and returns False, so every trial has exactly one result."""
        path = self.trial_dir(result.number) / "result.json"
        if path.exists():
            return False
        write_json(path, result.to_json())
        return True

    def event(self, event_name: str, /, **fields: Any) -> None:
        path = self.root / "events.jsonl"
        line = json.dumps({"t": round(time.time(), 3), "event": event_name, **fields}, default=str) + "\n"
        with writing(path, self.root):
            try:
                if self._events is None:
                    cut = _last_byte(path) not in (b"", b"\n")
                    self._events = open(path, "a", encoding="utf-8")  # noqa: SIM115
                    if cut:  # a crash or a full disk cut the last line short: never glue onto it
                        self._events.write("\n")
                self._events.write(line)
                self._events.flush()
            except OSError:
                self._close_events()  # what the disk refused goes with it; the next open repairs the tail
                raise

    def _close_events(self) -> None:
        if self._events is not None:
            with contextlib.suppress(OSError):
                self._events.close()
            self._events = None

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
            out.append(TrialRecord(int(d.name), TrialInfo.from_json(read_json(info_path)),
                                   Result.from_json(read_json(result_path)) if result_path.exists() else None))
        return out

    def close(self) -> None:
        self._close_events()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None
