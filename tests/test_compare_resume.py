"""A comparison's jobs are trials of the coordinator's loop, so they get its reliability:
a Ctrl-C mid-run leaves the running job for ``coord resume``, which finishes it from its
last fold's checkpoint and runs the rest, no job (and no fold) done twice; a job killed on
its host is retried and resumes from its checkpoint, to the same predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coordinator import resources
from coordinator.analysis.predictions import read_document
from tests.compare_data import odds_csv
from tests.resume.invariants import committed_bytes
from tests.test_compare_cli import compare_args, coord
from tests.test_compare_docs import RESUME, run_shown


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return odds_csv(tmp_path_factory.mktemp("cmpresume") / "odds.csv")


def _ckpt_lines(trial: Path) -> list[str]:
    """The checkpoints a job announced, over all its attempts (one per fold it finished)."""
    return [ln for a in sorted(trial.glob("attempt-*")) if (a / "stdout").exists()
            for ln in (a / "stdout").read_text().splitlines() if ln.startswith("[coord-ckpt]")]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_interrupted_compare_resumes_with_no_job_done_twice(data: Path, tmp_path: Path) -> None:
    args = [a.replace("n_estimators=30", "n_estimators=150") for a in compare_args(data, None, "--parallel", "1")]
    proc = subprocess.Popen([sys.executable, "-m", "coordinator", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    deadline = time.monotonic() + 200
    while not (runs := list(tmp_path.glob("runs/compare-*"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    (run,) = runs
    while time.monotonic() < deadline:  # one job committed, the next one past its first fold
        done = {p.parent.name for p in run.glob("trials/*/result.json")}
        halfway = {p.parent.parent.name for p in run.glob("trials/*/checkpoint/step-00000001.ckpt")}
        if done and halfway - done:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "coord resume" in out
    before = committed_bytes(run)
    held = sorted(int(d.name) for d in run.glob("trials/*") if not (d / "result.json").exists())
    assert held, "the stop should have left the running job uncommitted"
    assert not (run / "compare").exists()  # no comparison of half the jobs
    again = run_shown(RESUME, tmp_path)  # as docs/compare.md shows it
    assert again.returncode == 0, again.stderr[-3000:]
    assert "complete" in again.stdout and "compare:report.html" in again.stdout
    results = {int(p.parent.name): json.loads(p.read_text()) for p in run.glob("trials/*/result.json")}
    assert len(results) == 4
    studies = [r["study"] for r in results.values()]
    assert sorted(studies) == sorted({*studies}) == ["glm-seed0", "glm-seed1", "random_forest-seed0",
                                                     "random_forest-seed1"]  # each job asked once
    assert all(committed_bytes(run)[k] == v for k, v in before.items())  # committed jobs untouched
    for number, r in results.items():
        kinds = [a["kind"] for a in r["attempts"]]
        assert kinds == (["interrupted", "ok"] if number in held else ["ok"]), (number, kinds)
        if number in held:  # it went on from its checkpoint
            assert "resuming after fold 1" in (run / "trials" / str(number) / "attempt-2" / "stderr").read_text()
        assert len(_ckpt_lines(run / "trials" / str(number))) == 2, number  # each fold trained once
        doc = read_document(run / "trials" / str(number) / "checkpoint" / "predictions.json")
        assert doc["folds_done"] == [1, 2]
    events = [json.loads(ln) for ln in (run / "events.jsonl").read_text().splitlines()]
    resumed = next(i for i, e in enumerate(events) if e["event"] == "resumed")
    relaunched = {e["number"] for e in events[resumed:] if e["event"] in ("launched", "reattached")}
    assert relaunched.isdisjoint(int(Path(k).parent.name) for k in before)
    assert (run / "compare" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_job_killed_on_its_host_is_retried_from_its_checkpoint(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["compare", "--model", "random_forest", "--param", "random_forest.n_estimators=150", "--calibration",
            "none", "--calibration", "isotonic", "--data", str(data), "--target", "home_win", "--time-col", "season",
            "--folds", "3", "--resamples", "100", "--parallel", "1", "--run-dir", str(run), "--json"]

    def kill_after_first_fold() -> None:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            if (run / "trials/0/checkpoint/step-00000001.ckpt").exists() and (run / "trials/0/attempt-1/pid").exists():
                os.killpg(int((run / "trials/0/attempt-1/pid").read_text()), signal.SIGKILL)
                return
            time.sleep(0.01)
    killer = threading.Thread(target=kill_after_first_fold, daemon=True)
    killer.start()
    proc = coord(*args, cwd=tmp_path)
    killer.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run / "trials/0/result.json").read_text())
    assert result["status"] == "COMPLETE" and [a["kind"] for a in result["attempts"]] == ["killed", "ok"]
    assert "resuming after fold 1" in (run / "trials/0/attempt-2/stderr").read_text()
    # the same predictions as the job run whole, at once, in a fresh folder
    spec = json.loads((run / "trials/0/attempt-2/spec.json").read_text())
    spec.update(checkpoint_dir=str(tmp_path / "fresh"), attempt_dir=str(tmp_path / "fresh-attempt"))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    whole = subprocess.run([sys.executable, str(resources.folder("runners") / "compare_job.py")], capture_output=True,
                           text=True, timeout=200, env={**os.environ, "COORD_SPEC": str(tmp_path / "spec.json")})
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert read_document(tmp_path / "fresh" / "predictions.json") == \
        read_document(run / "trials/0/checkpoint/predictions.json")
    assert (run / "compare" / "random_forest" / "predictions.csv").is_file()
