"""The comparison's outputs from synthetic predictions (no training): golden LaTeX, the
checks on predictions files, escaping, one seed, regression and k-fold data."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from coordinator.analysis import predictions
from coordinator.analysis.compare import write_comparison
from coordinator.analysis.summary import CompareOptions
from coordinator.errors import DataError
from tests.compare_data import synthetic_doc, synthetic_set, write_doc

GOLDEN = Path(__file__).parent / "golden" / "compare"
OPTIONS = CompareOptions(models=("good", "fair", "noise"), resamples=300, bootstrap_seed=1,
                         caption_prefix="Chapter 4: ", label_prefix="ch4:")


@pytest.fixture(scope="module")
def synthetic_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_comparison(synthetic_set(root / "in"), root / "out", OPTIONS)
    return root / "out"


@pytest.mark.parametrize("name", ["comparison", "per_season_auc", "per_season_roi", "significance"])
def test_tables_match_their_golden_files(synthetic_out: Path, name: str) -> None:
    text = (synthetic_out / "tables" / f"{name}.tex").read_text()
    golden = GOLDEN / f"{name}.tex"
    if os.environ.get("COORD_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_synthetic_preview_compiles(synthetic_out: Path, tmp_path: Path) -> None:
    assert r"\label{ch4:tab:comparison}" in (synthetic_out / "tables" / "comparison.tex").read_text()
    out = tmp_path / "doc"
    shutil.copytree(synthetic_out, out)
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                           "preview.tex"], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def _two(tmp_path: Path, **changes) -> list[Path]:  # type: ignore[no-untyped-def]
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0], dtype=float)
    seasons = [1, 1, 1, 1, 2, 2, 2, 2]
    a = synthetic_doc("a", 0, {"none": np.linspace(0.1, 0.9, 8)}, y, seasons)
    b = synthetic_doc("b", 0, {"none": np.linspace(0.2, 0.8, 8)}, y, seasons)
    for key, value in changes.items():
        b["columns"][key] = value
    return [write_doc(tmp_path / "a.json", a), write_doc(tmp_path / "b.json", b)]


def test_predictions_that_cannot_be_compared_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="tested on other rows than a / none / seed 0"):
        predictions.group(predictions.load(_two(tmp_path, row=[0, 1, 2, 3, 4, 5, 6, 9])))
    with pytest.raises(DataError, match="the labels differ"):
        predictions.group(predictions.load(_two(tmp_path, y=[1, 1, 0, 1, 1, 0, 1, 0])))
    a, _ = _two(tmp_path)
    with pytest.raises(DataError, match="a / none / seed 0: fold 1 is also in"):
        predictions.group(predictions.load([a, a]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "coord-predictions/1", "model": "x"}))
    with pytest.raises(DataError, match=r"bad.json: malformed predictions file"):
        predictions.load([bad])
    bad.write_text("{}")
    with pytest.raises(DataError, match="not a predictions file"):
        predictions.load([bad])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no predictions.json .or comparison job checkpoint. under"):
        predictions.load([tmp_path / "empty"])
    doc = json.loads(a.read_text())
    doc["p"]["none"][0] = 1.5
    with pytest.raises(DataError, match="finite probabilities in"):
        predictions.load([write_doc(tmp_path / "c.json", doc)])


def _checkpoint(path: Path, state: object) -> Path:
    import hashlib

    payload = pickle.dumps(state)
    path.write_bytes(b"COORDCK1 %s key\n" % hashlib.sha256(payload).hexdigest().encode() + payload)
    return path


def test_a_jobs_checkpoint_is_read_as_plain_data_only(tmp_path: Path) -> None:
    a, _ = _two(tmp_path)
    doc = json.loads(a.read_text())
    ok = _checkpoint(tmp_path / "step-00000002.ckpt", {"document": doc})
    assert predictions.read_document(ok) == doc
    evil = _checkpoint(tmp_path / "step-00000003.ckpt", {"document": io.BytesIO(b"x")})  # a class: refused
    with pytest.raises(DataError, match="not a comparison job's checkpoint"):
        predictions.read_document(evil)
    damaged = tmp_path / "step-00000004.ckpt"
    damaged.write_bytes(ok.read_bytes()[:-3])
    with pytest.raises(DataError, match="damaged checkpoint"):
        predictions.read_document(damaged)


def test_names_are_escaped_and_kept_inside_the_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(40) < 0.5).astype(float)
    nasty = r"../\input{/etc/passwd}_50%"
    paths = [write_doc(tmp_path / f"{i}.json", synthetic_doc(m, 0, {"none": rng.random(40)}, y, [1] * 20 + [2] * 20))
             for i, m in enumerate((nasty, "plain"))]
    out = tmp_path / "out"
    files = write_comparison(paths, out, CompareOptions(resamples=50))
    assert all(out in p.parents for p in files.values())
    tex = files["comparison.tex"].read_text()
    assert r"\textbackslash{}input\{/etc/passwd\}\_50\%" in tex and r"\input{/etc" not in tex
    html = files["report.html"].read_text()
    assert r"\input{/etc/passwd}_50%" in html and "<input" not in html


def test_one_seed_shows_no_spread_and_regression_gets_its_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(50, 10, 60)
    seasons = [1] * 30 + [2] * 30
    paths = [write_doc(tmp_path / f"{m}.json", synthetic_doc(m, 0, {"none": y + rng.normal(0, s, 60)}, y, seasons,
                                                             task="regression")) for m, s in (("a", 2.0), ("b", 5.0))]
    out = tmp_path / "out"
    files = write_comparison(paths, out)
    tex = files["comparison.tex"].read_text()
    assert r"RMSE $\downarrow$" in tex and r"$R^2$ $\uparrow$" in tex and r"\pm" not in tex.split("midrule")[1]
    assert "one seed" in tex and "significance.tex" not in files and not any(k.endswith(".pdf") for k in files)
    assert (out / "per_season.csv").read_text().startswith("model,calibration,season,rmse_mean,rmse_std,")


def test_folds_without_seasons_are_the_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(90) < 0.5).astype(float)
    docs = []
    for m in ("a", "b"):
        doc = synthetic_doc(m, 0, {"none": rng.random(90)}, y, [1] * 30 + [2] * 30 + [3] * 30)
        doc["columns"]["season"] = [None] * 90
        docs.append(write_doc(tmp_path / f"{m}.json", doc))
    files = write_comparison(docs, tmp_path / "out", CompareOptions(resamples=50))
    assert "by fold block" in files["significance.tex"].read_text()
    assert "3 test folds" in files["comparison.tex"].read_text()
