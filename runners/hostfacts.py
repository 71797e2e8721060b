"""What a host's availability conditions and the live display need to know, read ON the host
(standard library only; run by the coordinator every few seconds with the host's Python).

    python hostfacts.py RUN_BASE      prints one JSON object

- ``load1``: the 1-minute load average (os.getloadavg), None where the OS has none;
- ``own_cpu``: cores this run's own processes used over the last 0.3 s (Linux: /proc), so
  the coordinator can leave its own trials out of "the host is idle";
- ``gpus``: per GPU from nvidia-smi, utilisation and memory; ``gpu_procs``: compute
  processes of others on any GPU (this run's own left out); both absent without nvidia-smi;
- ``on_ac``: on mains power (True), on battery (False), or None where the host does not say
  (a desktop without a power supply class, a VM).

Each fact is None where it cannot be read: this script never fails for a missing one.
"""

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import time

POWER_ROOT = "/sys/class/power_supply"


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def on_ac_power(root=POWER_ROOT, pmset=None):
    """Linux: any supply of type Mains that is online; macOS: pmset's "AC Power". None
    where neither says (no Mains supply listed, no pmset)."""
    mains = [d for d in sorted(glob.glob(os.path.join(root, "*"))) if _read(os.path.join(d, "type")) == "Mains"]
    states = [_read(os.path.join(d, "online")) for d in mains]
    if any(s in ("0", "1") for s in states):
        return "1" in states
    pmset = pmset if pmset is not None else shutil.which("pmset")
    if pmset:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pmset, "-g", "batt"], capture_output=True, text=True, timeout=5).stdout
            return parse_pmset(out)
    return None


def parse_pmset(text):
    """``pmset -g batt``'s first line: "Now drawing from 'AC Power'" or "'Battery Power'"."""
    if "'AC Power'" in text:
        return True
    if "'Battery Power'" in text:
        return False
    return None


def parse_gpus(text):
    """``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits``: one dict per GPU ("[N/A]" fields as None)."""
    out = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        num = [None if not c.replace(".", "", 1).isdigit() else float(c) for c in cells[1:]]
        out.append({"index": int(cells[0]), "util": num[0], "mem_used_mb": num[1], "mem_total_mb": num[2]})
    return out


def parse_apps(text):
    """``nvidia-smi --query-compute-apps=pid --format=csv,noheader``: the compute processes' ids."""
    return [int(x.strip()) for x in text.strip().splitlines() if x.strip().isdigit()]


def _pid(path):
    words = (_read(path) or "").split()
    return int(words[0]) if words and words[0].isdigit() else None


def own_sessions(base):
    """The sessions of the run's running trials and warm workers on this host (from their pid
    files under the run's directory): a process in one of them is the run's. A finished
    attempt's pid (exit.json beside it) and a worker that no longer leads its session (its
    pid reused) are left out, so a stranger is never taken for the run's."""
    sessions = set()
    for path in glob.glob(os.path.join(base, "trials", "*", "attempt-*", "pid")):
        pid = _pid(path)
        if pid is not None and not os.path.exists(os.path.join(os.path.dirname(path), "exit.json")):
            sessions.add(_sid(pid))
    for path in glob.glob(os.path.join(base, "slots", "*", "worker.pid")):
        pid = _pid(path)
        if pid is not None and _sid(pid) == pid:  # a worker leads its own session
            sessions.add(pid)
    sessions.discard(None)
    return sessions


def _sid(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _cpu_ticks(sessions):
    total = 0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        pid = int(stat.split("/")[2])
        if _sid(pid) not in sessions:
            continue
        text = _read(stat) or ""
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 12:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def own_cpu(sessions, interval=0.3):
    """Cores the run's own processes used over ``interval`` seconds (0 without /proc)."""
    if not sessions or not os.path.isdir("/proc/self"):
        return 0.0
    hz = os.sysconf("SC_CLK_TCK")
    t0, a = time.monotonic(), _cpu_ticks(sessions)
    time.sleep(interval)
    b, t1 = _cpu_ticks(sessions), time.monotonic()
    return round(max(0, b - a) / hz / max(t1 - t0, 1e-3), 2)


def gpu_facts(sessions, smi=None):
    """(per-GPU dicts, others' compute processes) from nvidia-smi; (None, None) without it."""
    smi = smi if smi is not None else shutil.which("nvidia-smi")
    if not smi:
        return None, None

    def q(*args):
        return subprocess.run([smi, *args], capture_output=True, text=True, timeout=10).stdout
    try:
        gpus = parse_gpus(q("--query-gpu=index,utilization.gpu,memory.used,memory.total",
                            "--format=csv,noheader,nounits"))
        apps = parse_apps(q("--query-compute-apps=pid", "--format=csv,noheader"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return gpus, sum(1 for pid in apps if _sid(pid) not in sessions)


def facts(base, power_root=POWER_ROOT):
    sessions = own_sessions(base)
    try:
        load1 = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        load1 = None
    gpus, procs = gpu_facts(sessions)
    return {"load1": load1, "own_cpu": own_cpu(sessions), "gpus": gpus, "gpu_procs": procs,
            "on_ac": on_ac_power(power_root), "time": time.time()}


if __name__ == "__main__":
    print(json.dumps(facts(os.path.expanduser(sys.argv[1]) if len(sys.argv) > 1 else ".")))
