"""A whole comparison on real small data: GLM, XGBoost, random forest and MLP, 2 seeds,
none / platt / isotonic, trained by the comparison job in one warm process (as a slot's
worker runs job after job), then every output written from the predictions files. The
numbers are checked against scikit-learn computed independently on the saved
predictions; the LaTeX compiles with pdflatex; the HTML is offline; a second run of the
outputs gives the same bytes."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from coordinator import resources
from coordinator.analysis.compare import write_comparison
from coordinator.analysis.summary import CompareOptions
from tests.compare_data import odds_csv

pytestmark = pytest.mark.xdist_group("compare-e2e")  # one worker: the module's fixtures are built once, not once per xdist worker

MODELS = {"glm": {"C": 0.5}, "xgboost": {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1},
          "random_forest": {"n_estimators": 60, "max_depth": 5}, "mlp": {"epochs": 8, "hidden_size": 16}}
SEEDS = (0, 1)
CALS = ("none", "platt", "isotonic")
DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import compare_job
codes = [compare_job.run(spec) for spec in json.load(open(sys.argv[2]))]
sys.exit(max(codes))
"""


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    data = odds_csv(root / "odds.csv")
    specs = [{"model": m, "params": p, "seed": s, "threads": 1,
              "data": {"path": str(data), "target": "home_win", "time_col": "season", "cv": "walk-forward",
                       "folds": 3, "task": "classification"},
              "compare": {"calibration": list(CALS), "odds_col": "odds_home"},
              "checkpoint_dir": str(root / "jobs" / f"{m}-{s}" / "checkpoint")}
             for m, p in MODELS.items() for s in SEEDS]
    (root / "specs.json").write_text(json.dumps(specs))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(resources.folder("runners")), str(root / "specs.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "jobs"


@pytest.fixture(scope="module")
def out(jobs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("outputs") / "compare"
    write_comparison([jobs], target, CompareOptions(models=tuple(MODELS), resamples=500, bootstrap_seed=3))
    return target


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_every_output_is_there(out: Path) -> None:
    names = set(_files(out))
    for model in MODELS:
        assert {f"{model}/{n}" for n in ("results.json", "metrics.csv", "per_season.csv", "predictions.csv")} <= names
        assert {f"figures/calibration_model_{model}.{e}" for e in ("pdf", "png")} <= names
    for cal in CALS:
        assert {f"figures/{k}_{cal}.{e}" for k in ("roc", "calibration") for e in ("pdf", "png")} <= names
    assert {"comparison.csv", "per_season.csv", "significance.csv", "preview.tex", "report.html",
            "tables/comparison.tex", "tables/significance.tex", "tables/per_season_auc.tex",
            "tables/per_season_brier.tex", "tables/per_season_roi.tex"} <= names
    assert all((out / n).read_bytes()[:5] == b"%PDF-" for n in names if n.endswith(".pdf"))


def _roi(frame: pd.DataFrame) -> float:
    bets = frame[frame["p"] * frame["odds"] > 1]
    return float(((bets["y"] * bets["odds"]) - 1).sum() / len(bets))


@pytest.mark.slow
def test_metrics_equal_scikit_learn_on_the_saved_predictions(out: Path) -> None:
    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == len(MODELS) * len(CALS)
    for model in MODELS:
        preds = pd.read_csv(out / model / "predictions.csv")
        seasons = pd.read_csv(out / model / "per_season.csv")
        for cal in CALS:
            by_seed: dict[str, list[float]] = {"auc": [], "brier": [], "logloss": [], "accuracy": [], "roi": []}
            for seed in SEEDS:
                f = preds[(preds["calibration"] == cal) & (preds["seed"] == seed)]
                assert len(f) == 360 and sorted(f["season"].unique()) == [2018, 2019, 2020]
                by_seed["auc"].append(skm.roc_auc_score(f["y"], f["p"]))
                by_seed["brier"].append(skm.brier_score_loss(f["y"], f["p"]))
                by_seed["logloss"].append(skm.log_loss(f["y"], f["p"], labels=[0, 1]))
                by_seed["accuracy"].append(skm.accuracy_score(f["y"], f["p"] >= 0.5))
                by_seed["roi"].append(_roi(f))
                for season, g in f.groupby("season"):
                    row = seasons[(seasons["calibration"] == cal) & (seasons["season"] == season)
                                  & (seasons["seed"] == str(seed))]
                    assert float(row["auc"].iloc[0]) == pytest.approx(skm.roc_auc_score(g["y"], g["p"]), abs=1e-12)
            row = table[(table["model"] == model) & (table["calibration"] == cal)].iloc[0]
            for m, values in by_seed.items():
                assert row[f"{m}_mean"] == pytest.approx(np.mean(values), abs=1e-12), (model, cal, m)
                assert row[f"{m}_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12), (model, cal, m)


@pytest.mark.slow
def test_the_tables_bold_the_best_and_compile(out: Path, tmp_path: Path) -> None:
    table = pd.read_csv(out / "comparison.csv")
    tex = (out / "tables" / "comparison.tex").read_text()
    body = [ln for ln in tex.splitlines() if r" \pm " in ln and ln.rstrip().endswith("\\\\")]
    assert len(body) == len(MODELS) * len(CALS)
    for metric, column, best in (("auc", 2, table["auc_mean"].idxmax()), ("brier", 3, table["brier_mean"].idxmin())):
        cells = [ln.split("&")[column] for ln in body]
        assert r"\mathbf{" in cells[best], (metric, cells[best])
        shown = f"{table.loc[best, metric + '_mean']:.3f}"
        assert all(r"\mathbf{" not in c or shown in c for c in cells)
    assert r"AUC $\uparrow$" in tex and r"Brier $\downarrow$" in tex and r"ROI (\%) $\uparrow$" in tex
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI: .ci/run must install texlive-latex-base")
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    work = tmp_path / "doc"
    shutil.copytree(out, work)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                           "preview.tex"], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (work / "preview.log").read_text(errors="replace")
    assert "Overfull" not in log and "Missing" not in log
    assert log.count("figures/") >= 10  # every figure was included
    assert (work / "preview.pdf").stat().st_size > 50_000


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.slow
def test_the_html_report_is_one_offline_file(out: Path) -> None:
    text = (out / "report.html").read_text()
    parser = _Links()
    parser.feed(text)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert len(images) == 10
    for src in images:
        assert src is not None and src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(a.get("href") is None for _, a in parser.tags)
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert text.count("<table>") == 5 and "Random forest" in text and "±" in text


@pytest.mark.slow
def test_regenerating_gives_the_same_bytes(jobs: Path, out: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_comparison([jobs], again, CompareOptions(models=tuple(MODELS), resamples=500, bootstrap_seed=3))
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    differ = [name for name in first if first[name] != second[name]]
    assert not differ
    assert b"CreationDate" not in first["figures/roc_none.pdf"]
    sig = pd.read_csv(out / "significance.csv")
    assert set(sig["resamples"]) <= {500} and set(sig["bootstrap_seed"]) == {3}
    assert all(math.isfinite(v) for v in sig["ci_low"])
