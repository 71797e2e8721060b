"""Host side of the agent backend (stdlib only): one agent per host, local or over SSH.

    python3 -S remote.py agent              serve requests on stdin (the normal mode)
    python3 -S remote.py follow ATTEMPT_DIR [OFFSET]   stream one attempt (debugging)
    python3 -S remote.py kill ATTEMPT_DIR              kill one attempt's process group

The agent reads one JSON request a line on stdin (docs/architecture.md lists every field):

    {"op": "run", "tag": T, "adir": D, "files": {"spec.json": ..., "launch.json": ...}, "warm": {...}}
    {"op": "follow", "tag": T, "adir": D, "offset": N}     re-attach after a reconnect
    {"op": "kill", "adir": D}          SIGTERM, then SIGKILL, the attempt's process group
    {"op": "prune", "adir": D}         ask a built-in runner to stop at its next step
    {"op": "decide", "adir": D, "step": N, "prune": B}    the pruner's answer at a rung
    {"op": "clean", "dir": D}          remove a finished trial's checkpoints
    {"op": "stop_workers", "dir": D}   end a run's warm workers
    {"op": "lease", "dir": D, "holder": H, "ttl": S, "meta": {...}}   open or update this
                                       coordinator's slot lease on the host (leases.py)
    {"op": "lease_close"}              the coordinator is done with the host

With a lease open, ``run`` carries ``"lease": {"n": K, "gpus": [...]}``: the agent claims the
slots first and answers ``[coord-reply] {"id": T, "granted": B, "view": {...}}``; a refused
attempt is not started. While the lease is open the agent renews it each second, drops an
attempt's entry when it ends, and prints ``[coord-lease] {view}`` whenever what this
coordinator may use of the host changes.

``run`` writes the files into D (parameters travel inside this message, never on a
command line), claims the attempt (a ``claim`` file, so a repeated request never starts it
twice), and starts it detached in its own session, or hands it to the slot's warm worker
(slots.py), with stdout/stderr in files, a ``pid`` file and an ``exit.json`` carrying the
attempt number, so that a dropped connection neither kills nor orphans it. For every
attempt the agent streams ``T<TAB>OFFSET<TAB>line`` for each stdout line (OFFSET: the
byte offset in the host's file after that line) and finally
``T<TAB>[coord-end] {"exit": CODE, "attempt": K, "seconds": S, "timed_out": B, "stderr": TAIL}``;
it prints ``[coord-hb] N`` every second so the coordinator can tell a stalled connection
from quiet trials. When stdin closes (the connection is gone) the agent exits; trials go on.
"""

import errno
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # its sibling modules, wherever it is run from

import hostproc  # noqa: E402
import leases  # noqa: E402
import slots  # noqa: E402

END = "[coord-end]"
HEARTBEAT = "[coord-hb]"
LEASE = "[coord-lease]"
REPLY = "[coord-reply]"
LEASE_RENEW_S = 1.0
LEASE_LOOK_S = 0.1  # how often the agent looks whether others' leases changed (files read, no lock)
PROTOCOL = 1  # the request/stream format; coordinator/protocol.py AGENT_PROTOCOL
POLL_S = 0.005  # how often a followed attempt's stdout is read (a stat and a read: cheap)
CLAIM = "claim"  # created exclusively before an attempt starts: a repeated run request never runs it twice
CLAIM_STALE_S = 10.0  # a claim this old with no pid file: the agent died while starting it
STDERR_TAIL = 64 * 1024
STARTED = hostproc.STARTED
TIMED_OUT = "timed_out"  # written when the agent stops an attempt at its time limit
MAX_LINE = 1 << 20  # longer stdout lines are cut in the stream (the parser ignores them anyway)
_out_lock = threading.Lock()


def _emit(text):
    with _out_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


_write_atomic = hostproc.write_atomic


def claim(adir):
    """True for the one caller that may start this attempt: a coordinator that restarts
    re-sends its run requests, and the answer must be "follow it", never "run it again"."""
    try:
        os.close(os.open(os.path.join(adir, CLAIM), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    _write_atomic(os.path.join(adir, STARTED), json.dumps({"mono": time.monotonic(), "wall": time.time()}),
                  durable=False)
    return True


def start(adir):
    """Start the attempt described by ADIR/launch.json, detached in its own session.

    Returns the supervisor's pid (a child of this process, so the agent learns of the end
    through waitpid at once), or None if the attempt had already been started.
    """
    with open(os.path.join(adir, "launch.json")) as fh:
        launch = json.load(fh)
    if not claim(adir):
        return None
    sup = os.fork()
    if sup:
        return sup
    try:
        os.setsid()  # its own session: a dropped SSH connection does not reach it
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # let go of the SSH channel, or it would stay open until the trial ends
            os.dup2(null, fd)
        out = os.open(os.path.join(adir, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        err = os.open(os.path.join(adir, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        env = dict(os.environ)
        env.update(launch.get("env", {}))
        began = time.time()
        child = os.fork()
        if child == 0:
            os.setpgid(0, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            try:
                if launch.get("cwd"):
                    os.chdir(os.path.expanduser(launch["cwd"]))
                os.execvpe(launch["argv"][0], launch["argv"], env)
            except OSError as exc:
                os.write(2, ("coord: cannot run %s: %s\n" % (launch["argv"][0], _exec_error(launch["argv"][0], exc)))
                         .encode())
                os._exit(127)
        _write_atomic(os.path.join(adir, "pid"), str(child), durable=False)  # for kill only: no fsync
        while True:
            _, status = os.waitpid(child, 0)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                break
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        if hostproc.group_alive(child):  # children the trial left behind end with it
            hostproc.end_group(child, grace=1.0)
        # not fsync'd: after a host crash the trial's output is gone too, and it is run again
        end = {"exit": code, "attempt": launch.get("attempt"), "seconds": round(hostproc.run_seconds(adir, began), 4)}
        _write_atomic(os.path.join(adir, "exit.json"), json.dumps(end), durable=False)
    finally:
        os._exit(0)


def _exec_error(program, exc):
    """Why ``program`` could not start, in words: execvpe's own error names the last PATH
    entry it tried, as bytes (b'/bin/x'), which is neither the program nor where it looked."""
    if exc.errno == errno.ENOENT:
        return "no such file" if os.sep in program else "not found on PATH"
    return exc.strerror or str(exc)


def _stderr_tail(adir):
    try:
        with open(os.path.join(adir, "stderr"), "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - STDERR_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _elapsed(adir):
    """Seconds since the attempt was claimed (the start of its run time on this host)."""
    return hostproc.run_seconds(adir)


def _timeout(adir):
    try:
        with open(os.path.join(adir, "launch.json")) as fh:
            value = json.load(fh).get("timeout_s")
        return float(value) if value else None
    except (OSError, ValueError, TypeError):
        return None


def follow(adir, offset, out, finished=None):
    """Pass stdout lines from byte ``offset`` to ``out`` as they come, in batches of
    ``(end offset, text)``, then return the attempt's end record. ``finished`` (set when the
    supervisor exits) ends the wait at once; without it, poll.

    The trial's time limit (``timeout_s`` in launch.json) is enforced here, against its own
    run time on this host: a coordinator reading its output slowly never makes it late. A line
    longer than MAX_LINE is cut for the stream (the file keeps it whole)."""
    finished = finished or threading.Event()
    path = os.path.join(adir, "stdout")
    exit_path = os.path.join(adir, "exit.json")
    limit = _timeout(adir)
    buf, pos, skipping, fh = b"", offset, False, None
    while True:
        done = os.path.exists(exit_path)  # checked before the last read: nothing is missed
        if fh is None and os.path.exists(path):
            fh = open(path, "rb")
            fh.seek(offset)
        chunk = fh.read(1 << 20) if fh is not None else b""
        if chunk:
            buf += chunk
            lines = []
            while True:
                i = buf.find(b"\n")
                if i < 0:
                    break
                line, buf, pos = buf[:i], buf[i + 1:], pos + i + 1
                if not skipping:
                    lines.append((pos, line.decode("utf-8", "replace")))
                skipping = False
            if len(buf) > MAX_LINE:  # no newline in sight: pass its start on, skip the rest of it
                if not skipping:
                    lines.append((pos + len(buf), buf[:MAX_LINE].decode("utf-8", "replace")))
                pos, buf, skipping = pos + len(buf), b"", True
            if lines:
                out(lines)
            continue
        if not done and limit is not None and not os.path.exists(os.path.join(adir, TIMED_OUT)):
            elapsed = _elapsed(adir)
            if elapsed is not None and elapsed > limit:
                _write_atomic(os.path.join(adir, TIMED_OUT), "%.3f" % elapsed, durable=False)
                threading.Thread(target=kill, args=(adir,), daemon=True).start()
        if not done and _vanished(adir):
            _write_atomic(exit_path, json.dumps({"exit": -9, "attempt": None, "vanished": True}))
            continue
        if done:
            if buf and not skipping:
                out([(pos + len(buf), buf.decode("utf-8", "replace"))])
            with open(exit_path) as efh:
                result = json.load(efh)
            result["stderr"] = _stderr_tail(adir)
            result["timed_out"] = os.path.exists(os.path.join(adir, TIMED_OUT))
            if fh is not None:
                fh.close()
            return result
        finished.wait(POLL_S)


_checked = {}


def _vanished(adir, every=0.5):
    """True when the attempt's process is gone and no exit record came (a warm worker killed
    by cancel or by the OOM killer, a supervisor killed with -9). Checked twice, ``every``
    seconds apart, so a supervisor that is just writing exit.json is not overtaken."""
    now = time.monotonic()
    if now - _checked.get(adir, (0.0, False))[0] < every:
        return False
    try:
        with open(os.path.join(adir, "pid")) as fh:
            pid = int(fh.read())
    except (OSError, ValueError):
        pid = None
    if pid is None:  # claimed but never started: stale once the claim is old
        try:
            gone = time.time() - os.stat(os.path.join(adir, CLAIM)).st_mtime > CLAIM_STALE_S
        except OSError:
            gone = False
    else:
        gone = not _alive(pid)
    gone = gone and not os.path.exists(os.path.join(adir, "exit.json"))
    was_gone = _checked.get(adir, (0.0, False))[1]
    _checked[adir] = (now, gone)
    return gone and was_gone


def kill(adir, grace=3.0):
    """SIGTERM the attempt's process group, SIGKILL it after ``grace`` seconds. A built-in
    trial in a warm worker answers SIGTERM by checkpointing and ending the attempt; once
    its exit record exists the worker is left alone (the slot's next trial may be on it)."""
    try:
        with open(os.path.join(adir, "pid")) as fh:
            pid = int(fh.read())
    except (OSError, ValueError):
        return
    # a fresh process's group is killed whole, even after its exit record (no grandchild survives)
    exit_path = os.path.join(adir, "exit.json")
    warm = os.path.exists(os.path.join(adir, "warm"))
    hostproc.end_group(pid, grace, until=(lambda: os.path.exists(exit_path)) if warm else None)


def _follow_tagged(tag, adir, offset, supervisor=None):
    """Stream one attempt to the coordinator: ``TAG<TAB>OFFSET<TAB>line`` per stdout line,
    one write per batch (never one flush per line), then ``TAG<TAB>[coord-end] {...}``."""
    finished = threading.Event()
    if supervisor:
        def reap():
            os.waitpid(supervisor, 0)
            finished.set()
        threading.Thread(target=reap, daemon=True).start()

    def out(lines):
        _emit("\n".join("%s\t%d\t%s" % (tag, off, text) for off, text in lines))
    try:
        result = follow(adir, offset, out, finished)
    except Exception as exc:  # report, never kill the agent
        result = {"exit": 1, "stderr": "coord agent: %s" % exc}
    _leasing.release(tag)
    _emit("%s\t%s %s" % (tag, END, json.dumps(result)))


_alive = hostproc.alive


class _Leasing:
    """This agent's lease (one per agent: one coordinator, one host), renewed in a thread."""

    def __init__(self):
        self.lease = None
        self.lock = threading.Lock()
        self.last = None

    def open(self, req):
        with self.lock:
            if self.lease is None and "dir" not in req:  # an update for a lease never opened
                return
            if self.lease is None:
                self.lease = leases.Lease(req["dir"], req["holder"], req.get("meta", {}), req.get("ttl", 15.0),
                                          bool(req.get("shared")))
                threading.Thread(target=self._keep, daemon=True).start()
                view = self.lease.renew()
            else:
                view = self.lease.update(**req.get("meta", {}))
        self._tell(view)

    def _tell(self, view):
        if view != self.last:
            self.last = view
            _emit("%s %s" % (LEASE, json.dumps(view, sort_keys=True)))

    def _keep(self):
        renewed = 0.0
        while True:
            time.sleep(LEASE_LOOK_S)
            try:
                with self.lock:
                    if self.lease is None:  # closed
                        return
                    if time.monotonic() - renewed >= LEASE_RENEW_S:
                        view, renewed = self.lease.renew(), time.monotonic()
                    else:
                        view = self.lease.peek()
                self._tell(view)
            except Exception as exc:  # a full disk, a lease dir removed: said, never fatal
                _emit("%s {\"error\": %s}" % (LEASE, json.dumps(str(exc))))
                time.sleep(LEASE_RENEW_S)

    def claim(self, req):
        """True if the attempt may start; the answer goes to the coordinator either way."""
        want = req.get("lease")
        if want is None or self.lease is None:
            return True
        adir = req["adir"]
        started = os.path.exists(os.path.join(adir, CLAIM))
        try:
            with self.lock:
                granted, view = self.lease.claim(req["tag"], adir, int(want.get("n", 1)), want.get("gpus", []),
                                                 started)
        except Exception as exc:  # the lease directory cannot be used: the coordinator says where
            _emit("%s %s" % (REPLY, json.dumps({"id": req["tag"], "granted": False,
                                                "error": "lease directory %s: %s" % (self.lease.path, exc)})))
            return False
        _emit("%s %s" % (REPLY, json.dumps({"id": req["tag"], "granted": granted, "view": view})))
        self._tell(view)
        return granted

    def close(self):
        if self.lease is not None:
            with self.lock:
                self.lease.close()
                self.lease = None

    def release(self, tag):
        if self.lease is not None:
            with self.lock:
                self.lease.release(tag)


_leasing = _Leasing()


def _run(req):
    adir = req["adir"]
    if not _leasing.claim(req):
        return False
    os.makedirs(adir, mode=0o700, exist_ok=True)
    for name, text in req.get("files", {}).items():
        _write_atomic(os.path.join(adir, os.path.basename(name)), text, durable=False)
    for d in req.get("dirs", []):
        os.makedirs(d, mode=0o700, exist_ok=True)
    warm = req.get("warm")
    if warm:
        if claim(adir):
            slots.hand_over(warm, adir)
        return None
    return start(adir)


def agent():
    def beat():
        n = 0
        while True:
            time.sleep(1.0)
            n += 1
            _emit("%s %d" % (HEARTBEAT, n))
    threading.Thread(target=beat, daemon=True).start()
    _emit("%s 0" % HEARTBEAT)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "run":
                supervisor = _run(req)
                if supervisor is False:  # no slot: refused, not started
                    continue
                threading.Thread(target=_follow_tagged, args=(req["tag"], req["adir"], 0, supervisor),
                                 daemon=True).start()
            elif op == "follow":
                threading.Thread(target=_follow_tagged, args=(req["tag"], req["adir"], int(req.get("offset", 0))),
                                 daemon=True).start()
            elif op == "kill":
                threading.Thread(target=kill, args=(req["adir"],), daemon=True).start()
            elif op == "prune":  # the runner stops at its next step
                with open(os.path.join(req["adir"], "prune"), "w"):
                    pass
            elif op == "decide":  # the pruner's answer at a rung, which the runner waits for
                name = "prune" if req.get("prune") else "go-%d" % int(req["step"])
                with open(os.path.join(req["adir"], name), "w"):
                    pass
            elif op == "clean":  # a trial's checkpoints, once it ended
                threading.Thread(target=shutil.rmtree, args=(req["dir"],), kwargs={"ignore_errors": True},
                                 daemon=True).start()
            elif op == "stop_workers":
                slots.stop_workers(req["dir"])
            elif op == "lease":
                _leasing.open(req)
            elif op == "lease_close":
                _leasing.close()
        except Exception as exc:
            tag = req.get("tag", "?") if isinstance(req, dict) else "?"
            # a host's own write failing (a full disk) may pass: EX_IOERR is retried; anything
            # else (a missing interpreter, a bad request) would fail again: 127 is permanent
            code = 74 if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else 127
            _emit("%s\t%s %s" % (tag, END, json.dumps({"exit": code, "stderr": "coord agent: %s" % exc})))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "agent":
        agent()
    elif cmd == "follow":
        end = follow(argv[2], int(argv[3]) if len(argv) > 3 else 0,
                     lambda lines: print("\n".join(text for _, text in lines)))
        print("%s %s" % (END, json.dumps(end)))
    elif cmd == "kill":
        kill(argv[2])
    else:
        sys.exit("usage: remote.py agent | follow ATTEMPT_DIR [OFFSET] | kill ATTEMPT_DIR")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (BrokenPipeError, KeyboardInterrupt):  # the coordinator went away: trials go on
        pass
