"""The pre-flight doctor (``coord hosts``) and explicit trust of host keys.

For each platform: reachable, authenticated, Python and library versions, cores, memory,
free disk in the work dir, GPUs from nvidia-smi, and clock skew. ``coord search`` runs the
same probe before dispatching and routes around hosts that fail it.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from coordinator import provenance
from coordinator.backends.slurmsite import Site, partitions, site_for
from coordinator.backends.sshconn import HostConnection
from coordinator.config.knownhosts import check_known_hosts, known_hosts_path
from coordinator.config.registry import Platform, Registry
from coordinator.errors import ConfigError, HostError

EXPERIMENTAL = "(experimental: not tested against a real cluster)"

# Runs on the host with its own Python: stdlib only, prints one JSON object. The CPU's name
# is found by the very function the coordinator uses for its own host (its source is sent).
PROBE = r"""
import contextlib, json, os, platform, shutil, socket, subprocess, sys, time, importlib.util
from pathlib import Path
""" + inspect.getsource(provenance.cpu_model) + r"""
def version(mod):
    if importlib.util.find_spec(mod) is None:
        return None
    try:
        from importlib.metadata import version as v
        return v({"sklearn": "scikit-learn", "xgboost": "xgboost"}.get(mod, mod))
    except Exception:
        try:
            from importlib.metadata import version as v
            return v(mod + "-cpu")
        except Exception:
            return "?"
work = os.path.expanduser(sys.argv[1])
os.makedirs(work, exist_ok=True)
try:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
except (ValueError, OSError):
    mem = None
gpus = []
smi = shutil.which("nvidia-smi")
if smi:
    try:
        q = lambda *a: subprocess.run([smi, *a, "--format=csv,noheader,nounits"], capture_output=True,
                                      text=True, timeout=10).stdout.strip().splitlines()
        busy = {}
        for line in q("--query-compute-apps=gpu_uuid,pid"):
            uuid = line.split(",")[0].strip()
            busy[uuid] = busy.get(uuid, 0) + 1
        for line in q("--query-gpu=index,uuid,name,memory.total,memory.free,utilization.gpu"):
            i, uuid, name, total, free, util = [x.strip() for x in line.split(",")]
            gpus.append({"index": int(i), "model": name, "memory_gb": round(float(total) / 1024, 1),
                         "free_gb": round(float(free) / 1024, 1), "utilization": float(util),
                         "compute_processes": busy.get(uuid, 0)})
    except Exception as exc:
        gpus = [{"error": str(exc)}]
print(json.dumps({"python": sys.version.split()[0], "executable": sys.executable, "cores": os.cpu_count(),
                  "hostname": socket.gethostname(), "os": platform.platform(), "machine": platform.machine(),
                  "cpu_model": cpu_model(),
                  "memory_gb": round(mem, 1) if mem else None,
                  "disk_free_gb": round(shutil.disk_usage(work).free / 2**30, 1), "time": time.time(),
                  "libraries": {m: version(m) for m in ("numpy", "pandas", "sklearn", "xgboost", "torch")},
                  "gpus": gpus}))
"""


def slurm_check(platform: Platform, site: Site, timeout: float) -> str | None:
    """Why coord cannot submit to this SLURM platform (sinfo on its login node, the
    partition), or None."""
    try:
        found = partitions(site, platform.key, timeout)
    except HostError as exc:
        return str(exc)
    want = platform.slurm.partition if platform.slurm else None
    if want is not None and want not in found:
        return f"slurm.partition {want!r} does not exist (sinfo lists: {', '.join(found)})"
    return None


def probe(platform: Platform, registry: Registry, timeout: float = 20.0) -> dict[str, Any]:
    """Probe one platform; never raises: failures are reported in the result."""
    t0 = time.monotonic()
    info: dict[str, Any] = {"platform": platform.key, "connection": platform.connection,
                            "host": platform.host or "localhost"}
    if platform.kubernetes is not None:
        return kube_probe(platform, info)
    try:
        if platform.connection == "slurm":
            site = site_for(platform, known_hosts_path(registry))
            try:
                why = slurm_check(platform, site, timeout)
                if why:
                    return {**info, "ok": False, "error": why}
                res = site.run([platform.python, "-c", PROBE, platform.work_dir], timeout=timeout)
            finally:
                site.close()
            code, stdout, stderr = res.exit_code, res.stdout, res.stderr
        elif platform.connection == "local":  # slurm: the login node sees the cluster's Python
            out = subprocess.run([platform.python, "-c", PROBE, platform.work_dir], capture_output=True,
                                 text=True, timeout=timeout)
            code, stdout, stderr = out.returncode, out.stdout, out.stderr
        elif platform.connection == "ssh":
            known = known_hosts_path(registry)
            jump = HostConnection(registry.platforms[platform.jump], known) if platform.jump else None
            conn = HostConnection(platform, known, jump)
            try:
                res = conn.run([platform.python, "-c", PROBE, platform.work_dir], timeout=timeout)
            finally:
                conn.close()
                if jump is not None:
                    jump.close()
            code, stdout, stderr = res.exit_code, res.stdout, res.stderr
        else:
            return {**info, "ok": False, "error": f"connection {platform.connection!r} not supported yet"}
    except HostError as exc:
        return {**info, "ok": False, "error": str(exc)}
    except (OSError, subprocess.SubprocessError) as exc:
        return {**info, "ok": False, "error": f"cannot run {platform.python}: {exc}"}
    if code != 0:
        return {**info, "ok": False, "error": f"{platform.python} failed (exit {code}): {stderr.strip()[-300:]}"}
    data = json.loads(stdout.strip().splitlines()[-1])
    data["clock_skew_s"] = round(data.pop("time") - time.time(), 2)
    missing = [m for m in ("numpy", "pandas", "sklearn") if not data["libraries"].get(m)]
    info.update(data, ok=not missing, latency_ms=round((time.monotonic() - t0) * 1000))
    if missing:
        info["error"] = f"missing libraries: {', '.join(missing)} (pip install them for {platform.python})"
    local = {m: provenance.library_version({"sklearn": "scikit-learn"}.get(m, m)) for m in data["libraries"]}
    info["differs"] = {m: [local[m], v] for m, v in data["libraries"].items() if v and local[m] and v != local[m]}
    return info



def kube_probe(platform: Platform, info: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes platform: its configuration loads and its namespace answers. The image's
    Python and libraries are not probed (that needs a pod): the first trial shows them."""
    from coordinator.backends import kubeapi

    opts = platform.kubernetes
    assert opts is not None
    info = {**info, "host": f"kubernetes/{opts.namespace}", "experimental": True}
    try:
        return {**info, "ok": True, "note": kubeapi.check(platform.key, opts)}
    except (HostError, ConfigError) as exc:
        return {**info, "ok": False, "error": str(exc)}


def given(facts: dict[str, Any] | None) -> Callable[[], dict[str, Any] | None]:
    return lambda: facts


def local_facts(registry: Registry) -> dict[str, Callable[[], dict[str, Any] | None]]:
    """Probe the local platforms in the background (a Python start, ~0.2 s, that the first
    trial need not wait for); their facts (``provenance.host_facts``) as functions that wait
    for the probe, for the provenance of the results those platforms make."""
    local = [p for p in registry.platforms.values() if p.connection == "local"]
    if not local:
        return {}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
    out = {p.key: _awaited(pool.submit(probe, p, registry)) for p in local}
    pool.shutdown(wait=False)
    return out


def _awaited(future: Future[dict[str, Any]]) -> Callable[[], dict[str, Any] | None]:
    return lambda: provenance.host_facts(future.result(timeout=30))


def foreign_gpus(info: dict[str, Any]) -> set[int]:
    """GPU indices a probe saw running someone else's compute processes."""
    return {g["index"] for g in info.get("gpus", []) if "index" in g and g.get("compute_processes")}


def probe_all(registry: Registry) -> list[dict[str, Any]]:
    if any(p.connection == "ssh" or (p.connection == "slurm" and p.host) for p in registry.platforms.values()):
        check_known_hosts(known_hosts_path(registry))  # one clear error instead of one per host
    with ThreadPoolExecutor(max_workers=max(1, len(registry.platforms))) as pool:
        return list(pool.map(lambda p: probe(p, registry), registry.platforms.values()))


def render_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'platform':<16} {'status':<6} {'python':<8} {'cores':>5} {'mem GB':>7} {'disk GB':>8} "
             f"{'skew s':>7}  gpus / libraries"]
    for r in rows:
        if r.get("experimental"):
            lines.append(f"{r['platform']:<16} {'ok' if r['ok'] else 'FAIL':<6} {r.get('note') or r.get('error')} "
                         f"{EXPERIMENTAL}")
            continue
        if not r.get("python"):
            lines.append(f"{r['platform']:<16} {'FAIL':<6} {r.get('error', '')}")
            continue
        gpus = ", ".join(f"{g.get('index')}:{g.get('model')} {g.get('free_gb')}/{g.get('memory_gb')}GB free "
                         f"{g.get('utilization')}%" for g in r.get("gpus", [])) or "no GPU"
        libs = " ".join(f"{k}={v or 'MISSING'}" for k, v in r["libraries"].items())
        status = "ok" if r["ok"] else "FAIL"
        lines.append(f"{r['platform']:<16} {status:<6} {r['python']:<8} {r['cores']:>5} {r['memory_gb']:>7} "
                     f"{r['disk_free_gb']:>8} {r['clock_skew_s']:>7}  {gpus}; {libs}")
        if r.get("error"):
            lines.append(f"{'':<16} {r['error']}")
        for mod, (mine, theirs) in r.get("differs", {}).items():
            lines.append(f"{'':<16} note: {mod} {theirs} differs from the coordinator's {mine}")
    return "\n".join(lines)




