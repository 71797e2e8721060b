"""The comparison job (runners/compare_job.py) in real processes on small real data: its
predictions file, its metric line, resuming from its checkpoint, its errors, and that a
test season's labels never reach its model or calibrator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from coordinator import protocol, resources
from coordinator.analysis import metrics
from coordinator.analysis.predictions import load, read_document
from coordinator.errors import DataError
from tests.compare_data import odds_csv

RUNNERS = resources.folder("runners")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return odds_csv(tmp_path_factory.mktemp("cmpdata") / "odds.csv")


def spec_for(data: Path, tmp: Path, model: str = "glm", **compare: Any) -> dict[str, Any]:
    return {"model": model, "params": {"n_estimators": 40, "max_depth": 3} if model == "xgboost" else {"C": 1.0},
            "seed": 0, "threads": 1, "number": 7, "attempt": 1,
            "data": {"path": str(data), "target": "home_win", "time_col": "season", "cv": "walk-forward",
                     "folds": 3, "task": "classification"},
            "compare": {"calibration": ["none", "platt", "isotonic"], "odds_col": "odds_home", **compare},
            "checkpoint_dir": str(tmp / "checkpoint"), "attempt_dir": str(tmp / "attempt-1")}


def run_job(spec: dict[str, Any], tmp: Path, script: str = "run_trial.py") -> subprocess.CompletedProcess[str]:
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return subprocess.run([sys.executable, str(RUNNERS / script)], env={**os.environ, "COORD_SPEC": str(path)},
                          capture_output=True, text=True, timeout=120)


def metric_line(stdout: str) -> dict[str, float]:
    parser = protocol.MetricParser()
    lines = [parser.parse(ln) for ln in stdout.splitlines() if ln.startswith(protocol.METRIC_PREFIX)]
    assert len(lines) == 1, stdout
    assert lines[0] is not None
    return lines[0]


def test_a_job_writes_its_predictions_and_metric_line(data: Path, tmp_path: Path) -> None:
    """Through trialkit.run_spec (what a warm worker calls): one file, every test row of
    the three walk-forward seasons, calibrated on each window's last season; the metric
    line is the file's own metrics."""
    proc = run_job(spec_for(data, tmp_path, "xgboost", name="xgb-small"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_document(tmp_path / "checkpoint" / "predictions.json")
    assert doc["model"] == "xgb-small" and doc["runner"] == "xgboost"  # the entry's name, the runner used
    frame = pd.read_csv(data)
    assert doc["folds_done"] == [1, 2, 3] and sorted(set(doc["columns"]["season"])) == [2018, 2019, 2020]
    assert doc["inner"] == {"1": "calibrated on 2017 (the window's last)", "2": "calibrated on 2018 (the window's "
                            "last)", "3": "calibrated on 2019 (the window's last)"}
    rows = doc["columns"]["row"]
    assert rows == frame.index[frame["season"] >= 2018].tolist()  # the CSV's own rows, in order
    assert doc["columns"]["y"] == frame.loc[rows, "home_win"].astype(float).tolist()
    assert doc["columns"]["odds"] == frame.loc[rows, "odds_home"].tolist()
    line = metric_line(proc.stdout)
    preds = {p.calibration: p for p in load([tmp_path / "checkpoint" / "predictions.json"])}
    for cal, p in preds.items():
        assert line[f"auc_{cal}"] == pytest.approx(metrics.auc(p.y, p.p), abs=1e-12)
        assert line[f"brier_{cal}"] == pytest.approx(metrics.brier(p.y, np.clip(p.p, 1e-7, 1 - 1e-7)), abs=1e-12)
    assert line["auc"] == line["auc_none"] and line["rows"] == len(rows) and line["folds"] == 3
    # the job's last checkpoint carries the same document home (the coordinator reads it without pickle classes)
    ckpt = sorted((tmp_path / "checkpoint").glob("step-*.ckpt"))[-1]
    assert ckpt.name == "step-00000003.ckpt" and read_document(ckpt) == doc
    assert "odds_home" not in json.dumps(doc["params"])


def test_a_retried_job_resumes_after_its_last_finished_fold(data: Path, tmp_path: Path) -> None:
    spec = spec_for(data, tmp_path)
    first = run_job(spec, tmp_path, "compare_job.py")
    assert first.returncode == 0, first.stderr
    whole = (tmp_path / "checkpoint" / "predictions.json").read_text()
    (tmp_path / "checkpoint" / "predictions.json").unlink()
    (tmp_path / "checkpoint" / "step-00000003.ckpt").unlink()  # died after fold 2
    again = run_job(spec, tmp_path, "compare_job.py")
    assert again.returncode == 0, again.stderr
    assert "resuming after fold 1, 2" in again.stderr
    assert (tmp_path / "checkpoint" / "predictions.json").read_text() == whole


def test_the_test_seasons_labels_never_reach_the_job(data: Path, tmp_path: Path) -> None:
    """Flip every label of 2019: the predictions for 2019 (its own fold, every calibration)
    stay bit-identical; those for 2020 change, since 2019 is then training data."""
    flipped = pd.read_csv(data)
    flipped.loc[flipped["season"] == 2019, "home_win"] = 1 - flipped.loc[flipped["season"] == 2019, "home_win"]
    other = tmp_path / "flipped.csv"
    flipped.to_csv(other, index=False)
    docs = []
    for name, path in (("a", data), ("b", other)):
        (tmp_path / name).mkdir()
        proc = run_job(spec_for(path, tmp_path / name), tmp_path / name, "compare_job.py")
        assert proc.returncode == 0, proc.stderr
        docs.append(read_document(tmp_path / name / "checkpoint" / "predictions.json"))
    season = np.asarray(docs[0]["columns"]["season"])
    for cal in ("none", "platt", "isotonic"):
        a, b = (np.asarray(d["p"][cal]) for d in docs)
        assert np.array_equal(a[season == 2019], b[season == 2019]), cal
        assert not np.array_equal(a[season == 2020], b[season == 2020]), cal


@pytest.mark.parametrize("change, code, message", [
    ({"compare": {"calibration": "beta"}}, 78, "unknown calibration 'beta' (valid: none, platt, isotonic)"),
    ({"compare": {"odds_col": "price"}}, 65, "odds column 'price' not in"),
    ({"compare": {"folds": [4]}}, 78, "compare.folds [4]: there are folds 1 to 3"),
    ({"compare": {"calibartion": "platt"}}, 78, "unknown compare key(s) calibartion"),
])
def test_a_bad_job_fails_permanently_with_one_line(data: Path, tmp_path: Path, change: dict[str, Any], code: int,
                                                   message: str) -> None:
    spec = spec_for(data, tmp_path)
    spec["compare"] = change["compare"]
    proc = run_job(spec, tmp_path)
    assert proc.returncode == code and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_odds_must_be_decimal(data: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(data)
    frame.loc[5, "odds_home"] = 0.8
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    proc = run_job(spec_for(bad, tmp_path), tmp_path)
    assert proc.returncode == 65 and "decimal odds, which are > 1; row 7 has 0.8" in proc.stderr, proc.stderr


def test_jobs_split_by_fold_join_into_the_whole_run(data: Path, tmp_path: Path) -> None:
    """One job per fold (compare.folds) gives the same predictions as one job for all;
    the coordinator reads a job's folder from its checkpoint alone, as copied home."""
    from coordinator.analysis.predictions import group

    whole, first, rest = (tmp_path / n for n in ("whole", "first", "rest"))
    for folder, folds in ((whole, None), (first, [1]), (rest, [2, 3])):
        folder.mkdir()
        spec = spec_for(data, folder, **({"folds": folds} if folds else {}))
        proc = run_job(spec, folder, "compare_job.py")
        assert proc.returncode == 0, proc.stderr
    (rest / "checkpoint" / "predictions.json").unlink()  # only the checkpoints: what an SSH host sends home
    joined = {e.calibration: e.runs[0] for e in group(load([first, rest]))}
    single = {p.calibration: p for p in load([whole])}
    for cal, p in single.items():
        assert np.array_equal(joined[cal].p, p.p) and np.array_equal(joined[cal].row, p.row)
    assert "step-00000002.ckpt" in joined["none"].source
    with pytest.raises(DataError, match="fold 1 is also in"):
        group(load([first, whole]))


@pytest.mark.slow
def test_sigterm_checkpoints_and_asks_to_be_requeued(data: Path, tmp_path: Path) -> None:
    """A scheduler's SIGTERM mid-run: the job finishes its fold, checkpoints, exits 75;
    its next attempt resumes there."""
    import signal

    spec = spec_for(data, tmp_path, "mlp")
    spec["params"] = {"epochs": 20, "hidden_size": 32}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, str(RUNNERS / "compare_job.py")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COORD_SPEC": str(tmp_path / "spec.json")})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("[coord-ckpt]"), first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert protocol.METRIC_PREFIX not in out and not (tmp_path / "checkpoint" / "predictions.json").exists()
    again = run_job(spec, tmp_path, "compare_job.py")
    assert again.returncode == 0 and "resuming after fold 1" in again.stderr, again.stderr
