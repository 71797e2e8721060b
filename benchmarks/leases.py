"""What slot leases cost per launch, over SSH on loopback, side by side and interleaved:

- ``launch_ms``: the time ``AgentBackend.launch`` takes, with leases (it waits for the host's
  agent to claim the slot under the lease directory's lock and answer) and without;
- ``dispatch_ms``: the call to the trial's start on the host (``date +%s.%N``; one clock);
- ``host_claim_ms``: the host-side claim and release alone (runners/leases.py), with
  ``OTHERS`` other coordinators' lease files in the directory.

A real sshd is started for the run (tests/sshd.py). Target: at most 5 ms per launch.
Usage: python benchmarks/leases.py [N_PER_ROUND] [ROUNDS] [OTHERS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ssh_dispatch import loopback_host  # noqa: E402
from coordinator import resources  # noqa: E402
from coordinator.backends.agent import AgentBackend  # noqa: E402
from coordinator.backends.base import EndEvent  # noqa: E402
from coordinator.backends.leasing import Sharing  # noqa: E402
from coordinator.config.registry import load_registry  # noqa: E402
from coordinator.records import Allocation, Recipe  # noqa: E402

sys.path.insert(0, str(resources.folder("runners")))
import leases  # noqa: E402


def one_round(backend: AgentBackend, base: Path, n: int, start: int) -> tuple[list[float], list[float]]:
    calls, dispatch = [], []
    alloc = Allocation("alpha", 0, None, "bench")
    for i in range(start, start + n):
        spec = Recipe(i, "b", {}, 0, None, ("date", "+%s.%N"), None, ("x",))
        t0 = time.time()
        backend.launch(spec, 1, alloc)
        calls.append((time.time() - t0) * 1000)
        while not any(isinstance(e, EndEvent) for e in backend.poll(5)):
            pass
        started = float((base / f"trials/{i}/attempt-1/stdout").read_text().split()[0])
        dispatch.append((started - t0) * 1000)
    return calls[1:], dispatch[1:]  # the first call of each round warms up


def host_claims(tmp: Path, others: int, n: int) -> list[float]:
    d = tmp / "micro"
    for k in range(others):
        leases.Lease(str(d), f"other{k}", {"slots": 64, "priority": k % 3, "waiting": 1}, 60).renew()
    mine = leases.Lease(str(d), "me", {"slots": 64}, 60)
    adir = tmp / "adir"
    adir.mkdir()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        mine.claim(f"{i}.1", str(adir), 1, [], False)
        mine.release(f"{i}.1")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    n, rounds, others = (int(a) for a in (sys.argv[1:4] + ["20", "5", "4"][len(sys.argv[1:4]):]))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        host, _, known, reg = loopback_host(base, "    max_concurrent_jobs: 64\n")
        platforms = load_registry(reg).platforms
        for k in range(others):  # other coordinators' leases on the host: every claim reads them
            leases.Lease(str(host.work_dir / "leases"), f"other{k}", {"slots": 64, "waiting": 0}, 3600).renew()
        runners = resources.folder("runners")
        plain = AgentBackend(platforms, known, runners, run_id="plain", local_root=base / "plain")
        shared = AgentBackend(platforms, known, runners, run_id="shared", local_root=base / "shared",
                              sharing=Sharing.for_run("shared", str(base / "shared")))
        for b in (plain, shared):
            b.prepare("alpha")
        res: dict[str, list[float]] = {"launch_plain": [], "launch_leased": [], "dispatch_plain": [],
                                       "dispatch_leased": []}
        try:
            for r in range(rounds):
                calls, disp = one_round(plain, base / "plain", n, r * n)
                res["launch_plain"] += calls
                res["dispatch_plain"] += disp
                calls, disp = one_round(shared, base / "shared", n, r * n)
                res["launch_leased"] += calls
                res["dispatch_leased"] += disp
        finally:
            plain.close()
            shared.close()
            host.stop()
        micro = host_claims(base, others, n * rounds)
    med = {k: round(statistics.median(v), 2) for k, v in res.items()}
    print(json.dumps({"per_round": n, "rounds": rounds, "other_leases": others, "median_ms": med,
                      "lease_cost_per_launch_ms": round(med["launch_leased"] - med["launch_plain"], 2),
                      "lease_cost_dispatch_ms": round(med["dispatch_leased"] - med["dispatch_plain"], 2),
                      "host_claim_release_median_ms": round(statistics.median(micro), 3)}, indent=2))


if __name__ == "__main__":
    main()
