"""Process helpers for the host agent (stdlib only; Linux and macOS hosts).

A process that has exited but was never reaped (a *zombie*) still answers ``kill(pid, 0)``.
Trials and warm workers are detached (double fork), so their parent is the host's init, and
some inits never reap: containers whose PID 1 is not an init, such as this project's CI
machines. Every liveness check here therefore treats a zombie as dead.
"""

import json
import os
import signal
import threading
import time


def write_atomic(path, text, durable=True):
    """Temp file and rename, so a reader sees the whole file or none; fsync on request."""
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident())  # writers never share a temp name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


STARTED = "started"  # in an attempt's directory: when it was claimed; its run time counts from here


def run_seconds(adir, fallback=None):
    """Seconds since the attempt in ``adir`` was claimed: the one measure of its run time,
    for its time limit and for the duration its end reports (so a trial stopped at its
    limit never reports less than the limit). ``fallback``: a time.time() to count from
    when the mark cannot be read; None then."""
    try:
        with open(os.path.join(adir, STARTED)) as fh:
            began = json.load(fh)
    except (OSError, ValueError):
        return None if fallback is None else time.time() - fallback
    since = time.monotonic() - began["mono"]  # system-wide: the same clock for every agent until a reboot
    return since if since >= 0 else time.time() - began["wall"]


def _stat_fields(pid):
    """(state, ppid, pgrp) from /proc, or None where there is no /proc or no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[1]), int(rest[2])


def alive(pid):
    """True if ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    return fields is None or fields[0] not in ("Z", "X")


def group_alive(pgid):
    """True while any process of group ``pgid`` runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True  # macOS: launchd reaps, so a signalable group is a live one
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None and fields[2] == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def end_group(pgid, grace=3.0, until=None):
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds. ``until`` (a callable)
    stops early when it turns true (a warm worker's trial recorded its end)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if until is not None and until():
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not group_alive(pgid) or (until is not None and until()):
                return
            time.sleep(0.05)
