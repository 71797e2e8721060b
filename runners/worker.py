"""A warm runner: one per slot, it imports the ML libraries and loads the data once,
then runs trial after trial (as Ray Tune reuses actors).

``worker.py --fifo PATH`` is started detached by a host's agent (``remote.py``, through
``slots.py``) and reads one JSON job a line, ``{"spec": "/path/spec.json"}``, from its own
named pipe, so it outlives the agent's connection and the coordinator. Each trial's stdout and stderr (fd 1 and 2, so
native libraries' output too) go to its attempt directory, its ``pid`` file names this
worker (cancel kills it), and ``exit.json`` records the end, exactly like a trial in a
fresh process.
"""

import json
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostproc  # noqa: E402
import slots  # noqa: E402
import trialkit  # noqa: E402


def _redirect(fd, path):
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, fd)
    os.close(target)


def _run_job(line):
    job = json.loads(line)
    spec = trialkit.read_spec(job["spec"])
    adir = spec["attempt_dir"]
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    _redirect(1, os.path.join(adir, "stdout"))
    _redirect(2, os.path.join(adir, "stderr"))
    began = time.time()
    try:
        code = trialkit.run_spec(spec)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
    tmp = os.path.join(adir, f"exit.json.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        # not fsync'd, as in remote.py; the trial's own duration, right also after a re-attach
        json.dump({"exit": code, "attempt": spec["attempt"],
                   "seconds": round(hostproc.run_seconds(adir, began), 4)}, fh)
    os.replace(tmp, os.path.join(adir, "exit.json"))


def _jobs(fd, pipe, idle_s):
    """Job lines from the pipe; ends after ``idle_s`` seconds without one, so the workers of
    a run whose coordinator died and is never resumed do not stay forever. It leaves only
    under the slot's lock, and only if no job arrived meanwhile (slots.retire_if_idle)."""
    buf = b""
    while True:
        while b"\n" not in buf:
            ready, _, _ = select.select([fd], [], [], idle_s)
            if not ready:
                if slots.retire_if_idle(os.path.dirname(pipe), fd, pipe):
                    return
                continue
            buf += os.read(fd, 65536)
        line, buf = buf.split(b"\n", 1)
        yield line.decode("utf-8", "replace")


def _preload():
    for name in os.environ.get("COORD_PRELOAD", "").split(","):
        if name:  # import the model's libraries before the first trial arrives
            try:
                __import__(f"model_{name}")
            except ImportError:
                pass  # reported per trial, with the exit code for a missing library


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--fifo":
        sys.exit("usage: worker.py --fifo PATH (started by remote.py)")
    # O_RDWR: the pipe never reports end-of-file when the agent that wrote a job closes it.
    # Opened before the slow imports: the agent hands the first job over as soon as it is.
    fd = os.open(sys.argv[2], os.O_RDWR)
    _preload()
    for line in _jobs(fd, sys.argv[2], float(os.environ.get("COORD_WORKER_IDLE_S", "900"))):
        if line.strip():
            _run_job(line)
