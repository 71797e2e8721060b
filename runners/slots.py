"""Warm workers, one per slot: how the host agent hands an attempt to one (stdlib only).

A slot directory holds ``lock`` (flock), ``worker.pid`` (``PID MODEL PIPE`` of the slot's
live worker) and each worker's own job pipe, ``jobs.<token>``. Two rules make the hand-over
safe:

- every worker reads its own pipe, never one another worker used: data in a FIFO lives
  only as long as some process holds it open, so a job written into the pipe of a worker
  being replaced (another model, or one that ended) would vanish with that worker;
- the agent hands a job over, and a worker retires after its idle time, only while holding
  the slot's lock, so a job never lands in the pipe of a worker that is about to leave.
"""

import contextlib
import errno
import fcntl
import json
import os
import signal
import time

import hostproc

START_WAIT_S = 30.0  # a new worker opens its pipe before its slow imports: this is generous


@contextlib.contextmanager
def slot_lock(sdir):
    fd = os.open(os.path.join(sdir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def current_worker(sdir):
    """(pid, model, pipe path) of the slot's live worker, or None."""
    try:
        with open(os.path.join(sdir, "worker.pid")) as fh:
            parts = fh.read().split()
        pid, model, pipe = int(parts[0]), parts[1], os.path.join(sdir, parts[2])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, model, pipe) if hostproc.alive(pid) else None


def _retire(sdir, worker):
    """Kill a worker that must not get the job (another model, or deaf) and remove its pipe."""
    pid, _, pipe = worker
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pipe)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(sdir, "worker.pid"))


def _open_pipe(pipe):
    """The write end of a worker's pipe, or None when no process reads it."""
    try:
        return os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return None
        raise


def _start_worker(sdir, warm):
    """Start a detached worker for ``warm["model"]`` on a new pipe; return its pid."""
    token = "%d-%d" % (time.time_ns(), os.getpid())
    pipe = os.path.join(sdir, "jobs.%s" % token)
    os.mkfifo(pipe, 0o600)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            grandchild = os.fork()
            if grandchild:
                os.write(w, str(grandchild).encode())
                os._exit(0)
            os.close(w)
            os.setpgid(0, 0)  # its own process group, named by its pid: kill(adir) reaches it
            env = dict(os.environ)
            env.update(warm.get("env", {}))
            env["COORD_PRELOAD"] = warm["model"]
            os.execve(warm["argv"][0], list(warm["argv"]) + ["--fifo", pipe], env)
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    if not text:
        raise RuntimeError("the warm worker could not be started")
    return int(text), pipe


def _wait_reader(pid, pipe):
    """The write end of a new worker's pipe, once the worker holds it open."""
    deadline = time.monotonic() + START_WAIT_S
    while True:
        fd = _open_pipe(pipe)
        if fd is not None:
            return fd
        if not hostproc.alive(pid):
            raise RuntimeError("the warm worker exited at start (is %s usable?)" % pipe)
        if time.monotonic() > deadline:
            raise RuntimeError("the warm worker did not open its job pipe within %.0fs" % START_WAIT_S)
        time.sleep(0.005)


def hand_over(warm, adir):
    """Give the attempt in ``adir`` to the slot's warm worker for its model, starting one if
    there is none (or only one for another model, or one that no longer reads its pipe).
    Records the worker's pid as the attempt's, so that a cancel kills the worker."""
    sdir = warm["slot_dir"]
    os.makedirs(sdir, mode=0o700, exist_ok=True)
    job = (json.dumps({"spec": os.path.join(adir, "spec.json")}) + "\n").encode()
    with slot_lock(sdir):
        worker = current_worker(sdir)
        fd = None
        if worker is not None and worker[1] == warm["model"]:
            fd = _open_pipe(worker[2])
        if fd is None:
            if worker is not None:
                _retire(sdir, worker)
            pid, pipe = _start_worker(sdir, warm)
            fd = _wait_reader(pid, pipe)
            hostproc.write_atomic(os.path.join(sdir, "worker.pid"),
                                  "%d %s %s" % (pid, warm["model"], os.path.basename(pipe)), durable=False)
        else:
            pid = worker[0]
        try:
            os.write(fd, job)  # one short line: atomic on a pipe
        finally:
            os.close(fd)
    hostproc.write_atomic(os.path.join(adir, "warm"), "", durable=False)
    hostproc.write_atomic(os.path.join(adir, "pid"), str(pid), durable=False)


def retire_if_idle(sdir, fd, pipe):
    """Called by a worker that has had no job for its idle time: leave (True) unless a job
    arrived meanwhile. Under the slot's lock, so no hand-over races the departure."""
    import select

    with slot_lock(sdir):
        ready, _, _ = select.select([fd], [], [], 0)
        if ready:
            return False
        mine = current_worker(sdir)
        if mine is not None and mine[0] == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(sdir, "worker.pid"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pipe)
        return True


def stop_workers(slots_dir):
    """Kill every warm worker of a run (its slots live under ``slots_dir``)."""
    if not os.path.isdir(slots_dir):
        return
    for slot in os.listdir(slots_dir):
        sdir = os.path.join(slots_dir, slot)
        worker = current_worker(sdir)
        if worker:
            _retire(sdir, worker)
