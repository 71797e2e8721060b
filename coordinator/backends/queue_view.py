"""``coord queue``: every search using the registry's hosts, read from their lease files.

Each local and SSH platform's lease directory (backends/leasing.py) is read on the host
by a small stdlib script (one command over the verified SSH connection; no agent, no
write): every lease with its priority, slots held, trials waiting, and whether its holder
is alive (renewing) or gone (expired: only its still-running trials count).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from coordinator.backends.leasing import lease_dir
from coordinator.backends.sshconn import HostConnection
from coordinator.config.knownhosts import known_hosts_path
from coordinator.config.registry import Platform, Registry
from coordinator.errors import HostError

# run on the host: argv[1] the lease directory; prints {"now": wall time, "leases": [...]}
READ = r"""
import json, os, sys, time
d = os.path.expanduser(sys.argv[1])
def running(e):
    a = e.get("adir") or ""
    if os.path.exists(os.path.join(a, "exit.json")):
        return False
    try:
        pid = int(open(os.path.join(a, "pid")).read())
    except (OSError, ValueError):
        return time.time() - e.get("since", 0) < 10
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
out = []
for name in (sorted(os.listdir(d)) if os.path.isdir(d) else []):
    if name.endswith(".lease"):
        try:
            lease = json.load(open(os.path.join(d, name)))
        except (OSError, ValueError):
            continue
        held = lease.get("held") or {}
        lease["running"] = sum(int(e.get("n", 1)) for e in held.values() if running(e))
        out.append(lease)
print(json.dumps({"now": time.time(), "leases": out}))
"""


def _read(p: Platform, registry: Registry, timeout: float) -> dict[str, Any]:
    path, _ = lease_dir(p)
    if p.connection == "local":
        res = subprocess.run([p.python, "-c", READ, path], capture_output=True, text=True, timeout=timeout)
        code, out, err = res.returncode, res.stdout, res.stderr
    else:
        conn = HostConnection(p, known_hosts_path(registry), HostConnection(registry.platforms[p.jump],
                                                                            known_hosts_path(registry))
                              if p.jump else None)
        try:
            r = conn.run([p.python, "-c", READ, path], timeout=timeout)
        finally:
            conn.close()
        code, out, err = r.exit_code, r.stdout, r.stderr
    if code != 0:
        raise HostError(p.key, p.host or "localhost", f"cannot read {path}: {err.strip()[-200:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def queue_rows(registry: Registry, timeout: float = 20.0) -> list[dict[str, Any]]:
    """One row per (host, search) holding or waiting for its slots; a host with none, or one
    that cannot be read, gets one row saying so."""
    rows: list[dict[str, Any]] = []
    for key, p in registry.platforms.items():
        if p.connection not in ("local", "ssh"):
            continue  # a cluster's own scheduler keeps its queue (squeue, kubectl get jobs)
        base = {"host": key, "slots": p.max_concurrent_jobs, "lease_dir": lease_dir(p)[0]}
        try:
            got = _read(p, registry, timeout)
        except (HostError, OSError, subprocess.SubprocessError, ValueError) as exc:
            rows.append({**base, "error": str(exc)})
            continue
        leases = got["leases"]
        if not leases:
            rows.append({**base, "run": None})
        for lease in sorted(leases, key=lambda x: (-int(x.get("priority", 0)), str(x.get("run")))):
            left = float(lease.get("expires", 0)) - float(got["now"])
            alive = left > 0
            held = sum(int(e.get("n", 1)) for e in (lease.get("held") or {}).values()) if alive \
                else int(lease.get("running", 0))
            rows.append({**base, "run": lease.get("run"), "holder": lease.get("label", ""),
                         "priority": int(lease.get("priority", 0)), "preempt": bool(lease.get("preempt")),
                         "held": held, "waiting": int(lease.get("waiting", 0)) if alive else 0,
                         "state": "alive" if alive else "gone (its running trials still count)"})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The table ``coord queue`` prints."""
    head = ("HOST", "SEARCH", "PRIORITY", "HELD", "WAITING", "STATE", "WHO")
    body = []
    for r in rows:
        if "error" in r:
            body.append((r["host"], "?", "", "", "", f"unreadable: {r['error']}", ""))
        elif r["run"] is None:
            body.append((r["host"], "-", "", f"0/{r['slots']}", "", "free", ""))
        else:
            body.append((r["host"], r["run"], str(r["priority"]) + (" preempt" if r["preempt"] else ""),
                         f"{r['held']}/{r['slots']}", str(r["waiting"]), r["state"], r["holder"]))
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    return "\n".join(lines) + f"\n(read {time.strftime('%H:%M:%S')})"
