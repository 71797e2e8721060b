"""Checkpoints of built-in trials (I7): atomic, checksummed, resumed from the newest valid
one, never from a damaged one or another trial's; a full disk keeps the previous one; a
trial killed after a checkpoint is retried from it and ends where an unbroken one would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from coordinator import resources
from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore
from tests.tmpfs import tmpfs

RUNNERS = resources.folder("runners")
MLP = {"epochs": 8, "hidden_size": 16, "dropout": 0.2, "batch_size": 64}
XGB_NO_SAMPLING = {"n_estimators": 120, "max_depth": 3, "learning_rate": 0.1}
RF = {"n_estimators": 250, "max_depth": 6, "max_features": "sqrt"}  # 5 chunks of 50 trees


def _spec(tmp_path: Path, name: str, model: str, params: dict[str, Any], data: Path, ckpt: Path | None = None) -> Path:
    d = tmp_path / name
    (d / "a").mkdir(parents=True)
    spec = {"number": 0, "attempt": 1, "study": model, "params": params, "seed": 5, "model": model, "command": None,
            "data": {"path": str(data), "target": "home_win", "cv": "kfold", "folds": 2, "split_seed": 0,
                     "task": "classification"},
            "metrics": ["auc"], "checkpoint_dir": str(ckpt or d / "ckpt"), "attempt_dir": str(d / "a"),
            "threads": 1, "device": "cpu", "checkpoint_every_s": 0.0}
    path = d / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _run(spec: Path, term_after_checkpoints: int | None = None) -> tuple[int, list[str], str]:
    """Run one trial; optionally SIGTERM it (a preemption) after that many checkpoints."""
    proc = subprocess.Popen([sys.executable, str(RUNNERS / "run_trial.py")], env={**os.environ, "COORD_SPEC": str(spec)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if term_after_checkpoints and sum(x.startswith("[coord-ckpt]") for x in lines) == term_after_checkpoints:
            proc.send_signal(signal.SIGTERM)
            term_after_checkpoints = None
    proc.wait(timeout=120)
    return proc.returncode, lines, proc.stderr.read()


def _final(lines: list[str]) -> dict[str, float]:
    last = [x for x in lines if x.startswith("[coord-metric]") and "train_seconds" in x][-1]
    values: dict[str, float] = json.loads(last.split(" ", 1)[1])
    values.pop("train_seconds")
    return values


@pytest.mark.parametrize(("model", "params"), [("mlp", MLP), ("xgboost", XGB_NO_SAMPLING), ("random_forest", RF)])
def test_preempted_trial_requeues_and_resumes_to_the_same_result(tmp_path: Path, small_csv: Path, model: str,
                                                                 params: dict[str, Any]) -> None:
    rc, full, _ = _run(_spec(tmp_path, "full", model, params, small_csv))
    assert rc == 0
    spec = _spec(tmp_path, "broken", model, params, small_csv)
    rc, part, _ = _run(spec, term_after_checkpoints=3)
    assert rc == 75  # EX_TEMPFAIL: checkpointed, run me again
    assert "train_seconds" not in "".join(part)
    rc, rest, err = _run(spec)
    assert rc == 0 and "resuming from the checkpoint at step" in err
    reports = [json.loads(x.split(" ", 1)[1]) for x in rest if x.startswith("[coord-metric]")]
    steps = [r["step"] for r in reports if "step" in r]
    assert steps[0] > 1  # it did not start over
    assert _final(rest) == _final(full)  # same trees / weights as an unbroken run


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, small_csv: Path) -> None:
    _, full, _ = _run(_spec(tmp_path, "full", "mlp", MLP, small_csv))
    spec = _spec(tmp_path, "broken", "mlp", MLP, small_csv)
    assert _run(spec, term_after_checkpoints=4)[0] == 75
    files = sorted((tmp_path / "broken" / "ckpt").glob("step-*.ckpt"))
    older, newest = (int(f.name[5:13]) for f in files)  # the newest two are kept
    # the newest two, one step apart (SIGTERM also checkpoints the step it interrupted, if any)
    assert newest == older + 1 and newest >= 4
    data = bytearray(files[-1].read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the payload
    files[-1].write_bytes(bytes(data))
    rc, rest, err = _run(spec)
    assert rc == 0
    assert f"{files[-1].name} is damaged" in err and f"resuming from the checkpoint at step {older}\n" in err
    assert _final(rest) == _final(full)


def test_a_checkpoint_of_other_parameters_is_never_loaded(tmp_path: Path, small_csv: Path) -> None:
    ckpt = tmp_path / "shared"
    assert _run(_spec(tmp_path, "one", "mlp", MLP, small_csv, ckpt), term_after_checkpoints=2)[0] == 75
    rc, _, err = _run(_spec(tmp_path, "two", "mlp", {**MLP, "hidden_size": 24}, small_csv, ckpt))
    assert rc == 0 and "resuming" not in err and "not this trial's" in err


@pytest.fixture
def tiny_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    with tmpfs(tmp_path / "tmpfs", "256k") as mount:
        yield mount


def test_disk_full_keeps_the_previous_checkpoint_and_the_trial_goes_on(tmp_path: Path, small_csv: Path,
                                                                      tiny_fs: Path) -> None:
    sys.path.insert(0, str(RUNNERS))
    try:
        import checkpoint
    finally:
        sys.path.remove(str(RUNNERS))
    ckpt = tiny_fs / "ckpt"
    assert checkpoint.save(str(ckpt), 1, {"w": b"a" * 1000}, "k", out=open(os.devnull, "w")) == "step-00000001.ckpt"
    ballast = tiny_fs / "ballast"
    with open(ballast, "wb", buffering=0) as fh:  # fill the file system up to the last byte
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    assert checkpoint.save(str(ckpt), 2, {"w": b"b" * 200_000}, "k", out=open(os.devnull, "w")) is None
    assert os.listdir(ckpt) == ["step-00000001.ckpt"]  # no temporary file left behind
    assert checkpoint.load_latest(str(ckpt), "k") == (1, {"w": b"a" * 1000})
    # a real trial on the full disk: every checkpoint fails; the trial still completes
    rc, lines, err = _run(_spec(tmp_path, "full_disk", "mlp", MLP, small_csv, ckpt))
    assert rc == 0 and "train_seconds" in "".join(lines) and "not written" in err
    ballast.unlink()


def _kill_after_checkpoint(run: Path, at_least: int) -> threading.Thread:
    """Kill -9 the process running trial 0's first attempt once it has checkpointed."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list((run / "trials/0/checkpoint").glob("step-*.ckpt"))) >= min(at_least, 2) and \
                    (run / "trials/0/attempt-1/pid").exists():
                os.killpg(int((run / "trials/0/attempt-1/pid").read_text()), signal.SIGKILL)
                return
            time.sleep(0.02)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_trial_killed_after_a_checkpoint_is_retried_from_it(tmp_path: Path, small_csv: Path, space_file) -> None:
    space = space_file("params:\n  dropout: {type: categorical, choices: [0.2]}\n"
                       "fixed: {epochs: 30, hidden_size: 16, batch_size: 64}\n")

    def search(name: str) -> dict[str, Any]:
        return run_search(SearchOptions(models=("mlp",), space=space, data=str(small_csv), target="home_win",
                                        cv="kfold", folds=2, trials=1, parallel=1, checkpoint_every=0.0,
                                        run_dir=str(tmp_path / name)))
    killer = _kill_after_checkpoint(tmp_path / "killed", 2)
    out = search("killed")
    killer.join()
    (result,) = [r.result and r.result.to_json() for r in RunStore.open(Path(out["run_dir"])).trials()]
    assert result["status"] == "COMPLETE" and result["attempt"] == 2
    assert result["attempts"][0]["kind"] == "killed"
    err = (tmp_path / "killed/trials/0/attempt-2/stderr").read_text()
    assert "resuming from the checkpoint at step" in err
    unbroken = search("unbroken")
    (expected,) = [r.result and r.result.to_json() for r in RunStore.open(Path(unbroken["run_dir"])).trials()]
    assert result["values"] == expected["values"]
    # the only trial is its study's best: its model (the last checkpoint) is kept
    assert [p.name for p in (tmp_path / "killed/trials/0/checkpoint").glob("*.ckpt")] == ["step-00000030.ckpt"]
    shutil.rmtree(tmp_path / "unbroken")
