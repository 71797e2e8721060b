"""A warm runner: one per slot, it imports the ML libraries and loads the data once,
then runs trial after trial (as Ray Tune reuses actors). Two ways to feed it:

- ``worker.py`` (local): one JSON job a line on stdin, ``{"spec": "/path/spec.json"}``;
  stdout carries each trial's ``[coord-metric]`` lines and then
  ``[coord-end] {"number": N, "attempt": K, "exit": CODE}``.
- ``worker.py --fifo PATH`` (on an SSH host, started detached by the agent): jobs arrive on
  a named pipe, so the worker outlives the SSH connection; each trial's stdout and stderr
  go to its attempt directory, its ``pid`` file names this worker (cancel kills it), and
  ``exit.json`` records the end, exactly like a trial in a fresh process.

Each trial's stderr (fd 2, so native libraries' output too) goes to ``<attempt_dir>/stderr``.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trialkit  # noqa: E402

END_PREFIX = "[coord-end]"


def _redirect(fd, path):
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, fd)
    os.close(target)


def _run_job(line, detached):
    job = json.loads(line)
    spec = trialkit.read_spec(job["spec"])
    adir = spec["attempt_dir"]
    saved = {fd: os.dup(fd) for fd in ((1, 2) if detached else (2,))}
    if detached:  # the agent wrote this worker's pid as the attempt's already
        _redirect(1, os.path.join(adir, "stdout"))
    _redirect(2, os.path.join(adir, "stderr"))
    try:
        code = trialkit.run_spec(spec)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
    if detached:
        tmp = os.path.join(adir, f"exit.json.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump({"exit": code, "attempt": spec["attempt"]}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(adir, "exit.json"))
    else:
        end = {"number": spec["number"], "attempt": spec["attempt"], "exit": code}
        sys.stdout.write(f"{END_PREFIX} {json.dumps(end)}\n")
        sys.stdout.flush()


def _serve(stream, detached):
    for line in stream:
        if line.strip():
            _run_job(line, detached)


def _preload():
    for name in os.environ.get("COORD_PRELOAD", "").split(","):
        if name:  # import the model's libraries before the first trial arrives
            try:
                __import__(f"model_{name}")
            except ImportError:
                pass  # reported per trial, with the exit code for a missing library


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--fifo":
        # O_RDWR: the pipe never reports end-of-file when the agent that wrote a job closes it.
        # Open it and announce this worker before the slow imports, so the agent never waits.
        fd = os.open(sys.argv[2], os.O_RDWR)
        pidfile = os.path.join(os.path.dirname(sys.argv[2]), "worker.pid")
        with open(f"{pidfile}.{os.getpid()}.tmp", "w") as fh:
            fh.write(f"{os.getpid()} {os.environ.get('COORD_PRELOAD', '')}")
        os.replace(f"{pidfile}.{os.getpid()}.tmp", pidfile)
        _preload()
        _serve(os.fdopen(fd, "r", buffering=1), detached=True)
    else:
        _preload()
        _serve(sys.stdin, detached=False)
