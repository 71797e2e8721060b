"""Per-trial dispatch latency over SSH on loopback, three ways side by side, interleaved:

- coord: ``AgentBackend.launch``: one JSON message to the host's agent on its open connection;
- a bare ``ssh -o ControlMaster=auto`` loop (a multiplexed OpenSSH client per trial);
- fabric ``Connection.run`` per trial on an open connection.

Each runs ``date +%s.%N`` on the host; latency = the host's start time minus the call time
(one clock: loopback). A real sshd is started for the run (tests/sshd.py).
Usage: python benchmarks/ssh_dispatch.py [N_PER_ROUND] [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator import resources  # noqa: E402
from coordinator.backends.agent import AgentBackend  # noqa: E402
from coordinator.backends.base import EndEvent  # noqa: E402
from coordinator.config.registry import load_registry  # noqa: E402
from coordinator.records import Allocation, Recipe  # noqa: E402
from tests import sshd  # noqa: E402


def coord_round(backend: AgentBackend, base: Path, n: int, start: int) -> list[float]:
    out = []
    alloc = Allocation("alpha", 0, None, "bench")
    for i in range(start, start + n):
        spec = Recipe(i, "b", {}, 0, None, ("date", "+%s.%N"), None, ("x",))
        t0 = time.time()
        backend.launch(spec, 1, alloc)
        while not any(isinstance(e, EndEvent) for e in backend.poll(5)):
            pass
        started = float((base / f"trials/{i}/attempt-1/stdout").read_text().split()[0])
        out.append((started - t0) * 1000)
    return out


def ssh_round(host: sshd.SSHHost, key: Path, known: Path, ctl: Path, n: int) -> list[float]:
    out = []
    argv = ["ssh", "-q", "-i", str(key), "-p", str(host.port), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=auto", "-o", f"ControlPath={ctl}",
            "-o", "ControlPersist=60", "root@127.0.0.1", "date", "+%s.%N"]
    for _ in range(n):
        t0 = time.time()
        started = float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        out.append((started - t0) * 1000)
    return out


def fabric_round(conn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        started = float(conn.run("date +%s.%N", hide=True).stdout)  # type: ignore[attr-defined]
        out.append((started - t0) * 1000)
    return out


def loopback_host(base: Path, extra: str = "") -> tuple[sshd.SSHHost, Path, Path, Path]:
    """A real sshd on loopback, trusted, and a registry naming it ``alpha``: (host, key,
    known_hosts, registry). ``extra``: more YAML lines for the platform."""
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    key = base / "key"
    host = sshd.make_host(base, "alpha", sshd.keygen(key))
    host.start()
    known = base / "known_hosts"
    known.write_text(host.known_hosts_line() + "\n")
    reg = base / "reg.yaml"
    reg.write_text(f"platforms:\n  alpha:\n    connection: ssh\n    host: 127.0.0.1\n    port: {host.port}\n"
                   f"    user: root\n    identity_file: {key}\n    python: {sys.executable}\n"
                   f"    work_dir: {host.work_dir}\n    specs: {{cpu_cores: 2, memory_gb: 8}}\n" + extra)
    return host, key, known, reg


def main() -> None:
    n, rounds = (int(a) for a in (sys.argv[1:3] + ["20", "3"][len(sys.argv[1:3]):]))
    import fabric
    import paramiko

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        host, key, known, reg = loopback_host(base)
        backend = AgentBackend(load_registry(reg).platforms, known, resources.folder("runners"), run_id="bench",
                               local_root=base)
        backend.prepare("alpha")
        conn = fabric.Connection("127.0.0.1", user="root", port=host.port, connect_kwargs={"key_filename": str(key)})
        conn.client.load_host_keys(str(known))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.open()
        results: dict[str, list[float]] = {"coord": [], "ssh_controlmaster": [], "fabric_run": []}
        try:
            for r in range(rounds):  # interleaved rounds; the first call of each warms up
                results["coord"] += coord_round(backend, base, n, r * n)[1:]
                results["ssh_controlmaster"] += ssh_round(host, key, known, base / "ctl", n)[1:]
                results["fabric_run"] += fabric_round(conn, n)[1:]
        finally:
            backend.close()
            conn.close()
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={base / 'ctl'}", "x"], capture_output=True)
            host.stop()
    med = {k: round(statistics.median(v), 2) for k, v in results.items()}
    print(json.dumps({"per_round": n, "rounds": rounds, "median_ms": med,
                      "p90_ms": {k: round(sorted(v)[int(0.9 * (len(v) - 1))], 2) for k, v in results.items()},
                      "fabric_over_coord": round(med["fabric_run"] / med["coord"], 2),
                      "ssh_over_coord": round(med["ssh_controlmaster"] / med["coord"], 2)}, indent=2))


if __name__ == "__main__":
    main()
