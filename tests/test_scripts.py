"""The shell SOP scripts and the dissertation Makefile (docs/examples), run as a user would
(through the installed ``coord``), on small data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator import resources
from tests.compare_data import odds_csv

pytestmark = pytest.mark.xdist_group("sop-scripts")  # one worker: the module's fixtures are built once, not once per xdist worker

ROOT = resources.folder("runners").parent


def _env(tmp_path: Path) -> dict[str, str]:
    # `coord` as the scripts call it: this interpreter's, so the suite tests this checkout
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "coord").write_text(f"#!/bin/sh\nexec {sys.executable} -m coordinator \"$@\"\n")
    (bindir / "coord").chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "COORD_RUNS_DIR": str(tmp_path / "runs"),
            "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One search through the SOP script and one comparison through the ensemble script,
    in one runs folder, on small data with the odds of a home win."""
    base = tmp_path_factory.mktemp("scripts")
    data = odds_csv(base / "games.csv")
    search = subprocess.run(["bash", str(ROOT / "scripts" / "sop_hyperparam_search.sh"), "glm", "--data", str(data),
                             "--target", "home_win", "--time-col", "season", "--folds", "2", "--trials", "2",
                             "--quiet"], env=_env(base), capture_output=True, text=True, cwd=base, timeout=200)
    assert search.returncode == 0, search.stderr[-2000:]
    (base / "sop.out").write_text(search.stdout)
    ensemble = subprocess.run(["bash", str(ROOT / "scripts" / "parallel_ensemble_train.sh"), "--data", str(data),
                               "--target", "home_win", "--time-col", "season", "--folds", "2", "--odds-col",
                               "odds_home", "--calibration", "none", "--calibration", "isotonic", "--seeds", "2",
                               "--param", "random_forest.n_estimators=30", "--resamples", "100", "--parallel", "2",
                               "--quiet"], env={**_env(base), "MODELS": "glm random_forest"}, capture_output=True,
                              text=True, cwd=base, timeout=300)
    assert ensemble.returncode == 0, ensemble.stderr[-2000:]
    (base / "ensemble.out").write_text(ensemble.stdout)
    return base


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sop_search_script_plans_searches_aggregates_and_shows_the_best(made: Path) -> None:
    out = (made / "sop.out").read_text()
    (run,) = (made / "runs").glob("glm-2*")
    assert (run / "report" / "trials.csv").read_text().count("\n") == 3  # header and two trials
    assert [s for s in ("[1/4 plan]", "[2/4 search]", "[3/4 aggregate]", "[4/4 best configuration]") if s in out] \
        == ["[1/4 plan]", "[2/4 search]", "[3/4 aggregate]", "[4/4 best configuration]"]
    best = json.loads((run / "report" / "best.json").read_text())["glm"]
    assert f"trial {best['number']}" in out and "results:" in out  # coord show of the best trial
    assert (made / "runs" / "glm-all" / "tables").is_dir()  # every glm run merged


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_parallel_ensemble_script_compares_the_chosen_models(made: Path) -> None:
    (run,) = (made / "runs").glob("ensemble-*")
    table = (run / "compare" / "comparison.csv").read_text()
    assert [line.split(",")[:2] for line in table.splitlines()[1:]] == [
        ["glm", "none"], ["glm", "isotonic"], ["random_forest", "none"], ["random_forest", "isotonic"]]
    results = [json.loads(p.read_text()) for p in run.glob("trials/*/result.json")]
    assert len(results) == 4 and {r["status"] for r in results} == {"COMPLETE"}
    assert (run / "compare" / "tables" / "comparison.tex").is_file()
    assert f"comparison: {run}/compare/" in (made / "ensemble.out").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_dissertation_makefile_rebuilds_every_table_without_training(made: Path, tmp_path: Path) -> None:
    runs = made / "runs"
    trained = {p: p.stat().st_mtime_ns for p in runs.glob("*/trials/*/**/*") if p.is_file()}
    out = tmp_path / "generated"
    proc = subprocess.run(["make", "-s", "-f", str(ROOT / "docs" / "examples" / "Makefile"), "tables",
                           f"RUNS={runs}", f"OUT={out}", f"COORD={sys.executable} -m coordinator"],
                          env=_env(tmp_path), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (ensemble,) = runs.glob("ensemble-*")
    (search,) = runs.glob("glm-2*")
    for name in ("tables/comparison.tex", "tables/significance.tex", "figures/roc_isotonic.pdf",
                 "figures/calibration_none.png", "comparison.csv"):
        assert (out / ensemble.name / name).is_file(), name
    assert (out / search.name / "trials.csv").is_file() and (out / "searches" / "trials.csv").is_file()
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/trials/*/**/*") if p.is_file()} == trained  # no retraining
    again = tmp_path / "again"
    subprocess.run(["make", "-s", "-f", str(ROOT / "docs" / "examples" / "Makefile"), "tables", f"RUNS={runs}",
                    f"OUT={again}", f"COORD={sys.executable} -m coordinator"], env=_env(tmp_path), check=True,
                   capture_output=True, cwd=tmp_path, timeout=300)
    assert (again / ensemble.name / "tables" / "comparison.tex").read_bytes() == \
        (out / ensemble.name / "tables" / "comparison.tex").read_bytes()
    missing = subprocess.run(["make", "-s", "-f", str(ROOT / "docs" / "examples" / "Makefile"), "tables",
                              f"RUNS={tmp_path / 'nowhere'}"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode != 0 and "make tables: no runs folder" in missing.stderr


@pytest.mark.parametrize("script, args, env, message", [
    ("sop_hyperparam_search.sh", ["xgbost"], {}, 'sop_hyperparam_search: step "1/4 plan" failed (exit 2)'),
    ("parallel_ensemble_train.sh", [], {"MODELS": "glm xgbost"},
     "parallel_ensemble_train: coord compare failed (exit 2); the error is above; nothing was run"),
])
def test_a_failing_script_exits_non_zero_naming_what_failed(tmp_path: Path, script: str, args: list[str],
                                                            env: dict[str, str], message: str) -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], env={**_env(tmp_path), **env},
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "unknown model type 'xgbost'" in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
