"""Overhead over the ideal makespan and slot utilisation across 2 SSH hosts (real sshd on
loopback, 2 slots each), with one-second sleep trials (a --command, a fresh process per
trial on the host). Utilisation = trial seconds / (slots x loop makespan).
Usage: [SLOTS_PER_HOST=2] [PLACEMENT=learned|static] python benchmarks/ssh_makespan.py [TRIALS] [ROUNDS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.app import run_search  # noqa: E402
from coordinator.config.experiment import SearchOptions  # noqa: E402
from tests import sshd  # noqa: E402

SLOTS_PER_HOST = int(os.environ.get("SLOTS_PER_HOST", "2"))


def one_run(n: int, base: Path) -> dict[str, float]:
    key = base / "key"
    pub = sshd.keygen(key)
    hosts = [sshd.make_host(base, name, pub) for name in ("alpha", "beta")]
    for h in hosts:
        h.start()
    try:
        (base / "known").write_text("".join(h.known_hosts_line() + "\n" for h in hosts))
        lines = ["platforms:"]
        for h in hosts:
            lines += [f"  {h.name}:", "    connection: ssh", "    host: 127.0.0.1", f"    port: {h.port}",
                      "    user: root", f"    identity_file: {key}", f"    python: {sys.executable}",
                      f"    work_dir: {h.work_dir}", "    specs: {cpu_cores: 2, memory_gb: 8}",
                      f"    max_concurrent_jobs: {SLOTS_PER_HOST}"]
        lines += [f"known_hosts: {base / 'known'}", "allow_local_fallback: false"]
        (base / "reg.yaml").write_text("\n".join(lines) + "\n")
        (base / "sleep.py").write_text("import time\ntime.sleep(1.0)\nprint('[coord-metric] {\"loss\": 1.0}')\n")
        (base / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
        out = run_search(SearchOptions(command=f"{sys.executable} -S {base / 'sleep.py'}", space=str(base / "space.yaml"),
                                       metrics=("loss",), trials=n, sampler="random", registry=str(base / "reg.yaml"),
                                       placement=os.environ.get("PLACEMENT", "learned"),
                                       runs_root=str(base / "runs")))
    finally:
        for h in hosts:
            h.stop()
    events = [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
    monos = [e["mono"] for e in events if e["event"] in ("launched", "ended")]
    loop = max(monos) - min(monos)
    slots = SLOTS_PER_HOST * len(hosts)
    ideal = n / slots
    launched = {(e["number"], e["attempt"]): e["mono"] for e in events if e["event"] == "launched"}
    # launch to end as the coordinator saw them (result.json's duration is the host's own measure)
    busy = sum(e["mono"] - launched[(e["number"], e["attempt"])] for e in events if e["event"] == "ended")
    return {"loop_makespan_s": loop, "overhead_pct": 100 * (loop - ideal) / ideal,
            "utilisation_pct": 100 * n * 1.0 / (slots * loop),  # only the trials' own sleep counts as busy
            "slot_busy_pct": 100 * busy / (slots * loop),  # launch to end, as a scheduler sees a slot
            "complete": out["complete"]}


def main() -> None:
    n, rounds = (int(a) for a in (sys.argv[1:3] + ["40", "3"][len(sys.argv[1:3]):]))
    runs = []
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(n, Path(tmp)))
    print(json.dumps({"trials": n, "slots": SLOTS_PER_HOST * 2, "rounds": rounds, "ideal_s": n / (SLOTS_PER_HOST * 2),
                      "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
                      "median_overhead_pct": round(statistics.median(r["overhead_pct"] for r in runs), 2),
                      "median_utilisation_pct": round(statistics.median(r["utilisation_pct"] for r in runs), 2),
                      "median_slot_busy_pct": round(statistics.median(r["slot_busy_pct"] for r in runs), 2)},
                     indent=2))


if __name__ == "__main__":
    main()
