"""Remote trial supervisor (stdlib only): runs on the host, started over SSH.

    python3 remote.py run ATTEMPT_DIR       start the trial detached, then follow it
    python3 remote.py follow ATTEMPT_DIR N  re-attach: stream stdout from byte N, then the end
    python3 remote.py kill ATTEMPT_DIR      kill the trial's whole process group

ATTEMPT_DIR holds ``launch.json`` (argv, env, cwd, attempt), written by the coordinator
over SFTP: parameters never appear on a command line. The trial runs in its own session
with stdout/stderr in files, so a dropped SSH connection neither kills nor orphans it;
``pid`` names its process group, ``exit.json`` (written atomically, carrying the attempt
number) records how it ended. ``follow`` prints stdout lines as they come, a heartbeat
line every second (so the coordinator can tell a stalled connection from a quiet trial),
and finally ``[coord-end] {"exit": CODE, "attempt": K}``.
"""

import json
import os
import signal
import sys
import time

END = "[coord-end]"
HEARTBEAT = "[coord-hb]"
POLL_S = 0.02


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def start(adir):
    with open(os.path.join(adir, "launch.json")) as fh:
        launch = json.load(fh)
    if os.path.exists(os.path.join(adir, "pid")):
        return  # already started: a repeated launch must not run the trial twice
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the intermediate child exits at once; the trial is re-parented to init
        for _ in range(500):
            if os.path.exists(os.path.join(adir, "pid")):
                return
            time.sleep(0.002)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # let go of the SSH channel, or it would stay open until the trial ends
        os.dup2(null, fd)
    out = os.open(os.path.join(adir, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    err = os.open(os.path.join(adir, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = dict(os.environ)
    env.update(launch.get("env", {}))
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        if launch.get("cwd"):
            os.chdir(os.path.expanduser(launch["cwd"]))
        try:
            os.execvpe(launch["argv"][0], launch["argv"], env)
        except OSError as exc:
            os.write(2, ("coord: cannot run %s: %s\n" % (launch["argv"][0], exc)).encode())
            os._exit(127)
    _write_atomic(os.path.join(adir, "pid"), str(child))
    while True:
        _, status = os.waitpid(child, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            break
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    _write_atomic(os.path.join(adir, "exit.json"), json.dumps({"exit": code, "attempt": launch.get("attempt")}))
    os._exit(0)


def follow(adir, offset=0):
    path = os.path.join(adir, "stdout")
    exit_path = os.path.join(adir, "exit.json")
    out = sys.stdout
    last_beat = time.monotonic()
    buf = b""
    while not os.path.exists(path) and not os.path.exists(exit_path):
        time.sleep(POLL_S)
    fh = open(path, "rb") if os.path.exists(path) else None
    if fh is not None:
        fh.seek(offset)
    while True:
        done = os.path.exists(exit_path)  # checked before the last read: nothing is missed
        chunk = fh.read() if fh is not None else b""
        if chunk:
            buf += chunk
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                offset += len(line) + 1
                out.write(line.decode("utf-8", "replace") + "\n")
            out.flush()
        elif done:
            if buf:
                out.write(buf.decode("utf-8", "replace") + "\n")
            with open(exit_path) as efh:
                result = json.load(efh)
            out.write("%s %s\n" % (END, json.dumps(result)))
            out.flush()
            return
        else:
            now = time.monotonic()
            if now - last_beat >= 1.0:
                out.write("%s %d\n" % (HEARTBEAT, offset))
                out.flush()
                last_beat = now
            time.sleep(POLL_S)


def kill(adir, grace=3.0):
    try:
        with open(os.path.join(adir, "pid")) as fh:
            pid = int(fh.read())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def main(argv):
    cmd, adir = argv[1], argv[2]
    if cmd == "run":
        start(adir)
        follow(adir, 0)
    elif cmd == "follow":
        follow(adir, int(argv[3]) if len(argv) > 3 else 0)
    elif cmd == "kill":
        kill(adir)
    else:
        sys.exit("usage: remote.py run|follow|kill ATTEMPT_DIR")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BrokenPipeError:  # the coordinator went away: the trial goes on
        pass
