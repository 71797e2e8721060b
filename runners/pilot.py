"""A pilot job's loop on a SLURM node (``slurm.pilot: true``): one batch job per slot that
takes attempts one after another from its inbox in the shared work dir.

    python pilot.py PILOT_DIR IDLE_S

The coordinator places an attempt by writing ``PILOT_DIR/inbox/<entry>.json`` (its
attempt dir, argv, environment and cwd; parameters are in the attempt's spec.json). This
loop claims an entry by renaming it into ``claimed/`` (atomic: an entry runs at most once,
and the coordinator may take back an unclaimed one the same way), runs it with its stdout
and stderr in the attempt dir, and writes the same exit record as a one-job-per-attempt
script (``exit.json``). SIGTERM (SLURM's ``--signal`` before the time limit, a preemption,
scancel) is passed to the running trial, which checkpoints and exits 75; the pilot then
ends. It also ends when ``PILOT_DIR/stop`` exists or after IDLE_S seconds without work.
Before it ends it renames ``inbox`` to ``inbox.closed``, so that no placement can land in
an inbox nobody reads (the coordinator's write fails and it places elsewhere).

Standard library only: it runs with the cluster's Python.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

POLL_S = 0.05  # an inbox is a directory listing on the shared file system: cheap
KILL_AFTER_S = 10.0

term = False
child: subprocess.Popen[bytes] | None = None


def on_term(signum: int, frame: object) -> None:
    global term
    term = True
    if child is not None and child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def write_atomic(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def run_entry(path: str) -> None:
    global child
    with open(path) as fh:
        entry = json.load(fh)
    adir = entry["adir"]
    env = {**os.environ, **entry["env"]}
    with open(f"{adir}/stdout", "ab") as out, open(f"{adir}/stderr", "ab") as err:
        child = subprocess.Popen(entry["argv"], cwd=entry["cwd"], env=env, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    if term:  # the signal came between the claim and the start
        on_term(signal.SIGTERM, None)
    cancelled_at = None
    while child.poll() is None:
        if cancelled_at is None and os.path.exists(f"{adir}/cancel"):  # coord cancelled or pruned it
            cancelled_at = time.monotonic()
            os.killpg(child.pid, signal.SIGTERM)
        if cancelled_at is not None and time.monotonic() - cancelled_at > KILL_AFTER_S:
            os.killpg(child.pid, signal.SIGKILL)
        time.sleep(POLL_S)
    rc = child.returncode
    rc = 128 - rc if rc < 0 else rc  # as bash's wait reports a signalled child
    child = None
    record = {"exit": rc, "signalled": int(term), "restart": 0, "job": os.environ.get("SLURM_JOB_ID", ""),
              "pilot": 1}
    write_atomic(f"{adir}/exit.json", json.dumps(record) + "\n")


def main() -> int:
    pdir, idle_s = sys.argv[1], float(sys.argv[2])
    signal.signal(signal.SIGTERM, on_term)
    inbox, claimed = f"{pdir}/inbox", f"{pdir}/claimed"
    last = time.monotonic()
    while not term and not os.path.exists(f"{pdir}/stop"):
        names = sorted(n for n in os.listdir(inbox) if n.endswith(".json"))
        if not names:
            if time.monotonic() - last > idle_s:
                break
            time.sleep(POLL_S)
            continue
        name = names[0]
        try:
            os.rename(f"{inbox}/{name}", f"{claimed}/{name}")
        except FileNotFoundError:
            continue  # the coordinator took it back
        run_entry(f"{claimed}/{name}")
        last = time.monotonic()
    os.rename(inbox, f"{inbox}.closed")  # what is left there was never claimed: the coordinator re-places it
    return 0


if __name__ == "__main__":
    sys.exit(main())
