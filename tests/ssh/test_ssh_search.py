"""Searches over real OpenSSH servers on loopback: routing, host keys, injection, faults."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore
from tests.ssh.conftest import Cluster

SPACE = "params:\n  x: {type: int, low: 0, high: 1000}\n"
ECHO = """
import json, os, sys, time
spec = json.load(open(os.environ['COORD_SPEC']))
p = spec['params']
time.sleep(p.get('sleep', 0))
print('[coord-metric] ' + json.dumps({'loss': p['x'] * 2.0, 'host_cwd_ok': float(os.getcwd() == spec['attempt_dir'].split('/runs/')[0])}))
"""


def _script(base: Path, body: str = ECHO, name: str = "trial.py") -> Path:
    path = base / name
    path.write_text(textwrap.dedent(body))
    path.chmod(0o755)
    return path


def _sleepy(base: Path, seconds: float) -> str:
    return _space(base, SPACE + f"fixed: {{sleep: {seconds}}}\n")


def _space(base: Path, text: str = SPACE) -> str:
    path = base / "space.yaml"
    path.write_text(text)
    return str(path)


def _results(run_dir: str) -> list[dict]:
    return [r.result and r.result.to_json() for r in RunStore.open(Path(run_dir)).trials()]


def _rules(model_type: str, *route_to: str, local: bool = True) -> str:
    """Registry YAML routing ``model_type`` to ``route_to`` in order (local fallback optional)."""
    text = f"task_routing_rules:\n  - model_type: {model_type}\n    route_to: [{', '.join(route_to)}]\n"
    return text if local else text + "allow_local_fallback: false\n"


RULE_SSH_ONLY = _rules("Custom", "alpha", "beta", local=False)


def test_trials_run_on_the_ssh_hosts_the_rule_names(cluster: Cluster, tmp_path: Path) -> None:
    reg = cluster.registry(RULE_SSH_ONLY)
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                   trials=8, sampler="random", registry=str(reg), run_dir=str(tmp_path / "run")))
    results = _results(out["run_dir"])
    assert out["complete"] == 8
    assert {r["platform"] for r in results} == {"alpha", "beta"}
    for r in results:
        assert r["values"] == [r["params"]["x"] * 2.0]  # I4 over SSH
        assert r["metrics"]["host_cwd_ok"] == 1.0
        stdout = Path(out["run_dir"]) / "trials" / str(r["number"]) / "attempt-1" / "stdout"
        assert "[coord-metric]" in stdout.read_text()  # streamed back into the run directory
    # the runners were uploaded once per host, by content hash
    for h in cluster.hosts.values():
        assert len(list((h.work_dir / "runners").iterdir())) == 1


def test_unknown_host_key_is_refused_before_anything_runs(cluster: Cluster, tmp_path: Path) -> None:
    cluster.trusted("alpha")  # beta's key is unknown
    before = cluster.known_hosts.read_text()
    reg = cluster.registry(_rules('Custom', 'beta', 'alpha', local=False))
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                   trials=4, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert {r["platform"] for r in _results(out["run_dir"])} == {"alpha"}
    assert not (cluster.hosts["beta"].work_dir / "runners").exists()  # no command ran on beta
    events = (Path(out["run_dir"]) / "events.jsonl").read_text()
    assert "unknown host key" in events and "coord hosts trust beta" in events
    assert cluster.known_hosts.read_text() == before  # never auto-added


def test_changed_host_key_is_refused_and_the_host_quarantined(cluster: Cluster, tmp_path: Path) -> None:
    other = cluster.base / "other"
    other.mkdir()
    from tests import sshd
    fake = sshd.keygen(other / "k").split()
    alpha = cluster.hosts["alpha"]
    cluster.known_hosts.write_text(f"[127.0.0.1]:{alpha.port} {fake[0]} {fake[1]}\n"
                                   + cluster.hosts["beta"].known_hosts_line() + "\n")
    reg = cluster.registry(RULE_SSH_ONLY)
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                   trials=4, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert {r["platform"] for r in _results(out["run_dir"])} == {"beta"}
    assert "host key CHANGED" in (Path(out["run_dir"]) / "events.jsonl").read_text()
    assert not (alpha.work_dir / "runners").exists()


@pytest.mark.parametrize("shell", ["/bin/bash", "/usr/bin/dash"])
def test_shell_metacharacters_arrive_byte_identical(cluster: Cluster, tmp_path: Path, shell: str) -> None:
    from tests import sshd
    user = "coordbash" if "bash" in shell else "coorddash"
    if not sshd.ensure_user(user, shell):
        pytest.skip("creating a test user needs root")
    for parent in tmp_path.parents:  # let the test user reach its work dir and the script
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    for h in cluster.hosts.values():
        h.user = user
        os.chown(h.work_dir, *_ids(user))
    os.chmod(cluster.key, 0o600)
    nasty = ["$(touch CANARY1)", "`touch CANARY2`", "a; touch CANARY3", "b | touch CANARY4", "c\nd",
             "'single'", '"double"', "--help", "-oProxyCommand=touch CANARY5", "ünïcødé ✓", "x" * 5000]
    values = json.dumps(nasty)
    space = _space(tmp_path, f"params:\n  s: {{type: categorical, choices: {values}}}\n")
    body = """
        import json, os, zlib
        spec = json.load(open(os.environ['COORD_SPEC']))
        s = spec['params']['s']
        print('[coord-metric] ' + json.dumps({'crc': zlib.crc32(s.encode('utf-8')), 'n': len(s)}))
    """
    script = _script(tmp_path, body)
    script.parent.chmod(0o755)
    tmp_path.chmod(0o755)
    reg = cluster.registry(RULE_SSH_ONLY, python="python3")
    out = run_search(SearchOptions(command=f"python3 {script}", space=space, metrics=("crc",), direction="maximize",
                                   sampler="grid", registry=str(reg), run_dir=str(tmp_path / "run")))
    results = _results(out["run_dir"])
    assert out["complete"] == len(nasty), [r.get("error") for r in results]
    for r in results:
        assert r["metrics"]["crc"] == zlib.crc32(r["params"]["s"].encode("utf-8"))
    assert sorted(r["params"]["s"] for r in results) == sorted(nasty)
    for root in (tmp_path, *(h.work_dir for h in cluster.hosts.values()), Path("/home") / user, Path("/")):
        assert not list(root.glob("CANARY*"))


def _ids(user: str) -> tuple[int, int]:
    import pwd
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


def test_remote_trial_killed_with_sigkill_is_retried(cluster: Cluster, tmp_path: Path) -> None:
    body = """
        import json, os, signal
        spec = json.load(open(os.environ['COORD_SPEC']))
        if os.environ['COORD_ATTEMPT'] == '1':
            os.kill(os.getpid(), signal.SIGKILL)
        print('[coord-metric] {"loss": 1.5}')
    """
    reg = cluster.registry(RULE_SSH_ONLY)
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path, body)}", space=_space(tmp_path),
                                   metrics=("loss",), trials=2, registry=str(reg), run_dir=str(tmp_path / "run")))
    for r in _results(out["run_dir"]):
        assert r["status"] == "COMPLETE" and [a["kind"] for a in r["attempts"]] == ["killed", "ok"]
        assert r["attempts"][0]["platform"] != r["attempts"][1]["platform"]  # retried on the other host


def test_host_down_at_start_falls_back(cluster: Cluster, tmp_path: Path) -> None:
    cluster.hosts["alpha"].stop()
    reg = cluster.registry(_rules('Custom', 'alpha', 'beta'))
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                   trials=5, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert out["complete"] == 5
    assert {r["platform"] for r in _results(out["run_dir"])} <= {"beta", "local"}
    assert "cannot connect" in (Path(out["run_dir"]) / "events.jsonl").read_text()


def test_sshd_listener_killed_mid_search_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    reg = cluster.registry(RULE_SSH_ONLY)
    killer = threading.Timer(1.0, cluster.hosts["alpha"].stop)
    killer.start()
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_sleepy(tmp_path, 0.3),
                                   metrics=("loss",), trials=12, registry=str(reg), run_dir=str(tmp_path / "run")))
    killer.join()
    results = _results(out["run_dir"])
    assert len(results) == 12 and out["complete"] == 12  # I1: every trial ends, none lost
    for r in results:
        assert r["values"] == [r["params"]["x"] * 2.0]


def _stall(host, stopped: list[int]) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP every sshd session process of ``host`` (the listener keeps accepting): the
    listener's children and their sshd descendants (after login the connection may be
    served by a grandchild), never the trials and workers, which must go on."""
    assert host.proc is not None
    todo = [str(host.proc.pid)]
    while todo:
        kids = subprocess.run(["pgrep", "-P", todo.pop()], capture_output=True, text=True).stdout.split()
        for pid in kids:
            comm = Path(f"/proc/{pid}/comm").read_text().strip() if Path(f"/proc/{pid}/comm").exists() else ""
            if comm.startswith("sshd"):
                os.kill(int(pid), signal.SIGSTOP)
                stopped.append(int(pid))
                todo.append(pid)


def _stall_once_started(host, stopped: list[int], limit_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    """Stall ``host`` once an attempt runs there (its ``started`` file exists). A fixed delay
    raced a loaded machine: it could stall the pre-flight's connection instead, or land
    after the trial had ended."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if any(Path(host.work_dir).glob("**/attempt-*/started")):
            _stall(host, stopped)
            return
        time.sleep(0.05)


@pytest.mark.xdist_group("sshd-stall")  # never beside another stall: they interfere
def test_stalled_session_is_detected_and_reattached(cluster: Cluster, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """SIGSTOP the sshd process serving our connection: paramiko alone would wait forever."""
    caplog.set_level("WARNING", logger="coordinator.backends.agent")
    reg = cluster.registry(_rules('Custom', 'alpha', local=False))
    alpha = cluster.hosts["alpha"]
    stopped: list[int] = []
    timer = threading.Thread(target=_stall_once_started, args=(alpha, stopped))
    timer.start()
    t0 = time.monotonic()
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_sleepy(tmp_path, 4),
                                   metrics=("loss",), trials=1, registry=str(reg), run_dir=str(tmp_path / "run")))
    timer.join()
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):  # a pre-auth child the listener has reaped meanwhile
            os.kill(pid, signal.SIGCONT)
    assert stopped, "no session process found to stall"
    (r,) = _results(out["run_dir"])
    assert r["status"] == "COMPLETE" and len(r["attempts"]) == 1  # re-attached, not re-run
    assert "alpha: no heartbeat" in caplog.text and "re-attached to 1 running trial(s) on alpha" in caplog.text
    assert r["values"] == [r["params"]["x"] * 2.0]
    assert time.monotonic() - t0 < 30


def test_all_hosts_refused_fails_fast_with_the_reasons(cluster: Cluster, tmp_path: Path) -> None:
    from coordinator.errors import RoutingError
    cluster.known_hosts.write_text("")
    reg = cluster.registry(RULE_SSH_ONLY)
    t0 = time.monotonic()
    with pytest.raises(RoutingError) as err:
        run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                 trials=2, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert "alpha (root@127.0.0.1): unknown host key" in str(err.value) and "beta" in str(err.value)
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
def test_builtin_models_run_in_warm_workers_on_the_hosts(cluster: Cluster, tmp_path: Path, small_csv: Path) -> None:
    reg = cluster.registry(_rules('GLM', 'alpha', 'beta', local=False))
    space = _space(tmp_path, "params:\n  C: {type: float, low: 0.01, high: 10, log: true}\n")
    out = run_search(SearchOptions(models=("glm",), space=space, data=str(small_csv), target="home_win",
                                   time_col="season", folds=2, trials=8, registry=str(reg),
                                   run_dir=str(tmp_path / "run")))
    results = _results(out["run_dir"])
    assert out["complete"] == 8 and {r["platform"] for r in results} == {"alpha", "beta"}
    for r in results:
        assert 0.55 < r["metrics"]["auc"] < 1.0
        # provenance: the facts of the host it ran on, as that host's own probe found them
        host = r["provenance"]["host"]
        assert host["python"] == platform.python_version() and host["libraries"]["sklearn"]
        assert host["cores"] == os.cpu_count() and r["provenance"]["seeds"]["trial"] == r["seed"]
    # one warm worker per slot served every trial on it: all trials of a slot share a pid
    pids: dict[str, set[str]] = {}
    for h in cluster.hosts.values():
        for adir in (h.work_dir / "runs").glob("*/trials/*/attempt-1"):
            spec = json.loads((adir / "spec.json").read_text())
            assert spec["data"]["path"].startswith(str(h.work_dir / "data"))  # uploaded by hash
            pids.setdefault(h.name, set()).add((adir / "pid").read_text())
    assert all(len(v) <= 2 for v in pids.values()) and sum(len(v) for v in pids.values()) <= 4
    data_files = list((cluster.hosts["alpha"].work_dir / "data").iterdir())
    assert len(data_files) == 1  # the data went over once, named by its hash


def test_cancelled_warm_trial_ends_and_its_worker_is_gone(cluster: Cluster, tmp_path: Path, small_csv: Path) -> None:
    from coordinator.errors import SearchFailed
    reg = cluster.registry(_rules('NeuralNetwork', 'alpha', local=False))
    space = _space(tmp_path, "params:\n  epochs: {type: int, low: 5000, high: 5001}\n")
    t0 = time.monotonic()
    with pytest.raises(SearchFailed):
        run_search(SearchOptions(models=("mlp",), space=space, data=str(small_csv), target="home_win",
                                 trials=1, trial_timeout=6, max_retries=0, registry=str(reg),
                                 run_dir=str(tmp_path / "run")))
    (r,) = _results(str(tmp_path / "run"))
    assert r["kind"] == "timeout"
    assert r["duration_s"] < 6 + 5  # the kill reached the worker: it did not train to the end
    assert time.monotonic() - t0 < 25


def test_jump_host(cluster: Cluster, tmp_path: Path) -> None:
    """beta reached through alpha: both host keys checked, no agent, trials run on beta."""
    alpha = cluster.hosts["alpha"]  # a jump host must allow TCP forwarding
    alpha.stop()
    cfg = alpha.root / "sshd_config"
    cfg.write_text(cfg.read_text().replace("AllowTcpForwarding no", "AllowTcpForwarding yes"))
    alpha.start()
    reg = cluster.registry(_rules('Custom', 'beta', local=False))
    text = reg.read_text().replace("  beta:\n    connection: ssh\n", "  beta:\n    connection: ssh\n    jump: alpha\n")
    reg.write_text(text)
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                   trials=3, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert out["complete"] == 3 and {r["platform"] for r in _results(out["run_dir"])} == {"beta"}
    cluster.trusted("alpha")  # beta's key unknown: refused through the tunnel as well
    from coordinator.errors import RoutingError
    with pytest.raises(RoutingError, match="beta .*unknown host key"):
        run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                 trials=1, registry=str(reg), run_dir=str(tmp_path / "run2")))


def test_all_hosts_down_pauses_then_resumes_when_a_host_returns(cluster: Cluster, tmp_path: Path) -> None:
    alpha = cluster.hosts["alpha"]
    alpha.stop()
    reg = cluster.registry(_rules('Custom', 'alpha', local=False))
    threading.Timer(3.0, alpha.start).start()
    t0 = time.monotonic()
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_space(tmp_path), metrics=("loss",),
                                   trials=3, host_retry=1.0, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert out["complete"] == 3 and time.monotonic() - t0 >= 3.0  # waited, failed nothing
    events = [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert "host_down" in kinds and "host_probe" in kinds and kinds.count("ended") == 3
    assert all(e["kind"] == "ok" for e in events if e["event"] == "ended")


def test_host_without_the_models_library_gets_none_of_its_trials(cluster: Cluster, tmp_path: Path,
                                                                 small_csv: Path) -> None:
    """beta's Python lacks xgboost: its trials go to alpha; nothing fails for it."""
    hide = tmp_path / "hide_xgb"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['xgboost'] = None  # as if not installed\n")
    shim = tmp_path / "py-no-xgb"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={hide} exec {sys.executable} \"$@\"\n")
    shim.chmod(0o755)
    reg = cluster.registry(_rules('XGBoost', 'beta', 'alpha', local=False))
    text = reg.read_text()
    beta_at = text.index("  beta:")
    reg.write_text(text[:beta_at] + text[beta_at:].replace(f"python: {sys.executable}", f"python: {shim}", 1))
    space = _space(tmp_path, "params:\n  max_depth: {type: int, low: 2, high: 3}\n  n_estimators: {type: int, low: 5, high: 10}\n")
    out = run_search(SearchOptions(models=("xgboost",), space=space, data=str(small_csv), target="home_win", folds=2,
                                   time_col="season", trials=3, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert out["complete"] == 3 and {r["platform"] for r in _results(out["run_dir"])} == {"alpha"}
    assert "lacks xgboost for xgboost" in (Path(out["run_dir"]) / "events.jsonl").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("sshd-stall")  # never beside another stall: they interfere
@pytest.mark.xfail(strict=False, reason="under full-suite load the stall sometimes does not take (not understood; see the closing note of issue 9); passes alone")
def test_warm_trial_survives_a_stalled_connection(cluster: Cluster, tmp_path: Path, small_csv: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A built-in trial in a detached warm worker keeps training while the connection is
    stalled; the coordinator re-attaches and records it once, not re-run."""
    caplog.set_level("WARNING", logger="coordinator.backends.agent")
    reg = cluster.registry(_rules('NeuralNetwork', 'alpha', local=False))
    space = _space(tmp_path, "params:\n  epochs: {type: int, low: 600, high: 601}\n  lr: {type: float, low: 0.005, high: 0.01}\n")
    stopped: list[int] = []
    # stall once the trial is training on the host (a fixed delay raced a loaded machine:
    # the stall could land before the attempt started or after it ended)
    timer = threading.Thread(target=_stall_once_started, args=(cluster.hosts["alpha"], stopped))
    timer.start()
    out = run_search(SearchOptions(models=("mlp",), space=space, data=str(small_csv), target="home_win",
                                   trials=1, registry=str(reg), run_dir=str(tmp_path / "run")))
    timer.join()
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):  # a pre-auth child the listener has reaped meanwhile
            os.kill(pid, signal.SIGCONT)
    (r,) = _results(out["run_dir"])
    assert stopped and r["status"] == "COMPLETE" and len(r["attempts"]) == 1, r
    assert 0.55 < r["metrics"]["auc"] < 1.0
    assert "re-attached to 1 running trial(s) on alpha" in caplog.text


@pytest.mark.slow
def test_pruned_warm_trials_stop_and_keep_their_worker(cluster: Cluster, tmp_path: Path, small_csv: Path) -> None:
    reg = cluster.registry(_rules('XGBoost', 'alpha', local=False))
    space = _space(tmp_path, "params:\n  max_depth: {type: int, low: 2, high: 6}\nfixed: {n_estimators: 300}\n")
    out = run_search(SearchOptions(models=("xgboost",), space=space, data=str(small_csv), target="home_win",
                                   cv="kfold", folds=2, trials=3, parallel=1, pruner="threshold", prune_threshold=0.99,
                                   registry=str(reg), run_dir=str(tmp_path / "run")))
    results = _results(out["run_dir"])
    assert out["pruned"] == 3 and all(r["metrics"]["step"] <= 60 for r in results)
    pids = {(cluster.hosts["alpha"].work_dir / "runs" / "run" / "trials" / str(r["number"]) / "attempt-1" / "pid")
            .read_text() for r in results}
    assert len(pids) == 1  # the prune request stopped the trial, not the warm worker
