"""Several coordinators on the same real SSH hosts (loopback sshd): slot leases keep every
host within its slots, a higher priority gets freed slots first, --preempt stops a
lower-priority trial (it checkpoints and resumes later), and a coordinator killed with
kill -9 lets go of its slots within the lease's ttl. Checked from the hosts' own records:
each attempt's claim time (``started``) and run time (``exit.json``) on the host."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.ssh.conftest import Cluster

SPACE = "params:\n  x: {type: int, low: 0, high: 1000}\n"
SLEEPER = """
import json, os, time
spec = json.load(open(os.environ['COORD_SPEC']))
time.sleep(float(os.environ.get('NAP', '1.0')))
print('[coord-metric] ' + json.dumps({'loss': spec['params']['x'] * 1.0}), flush=True)
"""
# a script that checkpoints each step and, on SIGTERM, saves and exits 75 (the protocol's requeue)
STEPPER = """
import json, os, signal, sys, time
ck = os.path.join(os.environ['COORD_CHECKPOINT_DIR'], 'step')
start = int(open(ck).read()) if os.path.exists(ck) else 0
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
for step in range(start + 1, 31):  # 12 s: a search started beside it comes up well before the end
    time.sleep(0.4)
    with open(ck + '.tmp', 'w') as fh:
        fh.write(str(step))
    os.replace(ck + '.tmp', ck)
    print('[coord-metric] ' + json.dumps({'step': step, 'loss': 1.0 / step, 'start_step': float(start)}), flush=True)
    if stop:
        sys.exit(75)
"""


def _registry(cluster: Cluster, *hosts: str) -> Path:
    rules = (f"task_routing_rules:\n  - model_type: custom\n    route_to: [{', '.join(hosts)}]\n"
             "allow_local_fallback: false\n")
    path = cluster.registry(rules=rules)
    path.write_text(path.read_text().replace("    max_concurrent_jobs: 2\n",
                                             "    max_concurrent_jobs: 2\n    lease_ttl_s: 3\n"))
    return path


def _start(cluster: Cluster, name: str, registry: Path, script: str, trials: int, *extra: str,
           nap: float = 1.0) -> subprocess.Popen[str]:
    # an SSH trial does not get the coordinator's environment: the nap is written into the script
    (cluster.base / f"{name}.py").write_text(textwrap.dedent(script).replace("os.environ.get('NAP', '1.0')",
                                                                            repr(str(nap))))
    (cluster.base / "space.yaml").write_text(SPACE)
    argv = [sys.executable, "-m", "coordinator", "search", "--command", f"{sys.executable} {cluster.base}/{name}.py",
            "--space", str(cluster.base / "space.yaml"), "--metric", "loss", "--trials", str(trials),
            "--registry", str(registry), "--run-dir", str(cluster.base / "runs" / name), "--quiet",
            "--max-retries", "0", *extra]
    return subprocess.Popen(argv, cwd=cluster.base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _intervals(cluster: Cluster, name: str) -> list[tuple[float, float, str, str]]:
    """(claimed, ended, host, attempt) of every attempt of run ``name``, from the hosts' files."""
    out = []
    for host, h in cluster.hosts.items():
        for adir in (h.work_dir / "runs" / name / "trials").glob("*/attempt-*"):
            if not (adir / "started").exists():  # its files are written, its claim not yet
                continue
            started = json.loads((adir / "started").read_text())["wall"]
            end = adir / "exit.json"
            seconds = json.loads(end.read_text())["seconds"] if end.exists() else time.time() - started
            out.append((started, started + seconds, host, f"{adir.parent.name}/{adir.name}"))
    return sorted(out)


def _most_at_once(spans: list[tuple[float, float, str, str]], host: str) -> int:
    edges = sorted([(s, 1) for s, _, h, _ in spans if h == host] + [(e, -1) for _, e, h, _ in spans if h == host])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _wait_started(cluster: Cluster, name: str, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_intervals(cluster, name)) < n:
        assert time.monotonic() < deadline, f"{name}: {n} attempts did not start"
        time.sleep(0.1)


def _finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _events(cluster: Cluster, name: str) -> list[dict]:
    path = cluster.base / "runs" / name / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_searches_on_the_same_hosts_never_exceed_their_slots(cluster: Cluster) -> None:
    registry = _registry(cluster, "alpha", "beta")
    a = _start(cluster, "a", registry, SLEEPER, 6)
    b = _start(cluster, "b", registry, SLEEPER, 6)
    out_a, out_b = _finish(a), _finish(b)
    assert "6 complete" in out_a and "6 complete" in out_b
    spans = _intervals(cluster, "a") + _intervals(cluster, "b")
    assert len(spans) == 12
    for host in ("alpha", "beta"):
        assert _most_at_once(spans, host) <= 2, f"{host} ran more trials than its 2 slots: {spans}"
    # both searches ran at the same time (each alone would have filled both hosts)
    assert min(e for s, e, *_ in _intervals(cluster, "a")) > min(s for s, *_ in _intervals(cluster, "b")) or \
        min(e for s, e, *_ in _intervals(cluster, "b")) > min(s for s, *_ in _intervals(cluster, "a"))
    assert not list((cluster.hosts["alpha"].work_dir / "leases").glob("*.lease"))  # both let go at their end


def test_a_higher_priority_started_second_gets_the_freed_slots_first(cluster: Cluster) -> None:
    registry = _registry(cluster, "alpha")
    low = _start(cluster, "low", registry, SLEEPER, 3, nap=8.0)  # long: the high one comes up meanwhile
    _wait_started(cluster, "low", 2)
    high = _start(cluster, "high", registry, SLEEPER, 2, "--priority", "5", nap=1.0)
    leases = cluster.hosts["alpha"].work_dir / "leases"
    deadline = time.monotonic() + 60
    while not [p for p in leases.glob("high-*.lease") if json.loads(p.read_text()).get("waiting")]:
        assert time.monotonic() < deadline and high.poll() is None, "the high-priority search never waited"
        time.sleep(0.05)
    waited = time.time()
    queue = subprocess.run([sys.executable, "-m", "coordinator", "queue", "--registry", str(registry), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert queue.returncode == 0, queue.stderr
    rows = {r["run"]: r for r in json.loads(queue.stdout) if r["host"] == "alpha"}
    assert rows["high"]["priority"] == 5 and rows["high"]["state"] == "alive"
    assert rows["high"]["waiting"] + rows["high"]["held"] >= 1 and rows["low"]["priority"] == 0
    assert rows["low"]["held"] + rows["high"]["held"] <= 2
    _finish(high)
    _finish(low)
    lows, highs = _intervals(cluster, "low"), _intervals(cluster, "high")
    assert _most_at_once(lows + highs, "alpha") <= 2
    after = sorted([(s, "low") for s, *_ in lows if s > waited + 0.2] + [(s, "high") for s, *_ in highs])
    assert [who for _, who in after[:2]] == ["high", "high"], (lows, highs, waited)


def test_preempt_checkpoints_a_lower_priority_trial_and_resumes_it_later(cluster: Cluster) -> None:
    registry = _registry(cluster, "alpha")
    low = _start(cluster, "low", registry, STEPPER, 2)
    _wait_started(cluster, "low", 2)
    time.sleep(1.5)  # a few steps, each checkpointed
    high = _start(cluster, "high", registry, SLEEPER, 1, "--priority", "5", "--preempt")
    _finish(high)
    out = _finish(low)
    assert "2 complete" in out and "0 retries" in out
    ended = [e for e in _events(cluster, "low") if e["event"] == "ended"]
    preempted = [e for e in ended if e["kind"] == "preempted"]
    assert preempted and all(e["exit_code"] == 75 for e in preempted)
    assert {e["kind"] for e in ended} == {"preempted", "ok"}
    high_start = min(s for s, *_ in _intervals(cluster, "high"))
    base = cluster.hosts["alpha"].work_dir / "runs" / "low" / "trials"
    for e in preempted:  # the next attempt started after the high-priority trial, from its checkpoint
        again = base / str(e["number"]) / f"attempt-{e['attempt'] + 1}"
        first = json.loads(next(ln for ln in (again / "stdout").read_text().splitlines()
                                if ln.startswith("[coord-metric]"))[len("[coord-metric]"):])
        assert first["start_step"] >= 1 and first["step"] == first["start_step"] + 1
        assert json.loads((again / "started").read_text())["wall"] > high_start


def test_a_killed_coordinator_lets_go_of_its_slots_within_the_lease_ttl(cluster: Cluster) -> None:
    registry = _registry(cluster, "alpha")  # lease_ttl_s: 3
    first = _start(cluster, "first", registry, SLEEPER, 4, "--priority", "5", nap=0.5)
    _wait_started(cluster, "first", 2)
    first.send_signal(signal.SIGKILL)
    killed = time.time()
    first.wait()
    second = _start(cluster, "second", registry, SLEEPER, 2, nap=0.5)
    _finish(second)
    ended = max(e for _, e, *_ in _intervals(cluster, "first"))
    began = min(s for s, *_ in _intervals(cluster, "second"))
    # the dead coordinator's trials ended within a second, but its lease held their slots
    # until it lapsed (ttl 3 s after its last renewal, at most 1 s before the kill)
    assert began > ended
    assert killed + 3 - 1.5 <= began <= killed + 3 + 5, (killed, ended, began)
