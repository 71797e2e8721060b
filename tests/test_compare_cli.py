"""``coord compare`` through the CLI on small real data: every job run by the coordinator's
loop (one trial each), the outputs written into RUN/compare/, their metrics recomputed
with scikit-learn from the predictions the jobs saved, a rebuild without retraining that
gives the same bytes, and bad input refused in one line before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from coordinator.analysis.predictions import read_document
from tests.compare_data import odds_csv

pytestmark = pytest.mark.xdist_group("compare-cli")  # one worker: the module's fixtures are built once, not once per xdist worker

MODELS = ("glm", "random_forest")
CALS = ("none", "platt")
SEEDS = (0, 1)


def coord(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def compare_args(data: Path, run: Path | None, *extra: str) -> list[str]:
    """GLM and a small random forest, none and platt, 2 seeds, 2 test seasons (run None: in runs/)."""
    return ["compare", "--model", "glm", "--model", "random_forest", "--calibration", "none", "--calibration", "platt",
            "--seeds", "2", "--data", str(data), "--target", "home_win", "--time-col", "season", "--folds", "2",
            "--odds-col", "odds_home", "--param", "random_forest.n_estimators=30", "--resamples", "300",
            *(["--run-dir", str(run)] if run is not None else []), *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return odds_csv(tmp_path_factory.mktemp("cmpcli") / "odds.csv")


@pytest.fixture(scope="module")
def compared(data: Path) -> tuple[Path, dict[str, object]]:
    run = data.parent / "run"
    proc = coord(*compare_args(data, run, "--json"), cwd=data.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, json.loads(proc.stdout.strip().splitlines()[-1])


def _saved(run: Path) -> dict[tuple[str, int], dict[str, object]]:
    """Each job's predictions as the job saved them (its checkpoint folder), by (entry, seed)."""
    out = {}
    for path in sorted(run.glob("trials/*/checkpoint/predictions.json")):
        doc = read_document(path)
        out[(str(doc["model"]), int(doc["seed"]))] = doc  # type: ignore[call-overload]
    return out


@pytest.mark.slow
def test_every_job_is_one_trial_and_every_output_is_written(compared: tuple[Path, dict[str, object]]) -> None:
    run, summary = compared
    assert summary["complete"] == 4 and summary["failed"] == 0 and summary["retries"] == 0
    trials = [json.loads(p.read_text()) for p in sorted(run.glob("trials/*/result.json"))]
    assert sorted((t["study"], t["seed"]) for t in trials) == sorted(
        (f"{m}-seed{s}", s) for m in MODELS for s in SEEDS)
    spec = json.loads(next(run.glob("trials/*/attempt-1/spec.json")).read_text())
    assert spec["compare"]["calibration"] == list(CALS) and spec["compare"]["odds_col"] == "odds_home"
    assert sorted(_saved(run)) == [(m, s) for m in MODELS for s in SEEDS]  # the models paired on the same seeds
    assert all(t["params"].get("n_estimators") == 30 for t in trials if t["model"] == "random_forest")
    out = run / "compare"
    for model in MODELS:
        for name in ("results.json", "metrics.csv", "per_season.csv", "predictions.csv"):
            assert (out / model / name).is_file(), (model, name)
    for name in ("comparison.csv", "per_season.csv", "significance.csv", "configs.json", "preview.tex", "report.html",
                 "tables/comparison.tex", "tables/significance.tex", "tables/per_season_auc.tex",
                 "figures/roc_none.pdf", "figures/roc_platt.png", "figures/calibration_platt.pdf",
                 "figures/calibration_model_glm.pdf"):
        assert (out / name).is_file(), name
    assert summary["files"]["compare:report.html"] == str(out / "report.html")  # type: ignore[index]
    configs = json.loads((out / "configs.json").read_text())["configs"]
    assert [(c["name"], c["source"]) for c in configs] == [(m, "the model's defaults") for m in MODELS]


def _roi(y: np.ndarray, p: np.ndarray, odds: np.ndarray) -> float:
    bet = p * odds > 1
    return float(np.sum(y[bet] * odds[bet] - 1) / bet.sum())


@pytest.mark.slow
def test_the_metrics_are_scikit_learns_on_the_saved_predictions(compared: tuple[Path, dict[str, object]]) -> None:
    run, _ = compared
    saved = _saved(run)
    table = pd.read_csv(run / "compare" / "comparison.csv")
    assert len(table) == len(MODELS) * len(CALS)
    for model in MODELS:
        for cal in CALS:
            values: dict[str, list[float]] = {"auc": [], "brier": [], "logloss": [], "roi": []}
            for seed in SEEDS:
                doc = saved[(model, seed)]
                cols = doc["columns"]  # type: ignore[index]
                y, odds = np.asarray(cols["y"]), np.asarray(cols["odds"], dtype=float)  # type: ignore[index]
                p = np.asarray(doc["p"][cal])  # type: ignore[index]
                assert sorted(set(cols["season"])) == [2019, 2020] and len(y) == 240  # type: ignore[index]
                values["auc"].append(skm.roc_auc_score(y, p))
                values["brier"].append(skm.brier_score_loss(y, p))
                values["logloss"].append(skm.log_loss(y, p, labels=[0, 1]))
                values["roi"].append(_roi(y, p, odds))
            row = table[(table["model"] == model) & (table["calibration"] == cal)].iloc[0]
            for metric, got in values.items():
                assert row[f"{metric}_mean"] == pytest.approx(np.mean(got), abs=1e-12), (model, cal, metric)
                assert row[f"{metric}_std"] == pytest.approx(np.std(got, ddof=1), abs=1e-12), (model, cal, metric)
    # what the loop recorded for each job is its own metric line: the same AUC
    for res in (json.loads(p.read_text()) for p in run.glob("trials/*/result.json")):
        doc = saved[(res["model"], res["seed"])]
        auc = skm.roc_auc_score(doc["columns"]["y"], doc["p"]["platt"])  # type: ignore[index]
        assert res["metrics"]["auc_platt"] == pytest.approx(auc, abs=1e-12)


@pytest.mark.slow
def test_coord_report_rebuilds_the_comparison_without_training(compared: tuple[Path, dict[str, object]]) -> None:
    run, _ = compared
    before = {p: p.read_bytes() for p in sorted((run / "compare").rglob("*")) if p.is_file()}
    trials = sorted(run.glob("trials/*/attempt-*"))
    (run / "compare" / "comparison.csv").unlink()
    proc = coord("report", str(run), cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = {p: p.read_bytes() for p in sorted((run / "compare").rglob("*")) if p.is_file()}
    assert after == before and sorted(run.glob("trials/*/attempt-*")) == trials
    assert "compare:report.html" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "glm", "--model", "xgbost"], "--model: unknown model type 'xgbost'"),
    (["--model", "glm", "--from", "nowhere"], "--from: nowhere is not a coord run directory"),
    (["--model", "glm", "--from", "."], "--from: . is not a coord run directory"),
    (["--model", "glm", "--calibration", "beta"], "--calibration: unknown calibration 'beta' (valid: isotonic, none, "
                                                  "platt)"),
    (["--model", "glm", "--odds-col", "price"], "--odds-col: no column 'price' (valid:"),
    (["--model", "glm", "--top", "2"], "--top: --top K takes the best K configurations of searches"),
    (["--model", "glm", "--param", "glm.depth=3"], "--param: 'glm.depth=3': glm has no parameter 'depth'"),
    (["--model", "glm", "--param", "mlp.epochs=3"], "--param: 'mlp.epochs=3': 'mlp' is not compared"),
    ([], "--model: name the models to compare with --model"),
])
def test_bad_input_is_one_readable_error_and_writes_nothing(data: Path, tmp_path: Path, args: list[str],
                                                            message: str) -> None:
    proc = coord("compare", *args, "--data", str(data), "--target", "home_win", "--time-col", "season",
                 cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("coord: error: ") and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_the_built_in_data_has_no_odds_column(tmp_path: Path) -> None:
    proc = coord("compare", "--model", "glm", "--odds-col", "odds_home", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "--odds-col: the built-in data set has no odds column" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_configurations_come_from_a_searchs_best_trials(data: Path, tmp_path: Path) -> None:
    """--from RUN --top 2: the search's two best XGBoost trials, each with the boosting rounds
    it was scored at (its best step), named xgboost and xgboost-top2; GLM, which the search
    did not run, with its defaults, said in the summary."""
    (tmp_path / "space.yaml").write_text("params:\n  n_estimators: {type: int, low: 20, high: 60}\n"
                                         "  learning_rate: {type: float, low: 0.05, high: 0.5, log: true}\n")
    searched = coord("search", "--model", "xgboost", "--space", "space.yaml", "--trials", "3", "--data", str(data),
                     "--target", "home_win", "--time-col", "season", "--folds", "2", "--run-dir", "search",
                     "--quiet", cwd=tmp_path)
    assert searched.returncode == 0, searched.stderr[-2000:]
    trials = sorted((json.loads(p.read_text()) for p in (tmp_path / "search").glob("trials/*/result.json")),
                    key=lambda r: -r["values"][0])
    proc = coord("compare", "--from", "search", "--model", "xgboost", "--model", "glm", "--top", "2",
                 "--calibration", "none", "--data", str(data), "--target", "home_win", "--time-col", "season",
                 "--folds", "2", "--resamples", "100", "--run-dir", "cmp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: glm: no completed trial in the --from runs; its defaults are compared" in proc.stdout
    configs = json.loads((tmp_path / "cmp" / "compare" / "configs.json").read_text())["configs"]
    assert [c["name"] for c in configs] == ["xgboost", "xgboost-top2", "glm"]
    for config, trial in zip(configs, trials[:2], strict=False):
        assert config["params"] == {**trial["params"], "n_estimators": int(trial["metrics"]["best_step"])}
        assert config["source"].startswith(f"search trial {trial['number']} (auc ")
    jobs = {json.loads(p.read_text())["study"]: json.loads(p.read_text())
            for p in (tmp_path / "cmp").glob("trials/*/attempt-1/recipe.json")}
    assert jobs["xgboost-top2-seed0"]["params"] == configs[1]["params"] and jobs["glm-seed0"]["params"] == {}
    table = pd.read_csv(tmp_path / "cmp" / "compare" / "comparison.csv")
    assert list(table["model"]) == ["xgboost", "xgboost-top2", "glm"]


@pytest.mark.slow
def test_split_folds_runs_a_job_per_fold_and_gives_the_same_comparison(data: Path, tmp_path: Path) -> None:
    base = ["compare", "--model", "glm", "--calibration", "none", "--calibration", "isotonic", "--data", str(data),
            "--target", "home_win", "--time-col", "season", "--folds", "2", "--resamples", "200", "--quiet"]
    whole = coord(*base, "--run-dir", "whole", cwd=tmp_path)
    split = coord(*base, "--split-folds", "--run-dir", "split", cwd=tmp_path)
    assert whole.returncode == 0 and split.returncode == 0, (whole.stderr[-2000:], split.stderr[-2000:])
    studies = sorted(json.loads(p.read_text())["study"] for p in (tmp_path / "split").glob("trials/*/result.json"))
    assert studies == ["glm-seed0-fold1", "glm-seed0-fold2"]
    specs = sorted(json.loads(p.read_text())["compare"]["folds"]
                   for p in (tmp_path / "split").glob("trials/*/attempt-1/spec.json"))
    assert specs == [[1], [2]]
    for name in ("comparison.csv", "per_season.csv", "significance.csv", "tables/comparison.tex"):
        assert (tmp_path / "split" / "compare" / name).read_bytes() == \
            (tmp_path / "whole" / "compare" / name).read_bytes(), name
