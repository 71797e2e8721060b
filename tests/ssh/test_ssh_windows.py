"""An availability window that closes while a built-in trial runs on a real SSH host: the
trial checkpoints, moves to the other host, resumes from its checkpoint there and
finishes; nothing lost, no retry spent (max_retries 0)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.schedule.loop import Coordinator
from coordinator.store.rundir import RunStore
from tests.ssh.conftest import Cluster
from tests.ssh.test_ssh_search import _rules


@pytest.mark.slow  # two model starts (torch) over SSH: 25-65 s on the loaded 2-core machine
def test_a_window_closing_mid_trial_moves_it_to_the_other_host(cluster: Cluster, tmp_path: Path, small_csv: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """alpha is available 00:00-12:00. So as not to wait for a real noon, the coordinator's
    wall clock (its one offset: the hosts, the trial, its checkpoint are real) reads 11:00
    until the loop has the trial's report of its 3rd epoch on alpha, then noon: the window closes mid-trial."""
    lt = time.localtime()
    noon = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 12, 0, 0, 0, 0, -1))
    init = Coordinator.__init__
    made: list[Coordinator] = []

    def at_eleven(self: Coordinator, *a: object, **k: object) -> None:
        init(self, *a, **k)  # type: ignore[arg-type]
        self.wall0 = noon - 3600
        made.append(self)
    monkeypatch.setattr(Coordinator, "__init__", at_eleven)
    run = tmp_path / "run"

    def noon_after_three_epochs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the trial's reports, as the loop has them from alpha
            steps = [r.last_step or 0 for r in list(made[0].running.values())] if made else []
            if steps and max(steps) >= 3:
                made[0].wall0 = noon - (made[0].clock() - made[0].start)  # now is 12:00:00
                return
            time.sleep(0.05)
    threading.Thread(target=noon_after_three_epochs, daemon=True).start()
    reg = cluster.registry(_rules("NeuralNetwork", "alpha", "beta", local=False))
    reg.write_text(reg.read_text().replace("  alpha:\n", '  alpha:\n    available: {hours: "00:00-12:00"}\n'))
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  dropout: {type: categorical, choices: [0.2]}\n"
                     "fixed: {epochs: 40, hidden_size: 16, batch_size: 64}\n")
    t0 = time.monotonic()
    out = run_search(SearchOptions(models=("mlp",), space=str(space), data=str(small_csv), target="home_win",
                                   cv="kfold", folds=2, trials=1, parallel=1, max_retries=0, registry=str(reg),
                                   run_dir=str(run)))
    (result,) = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert result["status"] == "COMPLETE" and out["retries"] == 0
    assert [(a["platform"], a["kind"]) for a in result["attempts"]] == [("alpha", "migrated"), ("beta", "ok")]
    assert "resuming from the checkpoint at step" in (run / "trials/0/attempt-2/stderr").read_text()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    closed = [e for e in events if e["event"] == "window_closed"]
    assert [e["platform"] for e in closed] == ["alpha"] and closed[0]["reason"] == "window closed"
    (moved,) = [e for e in events if e["event"] == "migrate"]
    assert moved["source"] == "alpha" and moved["reason"] == "window closed"
    assert moved["step"] >= 3 and time.monotonic() - t0 < 90
    assert int(result["metrics"]["step"]) == 40  # every epoch trained, the early ones once


def test_an_idle_condition_is_read_on_the_ssh_host_over_its_connection(cluster: Cluster, tmp_path: Path) -> None:
    """alpha runs trials only when idle: it takes none until its first reading, made on
    alpha by runners/hostfacts.py over the search's own SSH connection, and then all of
    them (this machine's load is far below 1000; no nvidia-smi here, so no GPU process)."""
    from tests.ssh.test_ssh_search import _script, _sleepy

    reg = cluster.registry(_rules("Custom", "alpha", local=False))
    reg.write_text(reg.read_text().replace(
        "  alpha:\n", "  alpha:\n    available: {when_idle: {load_below: 1000, gpu_procs_below: 1}}\n"))
    out = run_search(SearchOptions(command=f"python3 {_script(tmp_path)}", space=_sleepy(tmp_path, 0.2),
                                   metrics=("loss",), trials=3, registry=str(reg), run_dir=str(tmp_path / "run")))
    assert out["complete"] == 3
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    windows = [(e["event"], e["platform"], e.get("reason")) for e in events if e["event"].startswith("window_")]
    assert windows == [("window_closed", "alpha", "no reading from the host yet"), ("window_opened", "alpha", None)]
    assert [e["platform"] for e in events if e["event"] == "launched"] == ["alpha"] * 3
