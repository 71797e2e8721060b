"""``coord resume`` with trials on real SSH hosts: the coordinator is killed (SIGKILL)
while trials run on both hosts; the trials go on; the resumed coordinator re-attaches to
them through new connections and new agents, and no attempt runs twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
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


def test_checkpoint_follows_a_retried_trial_to_another_host(cluster: Cluster, tmp_path: Path,
                                                             small_csv: Path) -> None:
    """The trial checkpoints on alpha; each checkpoint is copied home as it is announced;
    alpha's trial is killed and alpha's sshd stopped; the retry runs on beta, which never
    saw alpha's files, and resumes from the checkpoint the coordinator carried there."""
    from coordinator.app import run_search
    from coordinator.config.experiment import SearchOptions
    from coordinator.store.rundir import RunStore
    from tests.ssh.test_ssh_search import _rules

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  dropout: {type: categorical, choices: [0.2]}\n"
                     "fixed: {epochs: 30, hidden_size: 16, batch_size: 64}\n")
    run = tmp_path / "run"
    home = run / "trials/0/checkpoint"
    remote = cluster.hosts["alpha"].work_dir / "runs" / run.name / "trials/0"

    def kill_on_alpha() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list(home.glob("step-*.ckpt"))) >= 2 and (remote / "attempt-1/pid").exists():
                os.killpg(int((remote / "attempt-1/pid").read_text()), signal.SIGKILL)
                cluster.hosts["alpha"].stop()
                return
            time.sleep(0.02)
    killer = threading.Thread(target=kill_on_alpha, daemon=True)
    killer.start()
    out = run_search(SearchOptions(models=("mlp",), space=str(space), data=str(small_csv), target="home_win",
                                   cv="kfold", folds=2, trials=1, parallel=1, checkpoint_every=0.0,
                                   registry=str(cluster.registry(_rules("NeuralNetwork", "alpha", "beta",
                                                                        local=False))),
                                   run_dir=str(run), host_retry=600))
    killer.join()
    (result,) = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert result["status"] == "COMPLETE" and result["platform"] == "beta"
    assert [a["platform"] for a in result["attempts"]] == ["alpha", "beta"]
    assert "resuming from the checkpoint at step" in (run / "trials/0/attempt-2/stderr").read_text()
    beta = cluster.hosts["beta"].work_dir / "runs" / run.name / "trials/0"
    deadline = time.monotonic() + 5
    while (beta / "checkpoint").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (beta / "checkpoint").exists()  # host copies are deleted once the trial ends
    assert [p.name for p in home.glob("*.ckpt")] == ["step-00000030.ckpt"]  # the best model is kept home


def test_promoted_trial_moves_to_the_faster_host_with_its_checkpoint(cluster: Cluster, tmp_path: Path,
                                                                     small_csv: Path, monkeypatch) -> None:
    """Fidelity-aware placement with real trials: the speeds are given (both hosts are this
    machine), the rest is real. The trial starts on alpha, passes ASHA's first rung, is
    asked to stop, checkpoints, and continues on the idle, faster beta from that checkpoint,
    spending no retry (max_retries 0)."""
    from coordinator.app import run_search
    from coordinator.config.experiment import SearchOptions
    from coordinator.schedule.placement import Placement
    from coordinator.schedule.speed import SpeedModel
    from coordinator.store.rundir import RunStore
    from tests.ssh.test_ssh_search import _rules

    monkeypatch.setattr(SpeedModel, "expected", lambda self, model, platform: {"alpha": 100.0,
                                                                               "beta": 10.0}.get(platform))
    monkeypatch.setattr(Placement, "estimates", lambda self, *a, **k: {})  # start on alpha: the rule's first
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  dropout: {type: categorical, choices: [0.2]}\n"
                     "fixed: {epochs: 30, hidden_size: 16, batch_size: 64}\n")
    run = tmp_path / "run"
    out = run_search(SearchOptions(models=("mlp",), space=str(space), data=str(small_csv), target="home_win",
                                   cv="kfold", folds=2, trials=1, parallel=1, pruner="asha", max_retries=0,
                                   registry=str(cluster.registry(_rules("NeuralNetwork", "alpha", "beta",
                                                                        local=False))),
                                   run_dir=str(run)))
    (result,) = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert result["status"] == "COMPLETE"
    assert [(a["platform"], a["kind"]) for a in result["attempts"]] == [("alpha", "migrated"), ("beta", "ok")]
    assert "resuming from the checkpoint at step" in (run / "trials/0/attempt-2/stderr").read_text()
    migrate = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()
               if '"event": "migrate"' in line]
    assert len(migrate) == 1 and migrate[0]["step"] >= 6  # past the first rung: 2 epochs x factor 3
