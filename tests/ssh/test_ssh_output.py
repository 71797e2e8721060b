"""A trial that prints a lot over SSH (issue 8, item 5): its time limit is its own run time
on the host, and heartbeats never queue behind its output."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.errors import SearchFailed
from coordinator.store.rundir import RunStore
from tests.ssh.conftest import Cluster
from tests.ssh.test_ssh_search import RULE_SSH_ONLY

BULK = """import json, os, sys
spec = json.load(open(os.environ["COORD_SPEC"]))
line = "x" * 199 + "\\n"
for i in range(300000):  # 60 MB: long runs of letters, no metric on any line
    sys.stdout.write(line)
sys.stdout.write("y" * (3 << 20) + "\\n")  # and one 3 MB line
print("loss: %r" % spec["params"]["x"])
"""


@pytest.mark.timeout(120)
def test_60_mb_of_output_is_not_a_timeout_nor_a_stall(cluster: Cluster, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    (tmp_path / "bulk.py").write_text(BULK)
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    out = run_search(SearchOptions(command=f"{sys.executable} {tmp_path / 'bulk.py'}",
                                   space=str(tmp_path / "space.yaml"), metrics=("loss",), trials=1, trial_timeout=20,
                                   registry=str(cluster.registry(RULE_SSH_ONLY)), run_dir=str(tmp_path / "run")))
    (rec,) = RunStore.open(Path(out["run_dir"])).trials()
    assert rec.result is not None and rec.result.status == "COMPLETE", rec.result
    assert rec.result.values == [rec.info.params["x"]]
    assert "no heartbeat" not in caplog.text
    local = Path(out["run_dir"]) / "trials" / "0" / "attempt-1" / "stdout"
    assert local.stat().st_size > 60_000_000  # the run directory has the output too (the long line cut)


def test_the_limit_is_enforced_on_the_host(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text("import time\nprint('loss: 1.0', flush=True)\ntime.sleep(60)\n")
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    with pytest.raises(SearchFailed):  # its only trial timed out
        run_search(SearchOptions(command=f"{sys.executable} {tmp_path / 'slow.py'}", space=str(tmp_path / "space.yaml"),
                                 metrics=("loss",), trials=1, trial_timeout=2, max_retries=0,
                                 registry=str(cluster.registry(RULE_SSH_ONLY)), run_dir=str(tmp_path / "run")))
    (rec,) = RunStore.open(tmp_path / "run").trials()
    assert rec.result is not None and rec.result.kind == "timeout", rec.result
    assert 2.0 <= rec.result.duration_s < 8  # the host's own measure of the trial
    host_adir = next(cluster.hosts["alpha"].work_dir.glob("runs/run/trials/0/attempt-1"), None) or \
        next(cluster.hosts["beta"].work_dir.glob("runs/run/trials/0/attempt-1"))
    assert (host_adir / "timed_out").exists()


def test_a_port_without_an_ssh_server_is_one_line_not_a_traceback(cluster: Cluster, tmp_path: Path) -> None:
    """A host whose port accepts TCP but never sends an SSH banner (a stalled or wrong
    server): one line from coord, none of paramiko's tracebacks (issue 8, item 16)."""
    import socket
    import subprocess

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts; nobody ever speaks
    port = silent.getsockname()[1]
    reg = cluster.registry()  # gamma joins the platforms, before the registry's known_hosts line
    text = reg.read_text().replace("known_hosts:", f"""  gamma:
    connection: ssh
    host: 127.0.0.1
    port: {port}
    user: root
    identity_file: {cluster.key}
    specs: {{cpu_cores: 2, memory_gb: 8}}
    max_concurrent_jobs: 1
known_hosts:""")
    reg.write_text(text + "task_routing_rules:\n  - model_type: Custom\n    route_to: [gamma, local]\n")
    (tmp_path / "t.py").write_text("print('loss: 1.0')\n")
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    try:
        done = subprocess.run([sys.executable, "-m", "coordinator", "search", "--command", f"{sys.executable} t.py",
                               "--space", "space.yaml", "--metric", "loss", "--trials", "1", "--registry", str(reg),
                               "--run-dir", "run", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=90)
    finally:
        silent.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "paramiko" not in done.stderr, done.stderr
    assert "gamma" in done.stderr and "no SSH banner" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr
