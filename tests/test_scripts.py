"""The shell SOP scripts, run as a user would (through the installed ``coord``), on small data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator import resources

ROOT = resources.folder("runners").parent


def _env(tmp_path: Path) -> dict[str, str]:
    # `coord` as the scripts call it: this interpreter's, so the suite tests this checkout
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "coord").write_text(f"#!/bin/sh\nexec {sys.executable} -m coordinator \"$@\"\n")
    (bindir / "coord").chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "COORD_RUNS_DIR": str(tmp_path / "runs"),
            "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_parallel_ensemble_script_trains_every_model(tmp_path: Path, small_csv: Path) -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "parallel_ensemble_train.sh"), "--data", str(small_csv),
                           "--target", "home_win", "--time-col", "season", "--folds", "2", "--parallel", "2",
                           "--quiet"], env={**_env(tmp_path), "TRIALS": "1"}, capture_output=True, text=True,
                          cwd=tmp_path, timeout=230)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    table = (run / "report" / "tables" / "model_summary.tex").read_text()
    for model in ("glm", "xgboost", "random\\_forest", "mlp"):
        assert model in table
    assert "model_summary.tex" in proc.stdout


@pytest.mark.timeout(120)
def test_sop_search_script_plans_searches_and_reports(tmp_path: Path, small_csv: Path) -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "sop_hyperparam_search.sh"), "glm", "--data", str(small_csv),
                           "--target", "home_win", "--time-col", "season", "--folds", "2", "--trials", "2",
                           "--quiet"], env=_env(tmp_path), capture_output=True, text=True, cwd=tmp_path, timeout=110)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "report" / "trials.csv").read_text().count("\n") == 3  # header and two trials
    assert "[1/3] plan" in proc.stdout and "results:" in proc.stdout
