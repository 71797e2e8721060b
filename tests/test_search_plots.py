"""The search plots of a run's report (issue 11): real searches on small scripts, real
files. Each plot is a valid PDF and PNG, the timeline shows the pruned trials where they
ran, fANOVA from the records agrees with Optuna's own study, regenerating gives the same
bytes, --figure-width sets the PNG's width, a failing plot is one warning line, and the
commands docs/usage.md shows for the plots run as shown."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from coordinator.reporting import plotdata, plots
from coordinator.reporting.tables import write_report
from coordinator.store.rundir import RunStore

ROOT = Path(__file__).resolve().parents[1]
STUDY_PLOTS = ("history", "importance", "parallel", "slice")
# x above 0.5 is pruned at its first report (x + 1/step > 1.5); the rest complete
STEPS = """
    for step in range(1, 6):
        print(f"step={step} val_loss={p['x'] + p['lr'] * p['depth'] + 1.0 / step}", flush=True)
        time.sleep(0.03)
"""
SPACE = ("params:\n  x: {type: float, low: 0, high: 1}\n  lr: {type: float, low: 0.001, high: 0.1, log: true}\n"
         "  depth: {type: int, low: 1, high: 4}\n")

pytestmark = pytest.mark.usefixtures("with_plots")  # the plots are off for the other tests


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_pdf(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), path
    assert b"CreationDate" not in data and b"Producer" not in data  # no dates or versions: same bytes
    if shutil.which("pdftoppm"):
        out = tmp_path / path.stem
        subprocess.run(["pdftoppm", "-png", "-r", "30", "-singlefile", str(path), str(out)], check=True,
                       capture_output=True, timeout=60)
        assert png_size(out.with_suffix(".png"))[0] > 0


@pytest.fixture
def pruned_run(runs: Path, script, space_file) -> Path:
    out = run_search(SearchOptions(command=script(STEPS), space=space_file(SPACE), metrics=("val_loss",),
                                   sampler="random", trials=12, parallel=2, seed=1, pruner="threshold",
                                   prune_threshold=1.5, run_dir=str(runs / "pruned")))
    assert out["pruned"] >= 1 and out["complete"] >= plotdata.MIN_IMPORTANCE_TRIALS, out
    return Path(out["run_dir"])


def test_every_plot_is_a_valid_pdf_and_png(pruned_run: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    figures = pruned_run / "report" / "figures"
    stems = [f"{k}_custom" for k in STUDY_PLOTS] + ["timeline"]
    assert sorted(p.name for p in figures.iterdir()) == sorted(
        [f"{s}.{ext}" for s in stems for ext in ("pdf", "png")] + ["importance_custom.json"])
    for stem in stems:
        width, height = png_size(figures / f"{stem}.png")
        assert width == round(plots.FIGURE_WIDTH * 150) and imread(figures / f"{stem}.png").shape[:2] == (height, width)
        check_pdf(figures / f"{stem}.pdf", tmp_path)
    assert not (figures / "pareto_custom.pdf").exists()  # one objective: no front
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    doc = tmp_path / "plots.tex"  # the PDFs as a thesis uses them: \includegraphics into a column
    doc.write_text("\\documentclass{article}\n\\usepackage{graphicx}\n\\begin{document}\n" + "".join(
        f"\\includegraphics[width=\\linewidth]{{{figures / s}.pdf}}\\clearpage\n" for s in stems) + "\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Output written on plots.pdf (5 pages" in proc.stdout.replace("\n", "")


def test_the_timeline_shows_every_attempt_and_the_pruned_trials(pruned_run: Path) -> None:
    store = RunStore.open(pruned_run)
    bars = plotdata.timeline(store)
    results = {rec.number: rec.result for rec in store.trials() if rec.result}
    pruned = {n for n, r in results.items() if r.status.value == "PRUNED"}
    assert {b.number for b in bars if b.status == "PRUNED"} == pruned and pruned
    assert {b.number for b in bars if b.status == "COMPLETE"} == set(results) - pruned
    for b in bars:  # where the attempt ran, as its allocation.json says, for as long as it ran
        alloc = store.attempts(b.number)[b.attempt]
        assert (b.platform, b.slot) == (alloc["platform"], alloc["slot"])
        assert 0 <= b.start < b.end and b.end - b.start >= results[b.number].attempts[-1].duration_s * 0.5
    fig = plots.timeline_figure(bars, ["local"], 4.5)
    assert fig is not None
    assert set(fig.axes[0].get_legend_handles_labels()[1]) == {"Complete", "Pruned"}  # what the legend names


def test_importances_from_the_records_match_optuna_on_the_runs_own_study(pruned_run: Path) -> None:
    """The in-memory study built from the records holds what the journal holds: fANOVA
    (same seed) on the run's own Optuna study gives the same numbers."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    from coordinator.search import open_storage

    study = plotdata.studies(RunStore.open(pruned_run))[0]
    mine, why = plotdata.importances(study)
    assert mine is not None and why == "" and list(mine)[0] == "x"  # x moves val_loss most
    own = optuna.load_study(study_name="custom", storage=open_storage(pruned_run, None))
    raw = FanovaImportanceEvaluator(seed=plotdata.IMPORTANCE_SEED).evaluate(own)
    total = sum(raw.values())
    assert mine == pytest.approx({k: v / total for k, v in raw.items()}, abs=1e-12)
    kept = json.loads((pruned_run / "report" / "figures" / "importance_custom.json").read_text())
    assert kept["importances"] == mine and kept["trials"] == len(study.complete)


def test_regenerating_gives_the_same_bytes(pruned_run: Path) -> None:
    report = pruned_run / "report"
    first = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    (report / "figures" / "importance_custom.json").unlink()  # fANOVA computed again, not read back
    write_report(RunStore.open(pruned_run))
    assert {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()} == first
    shutil.rmtree(report)
    write_report(RunStore.open(pruned_run))
    assert {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()} == first


def test_figure_width_sets_the_png_width_and_the_run_keeps_its_own(runs: Path, script, space_file) -> None:
    res = CliRunner().invoke(main, ["search", "--command", script(STEPS), "--space", space_file(SPACE),
                                    "--metric", "val_loss", "--trials", "4", "--parallel", "2", "--run-dir", "w",
                                    "--figure-width", "3.5", "--quiet"])
    assert res.exit_code == 0, res.output
    png = Path("w/report/figures/history_custom.png")
    assert png_size(png)[0] == 525  # 3.5 in at 150 dpi
    res = CliRunner().invoke(main, ["report", "w", "--figure-width", "6"])
    assert res.exit_code == 0 and "plot:timeline" in res.output, res.output
    assert png_size(png)[0] == 900 and png_size(Path("w/report/figures/timeline.png"))[0] == 900
    res = CliRunner().invoke(main, ["report", "w"])  # no flag: the width the search was started with
    assert res.exit_code == 0 and png_size(png)[0] == 525
    for bad in (["report", "w", "--figure-width", "0.5"], ["report", "w", "w", "-o", "m", "--figure-width", "4"]):
        res = CliRunner().invoke(main, bad)
        assert res.exit_code == 2 and "--figure-width" in res.output and "Traceback" not in res.output, res.output


def test_a_multi_objective_run_has_a_pareto_plot_of_its_front(runs: Path, script, space_file, tmp_path: Path) -> None:
    body = "print('[coord-metric] {\"loss\": %r, \"cost\": %r}' % ((p['x'] - 0.3) ** 2 + 0.1 * p['y'], p['x']))\n"
    space = space_file("params:\n  x: {type: float, low: 0, high: 1}\n  y: {type: float, low: 0, high: 1}\n")
    out = run_search(SearchOptions(command=script(body), space=space, metrics=("loss", "cost"), sampler="nsga2",
                                   trials=10, parallel=2, seed=4, run_dir=str(runs / "mo")))
    report = Path(out["run_dir"]) / "report"
    assert png_size(report / "figures" / "pareto_custom.png")[0] == 675
    check_pdf(report / "figures" / "pareto_custom.pdf", tmp_path)
    front = plotdata.pareto(plotdata.studies(RunStore.open(Path(out["run_dir"])))[0])
    best = json.loads((report / "best.json").read_text())["custom"]["pareto_front"]
    assert [p.number for p in front] == [r["number"] for r in best]  # the tables' front, drawn


def test_a_plot_that_fails_is_one_warning_and_the_report_goes_on(pruned_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise ValueError("no room on the canvas\nsecond line")

    monkeypatch.setattr(plots, "parallel_figure", broken)
    shutil.rmtree(pruned_run / "report")
    with caplog.at_level(logging.WARNING, logger="coordinator.reporting.plots"):
        files = write_report(RunStore.open(pruned_run))
    lines = [r.getMessage() for r in caplog.records if r.name == "coordinator.reporting.plots"]
    assert lines == ["search plot parallel_custom left out: ValueError: no room on the canvas"]
    assert "plot:parallel_custom" not in files and "plot:slice_custom" in files and files["csv"].exists()


def test_too_few_trials_for_importances_is_a_note_not_a_plot(runs: Path, script, space_file,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="coordinator.reporting.plots"):
        out = run_search(SearchOptions(command=script(STEPS), space=space_file(SPACE), metrics=("val_loss",),
                                       trials=2, parallel=2, run_dir=str(runs / "two")))
    assert "plot:importance_custom" not in out["files"] and "plot:slice_custom" in out["files"]
    notes = [r for r in caplog.records if "importances of custom left out" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in notes] == [
        (logging.INFO, "parameter importances of custom left out: custom has 2 complete trials (fANOVA needs 4)")]


def test_an_objective_that_never_varies_leaves_importances_out_without_a_warning(
        runs: Path, script, space_file, caplog: pytest.LogCaptureFixture) -> None:
    """Every trial scores the same: fANOVA raises 'zero total variance'; that is a note
    (with -v), not a warning on the user's terminal, and the other plots are drawn."""
    with caplog.at_level(logging.INFO, logger="coordinator.reporting.plots"):
        out = run_search(SearchOptions(command=script("print('val_loss=0.5')\n"), space=space_file(SPACE),
                                       metrics=("val_loss",), trials=5, parallel=2, run_dir=str(runs / "flat")))
    assert out["complete"] == 5 and "plot:importance_custom" not in out["files"], out
    assert "plot:history_custom" in out["files"]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("custom's objective does not vary with its parameters" in r.getMessage() for r in caplog.records)


def _doc_lines() -> list[str]:
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.startswith("    coord ") and "runs/glm-plots" in ln]


@pytest.mark.slow
def test_the_plot_commands_in_the_docs_run_as_shown(runs: Path) -> None:
    """docs/usage.md: a built-in GLM search with its plots 3.5 in wide, then the report again
    at 6 in: both commands as the page shows them."""
    lines = _doc_lines()
    assert len(lines) == 2 and lines[0].startswith("coord search") and lines[1].startswith("coord report")
    for line in lines:
        res = CliRunner().invoke(main, shlex.split(line)[1:])
        assert res.exit_code == 0, res.output
    figures = Path("runs/glm-plots/report/figures")
    assert png_size(figures / "slice_glm.png")[0] == 900 and (figures / "importance_glm.pdf").exists()
