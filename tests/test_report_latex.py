"""The search report's LaTeX, publication-ready: golden files of each table (a real grid
search with a deterministic objective: labelled headers, one decimals per column, the best
of each metric in bold, caption and label prefixes), a real pdflatex compile of every
table and of the preview document, and `coord report`'s prefixes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli import main
from coordinator.reporting import latex
from coordinator.reporting.tables import standalone_document

GOLDEN = Path(__file__).parent / "golden" / "report"
# loss < 0 for x near 0.3 (a real minus sign), auc up with x: the two bold cells are in different rows
BODY = ("print('[coord-metric] {\"loss\": %r, \"auc\": %r}' % ((p['x'] - 0.3) ** 2 - 0.05, "
        "0.5 + p['x'] / 3 + (0.01 if p['kind'] == 'a_b' else 0)))\n")
SPACE = """\
params:
  x: {type: float, low: 0, high: 1, grid: [0.0, 0.125, 0.3, 0.6, 1.0], label: 'Rate $x$ (\\%)'}
  kind: {type: categorical, choices: [a_b, c]}
"""
HOSTS = [{"platform": "local", "model": "custom", "trials": 10, "attempts": 10, "busy_s": 12.5,
          "utilisation": "41.7%", "median_s": 1.203},
         {"platform": "gpu_box", "model": "xgboost", "trials": 3, "attempts": 4, "busy_s": 130.25,
          "utilisation": "8.0%", "median_s": 30.0}]


def _coord(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def grid_run(runs: Path, script, space_file) -> Path:  # type: ignore[no-untyped-def]
    run = runs / "grid"
    _coord("search", "--command", script(BODY), "--space", space_file(SPACE), "--metric", "loss", "--metric", "auc",
           "--sampler", "grid", "--parallel", "1", "--quiet", "--run-dir", str(run),
           "--caption-prefix", "Chapter 5: ", "--label-prefix", "ch5:")
    return run


def _golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("COORD_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), name


def _pdflatex(folder: Path, doc: str) -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI: .ci/run must install texlive-latex-base")
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", doc],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (folder / doc).with_suffix(".pdf").stat().st_size > 1000
    log = (folder / doc).with_suffix(".log").read_text(errors="replace")
    assert "Overfull" not in log and "Undefined control sequence" not in log and "Missing" not in log


def test_search_tables_match_their_golden_files(grid_run: Path, tmp_path: Path) -> None:
    tables = grid_run / "report" / "tables"
    for name in ("top_custom.tex", "model_summary.tex", "pareto_custom.tex", "preview.tex"):
        _golden(name, (tables / name).read_text())
    _golden("hosts.tex", latex.hosts_table(HOSTS, ("Chapter 5: ", "ch5:")))
    top = (tables / "top_custom.tex").read_text()
    assert "Rate $x$ (\\%)" in top and "kind" in top  # the label as LaTeX; a name without one, escaped
    # the best loss (two trials tie at the shown decimals) and the best AUC; a minus in math mode
    assert top.count(r"\mathbf{") == 3 and r"$\mathbf{-0.0500}$" in top and "$-0.0194$" in top
    # the run keeps the label and the prefixes: a rebuild gives the same bytes
    cfg = json.loads((grid_run / "run.json").read_text())
    assert cfg["studies"][0]["space"]["params"]["x"]["label"] == "Rate $x$ (\\%)"
    assert (cfg["options"]["caption_prefix"], cfg["options"]["label_prefix"]) == ("Chapter 5: ", "ch5:")
    before = {p.name: p.read_bytes() for p in tables.iterdir()}
    shutil.rmtree(grid_run / "report")
    _coord("report", str(grid_run))
    assert {p.name: p.read_bytes() for p in tables.iterdir()} == before
    # the hosts golden compiles on its own; the preview inputs every table of the run
    (tmp_path / "hosts.tex").write_text((GOLDEN / "hosts.tex").read_text())
    (tmp_path / "doc.tex").write_text(standalone_document([tmp_path / "hosts.tex"]))
    _pdflatex(tmp_path, "doc.tex")
    copy = tmp_path / "report"
    shutil.copytree(grid_run / "report", copy)
    _pdflatex(copy / "tables", "preview.tex")


def test_report_prefixes_override_the_searchs(grid_run: Path) -> None:
    _coord("report", str(grid_run), "--caption-prefix", "Appendix B: ", "--label-prefix", "appB:")
    top = (grid_run / "report" / "tables" / "top_custom.tex").read_text()
    assert r"\caption{Appendix B: Top 10 of 10" in top and r"\label{appB:tab:top-custom}" in top
    _coord("report", str(grid_run))  # without them: the search's again
    assert r"\label{ch5:tab:top-custom}" in (grid_run / "report" / "tables" / "top_custom.tex").read_text()


def test_preview_shows_every_figure_pdf(grid_run: Path, tmp_path: Path, with_plots: None) -> None:
    _coord("report", str(grid_run))
    report = grid_run / "report"
    preview = (report / "tables" / "preview.tex").read_text()
    pdfs = sorted(p.name for p in (report / "figures").glob("*.pdf"))
    assert pdfs and all(f"{{../figures/{name}}}" in preview for name in pdfs)
    assert r"\label{ch5:fig:history-custom}" in preview and r"\input{../figures/pareto_custom.tex}" in preview
    shutil.copytree(report, tmp_path / "report")
    _pdflatex(tmp_path / "report" / "tables", "preview.tex")


@pytest.mark.parametrize(("values", "decimals"), [([0.84, 0.8395, 0.8], 4), ([3, 5.0, 7], 0), ([0.3, 0.0012], 4),
                                                  ([0.3, 0.00123], 5), ([123456.7, 2.5], 1), ([41.7, 8.0], 1),
                                                  ([12.5, 130.25], 1), ([1 / 3, 0.5, None, float("nan")], 4)])
def test_one_number_of_decimals_per_column(values: list[float], decimals: int) -> None:
    assert latex.decimals(values) == decimals
    cells, numeric = latex.column_cells(values, "maximize")
    assert numeric and len({len(c.strip("$").removeprefix(r"\mathbf{").rstrip("}").partition(".")[2])
                            for c in cells if c.startswith("$")}) == 1


def test_best_is_bold_by_direction_and_ties_at_the_shown_decimals() -> None:
    cells, _ = latex.column_cells([0.25, 0.1, 0.10001, None], "minimize")
    assert cells == ["$0.2500$", r"$\mathbf{0.1000}$", r"$\mathbf{0.1000}$", ""]
    assert latex.column_cells([1, 2], None)[0] == ["$1$", "$2$"]  # not a metric: nothing bold
    assert latex.column_cells(["a_b", 0.5], "maximize") == (["a\\_b", "0.5"], False)  # a categorical: text


def test_labels_default_for_metrics_and_built_in_parameters() -> None:
    assert latex.metric_header("r2") == "$R^2$" and latex.metric_header("logloss") == "Log loss"
    assert latex.metric_header("val_loss") == "val\\_loss"
    assert latex.param_header("learning_rate", {}, "xgboost") == r"Learning rate $\eta$"
    assert latex.param_header("learning_rate", {}, None) == "learning\\_rate"  # a custom command: its name
    assert latex.param_header("lr", {"label": "$\\alpha$"}, "mlp") == "$\\alpha$"


def test_the_latex_commands_in_the_docs_run_as_shown(runs: Path) -> None:
    """docs/usage.md, LaTeX tables: a GLM search with the prefixes, then its report with others."""
    import shlex

    text = (Path(__file__).parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("coord ") and "runs/glm-thesis" in ln]
    assert len(lines) == 2 and lines[0].startswith("coord search") and lines[1].startswith("coord report")
    tables = Path("runs/glm-thesis/report/tables")
    _coord(*shlex.split(lines[0])[1:])
    top = (tables / "top_glm.tex").read_text()
    assert r"\caption{Chapter 4: Top 4 of 4" in top and r"\label{ch4:tab:top-glm}" in top
    assert "$C$ & L1 ratio & AUC" in top  # the built-in GLM's labels, the metric's
    _coord(*shlex.split(lines[1])[1:])
    assert r"\label{appB:tab:top-glm}" in (tables / "top_glm.tex").read_text()
    assert r"\input{top_glm.tex}" in (tables / "preview.tex").read_text()
