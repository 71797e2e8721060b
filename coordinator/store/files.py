"""Writing the run directory's files safely: atomically (temporary file, fsync, rename),
with a full disk turned into one ``DiskFull`` naming the file, and the tails of
append-only files read and repaired."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coordinator.errors import DiskFull

RUN_FILE = "run.json"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException, path: str | Path | None = None, run: Path | None = None) -> DiskFull | None:
    """The ``DiskFull`` that ``exc`` means (a full disk or quota while writing ``path``, else
    the file the error names, else ``run``), or None for any other error. ``run`` defaults to
    the run directory the file belongs to: the one ``coord resume`` continues."""
    if isinstance(exc, DiskFull):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL_ERRNOS:
        return None
    where = Path(path or exc.filename or run or "?").absolute()
    if run is None:
        run = next((p for p in (where, *where.parents) if (p / RUN_FILE).is_file()), None)
    return DiskFull(where, run, exc.strerror or os.strerror(exc.errno or errno.ENOSPC))


@contextlib.contextmanager
def writing(path: Path, run: Path | None = None) -> Iterator[None]:
    """A full disk while writing ``path`` becomes ``DiskFull``: one line for the user, naming
    the file, instead of a traceback. Any other error passes unchanged."""
    try:
        yield
    except OSError as exc:
        full = disk_full(exc, path, run)
        if full is None:
            raise
        raise full from None


def atomic_write(path: Path, text: str, mode: int = 0o644, durable: bool = True) -> None:
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no temporary file behind
            raise


def write_json(path: Path, data: Any, durable: bool = True, sort_keys: bool = True) -> None:
    """``sort_keys=False`` keeps the mappings' order where it means something (run.json: the
    search space's parameters in the order their YAML gave them)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n", durable=durable)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a text file (a trial's stderr), or "" if there is none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return last_lines(text, lines)


def last_lines(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text`` (how much of a trial's stderr an error shows)."""
    return "\n".join(text.splitlines()[-lines:])


def _last_byte(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return b""
            fh.seek(-1, 2)
            return fh.read(1)
    except FileNotFoundError:
        return b""


def _complete_length(path: Path) -> tuple[int, int]:
    """(size, bytes up to and including the last newline) of an append-only file."""
    with open(path, "rb") as fh:
        size = end = fh.seek(0, 2)
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            chunk = fh.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                return size, start + cut + 1
            end = start
    return size, 0
