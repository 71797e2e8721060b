"""Trials that span several processes (``procs: 2``): the MLP trained by torch
DistributedDataParallel under torchrun, two gloo processes on the CPU, for real.

The measure of correctness is a one-process run of the same spec: each rank takes every
second row of each batch and its loss is scaled to the full batch's mean, so both runs take
the same optimiser steps up to the order of floating-point sums. Measured here (small data,
2 folds, 4 epochs, a batch size that does not split evenly): every reported metric within
1e-9 of the one-process run, the trained weights within 6e-8. The tolerances below
(TOL_METRIC, TOL_WEIGHT) leave a margin of 100x over what was measured.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from coordinator import resources

RUNNERS = resources.folder("runners")
TOL_METRIC = 1e-7  # measured: 9e-10 (logloss after 4 epochs)
TOL_WEIGHT = 1e-5  # measured: 6e-8 (the largest difference of any weight, float32)
PARAMS = {"epochs": 4, "hidden_size": 16, "batch_size": 45, "lr": 0.01}  # 45: uneven shards, a short last batch


def spec_file(tmp: Path, name: str, data: Path, params: dict[str, Any] | None = None, every_s: float = 30.0) -> Path:
    adir = tmp / name / "attempt-1"
    adir.mkdir(parents=True)
    spec = {"number": 0, "attempt": 1, "study": "mlp", "params": params or PARAMS, "seed": 5, "model": "mlp",
            "command": None, "procs": 2,
            "data": {"path": str(data), "target": "home_win", "cv": "kfold", "folds": 2, "split_seed": 0,
                     "task": "classification"},
            "metrics": ["logloss"], "checkpoint_dir": str(tmp / name / "checkpoint"), "attempt_dir": str(adir),
            "threads": 1, "device": "cpu", "checkpoint_every_s": every_s}
    (adir / "spec.json").write_text(json.dumps(spec))
    return adir / "spec.json"


def start(spec: Path, procs: int) -> subprocess.Popen[str]:
    """As the host agent starts a trial: its own session and process group."""
    argv = [sys.executable, str(RUNNERS / ("run_trial.py" if procs == 1 else "ddp_launch.py"))]
    return subprocess.Popen(argv + ([] if procs == 1 else [str(procs)]), text=True, start_new_session=True,
                            env={**os.environ, "COORD_SPEC": str(spec), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def reports(lines: list[str]) -> list[dict[str, float]]:
    return [json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("[coord-metric]")]


def ranks_of(spec: Path) -> list[int]:
    """Live ranks of this trial (torchrun gives them the exit record's path; /proc shows
    the launcher's own environment as it started, without it)."""
    marker = f"COORD_DDP_EXIT={spec.parent / 'ddp-exit'}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in env and state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def listening(pids: list[int]) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp has them) these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for row in fh.read().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                    out.add(cols[1].rsplit(":", 1)[0])
    return out


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


def weights(ckpt_dir: Path) -> list[dict[str, Any]]:
    (newest,) = sorted(ckpt_dir.glob("step-*.ckpt"))[-1:]
    state = pickle.loads(newest.read_bytes().partition(b"\n")[2])
    return [fold["net"] for fold in state["folds"]]


@pytest.mark.slow
def test_two_gloo_processes_train_as_one_process_does(tmp_path: Path, small_csv: Path) -> None:
    """The DDP test: 2 processes (gloo) against 1, every report and the trained weights
    within the stated tolerance; only rank 0 reports and checkpoints; every socket the
    trial listens on is on the loopback interface."""
    one = start(spec_file(tmp_path, "one", small_csv), 1)
    out1, err1 = one.communicate(timeout=120)
    assert one.returncode == 0, err1
    spec = spec_file(tmp_path, "two", small_csv)
    two = start(spec, 2)
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # sample the trial's listening sockets while it runs
        while not done.is_set():
            seen.update(listening([two.pid, *ranks_of(spec)]))  # torchrun (the launcher) and its ranks
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out2, err2 = two.communicate(timeout=180)
    done.set()
    watcher.join()
    assert two.returncode == 0, err2
    r1, r2 = reports(out1.splitlines()), reports(out2.splitlines())
    assert [r.get("step") for r in r2] == [1, 2, 3, 4, None]  # once per epoch, from rank 0 alone
    assert len(r1) == len(r2)
    for a, b in zip(r1, r2, strict=True):
        assert a.keys() == b.keys()
        for key in a.keys() - {"train_seconds"}:
            assert abs(a[key] - b[key]) <= TOL_METRIC, (key, a[key], b[key])
    assert sum(x.startswith("[coord-ckpt]") for x in out2.splitlines()) == 1  # rank 0's only
    for w1, w2 in zip(weights(tmp_path / "one" / "checkpoint"), weights(tmp_path / "two" / "checkpoint"),
                      strict=True):
        assert w1.keys() == w2.keys()  # the plain module's names: a DDP checkpoint loads in one process
        assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) <= TOL_WEIGHT
    assert seen, "no listening socket was seen: the check did not look"
    assert seen <= LOOPBACK, f"listening beyond the loopback interface: {seen}"
    assert not ranks_of(spec)


def _until(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


@pytest.mark.slow
def test_sigterm_checkpoints_all_ranks_at_one_step_and_a_new_attempt_resumes(tmp_path: Path,
                                                                              small_csv: Path) -> None:
    """The agent's cancel and a scheduler's preemption: SIGTERM to the trial's process
    group. The ranks agree on the step, rank 0 checkpoints, the trial exits 75 (not
    torchrun's 1), no process is left; the next attempt resumes from the checkpoint."""
    params = {**PARAMS, "epochs": 10}  # stopped at step 2 or 3, then 7 or 8 more
    spec = spec_file(tmp_path, "t", small_csv, params, every_s=1e9)
    proc = start(spec, 2)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"step": 2.0' in line:
            os.killpg(proc.pid, signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    proc.wait(timeout=60)
    assert proc.returncode == 75, proc.stderr.read() if proc.stderr else ""
    saved = [json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("[coord-ckpt]")]
    assert len(saved) == 1 and saved[0]["step"] >= 2
    assert _until(lambda: not ranks_of(spec), 5)
    again = start(spec, 2)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0 and "resuming from the checkpoint at step" in err
    steps = [r["step"] for r in reports(out.splitlines()) if "step" in r]
    assert steps[0] == saved[0]["step"] and steps[-1] == 10  # the first report is the checkpoint's step


@pytest.mark.slow
def test_sigkill_of_the_group_leaves_no_rank_behind(tmp_path: Path, small_csv: Path) -> None:
    """torchrun starts each rank in a session of its own, out of reach of the group's
    SIGKILL: the ranks die with their parent (PR_SET_PDEATHSIG), so no orphan trains on."""
    spec = spec_file(tmp_path, "k", small_csv, {**PARAMS, "epochs": 200})
    proc = start(spec, 2)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"step": 1.0' in line:
            break
    assert len(ranks_of(spec)) == 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert _until(lambda: not ranks_of(spec), 5), f"orphaned ranks: {ranks_of(spec)}"


@pytest.mark.slow
def test_a_prune_request_stops_every_rank_at_the_same_step(tmp_path: Path, small_csv: Path) -> None:
    spec = spec_file(tmp_path, "p", small_csv, {**PARAMS, "epochs": 200})
    proc = start(spec, 2)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"step": 2.0' in line:
            (spec.parent / "prune").write_text("")
            break
    lines += proc.stdout.readlines()
    proc.wait(timeout=60)
    assert proc.returncode == 0
    pruned = [r for r in reports(lines) if "pruned_step" in r]
    assert len(pruned) == 1 and 2 <= pruned[0]["pruned_step"] < 200
    assert not any("train_seconds" in r for r in reports(lines))
    assert _until(lambda: not ranks_of(spec), 5)


@pytest.mark.parametrize(("text", "error"), [
    ("procs: 0\n", "s.yaml:3: procs: must be >= 1, got 0"),
    ("procs: 2\ngpus_per_proc: 2\n", "gpus_per_proc: DistributedDataParallel gives each process one GPU"),
    ("procs: 65\n", "procs: 65 processes per trial; at most 64"),
])
def test_bad_procs_are_one_line_naming_the_key(tmp_path: Path, text: str, error: str) -> None:
    from coordinator.config.space import load_space
    from coordinator.errors import SpaceError

    path = tmp_path / "s.yaml"
    path.write_text("params:\n  lr: {type: float, low: 0.001, high: 0.1}\n" + text)
    with pytest.raises(SpaceError, match=error):
        load_space(path)
