"""``coord resume`` with trials on real SSH hosts: the coordinator is killed (SIGKILL)
while trials run on both hosts; the trials go on; the resumed coordinator re-attaches to
them through new connections and new agents, and no attempt runs twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.resume.invariants import SPACE, TRIAL, check, check_trace, committed_bytes
from tests.ssh.conftest import Cluster
from tests.ssh.test_ssh_search import RULE_SSH_ONLY


def _coord(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=180)


def test_kill_mid_trial_then_resume_reattaches_over_ssh(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "space.yaml").write_text(SPACE)
    run = tmp_path / "run"
    reg = cluster.registry(RULE_SSH_ONLY)
    crashed = _coord("search", "--command", f"{sys.executable} {tmp_path / 'trial.py'}", "--space", "space.yaml",
                     "--metric", "loss", "--trials", "8", "--sampler", "random", "--registry", str(reg),
                     "--run-dir", str(run), "--quiet", cwd=tmp_path,
                     env={"COORD_CRASH_AT": "mid_run:5", "TRIAL_SLEEP": "1.5"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    before = committed_bytes(run)
    assert len(before) < 16  # some trials were still running when it died
    done = _coord("resume", str(run), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = check(run, trials=8, max_retries=3, before=before)
    assert counts.get("COMPLETE") == 8 and counts["attempts"] == 8  # re-attached: no attempt re-run
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    reattached = [e for e in events if e["event"] == "reattached"]
    assert reattached and {e["platform"] for e in reattached} <= {"alpha", "beta"}
    for h in cluster.hosts.values():  # the trials' own trace on each host: one start per attempt
        check_trace(h.work_dir / "runs" / run.name)
    assert any((h.work_dir / "runs" / run.name / "trace.log").exists() for h in cluster.hosts.values())
