"""Reports: CSV neutralisation, LaTeX escaping, byte-identical regeneration, pdflatex."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.reporting.fmt import csv_cell, fmt, tex_escape
from coordinator.reporting.tables import standalone_document, write_report
from coordinator.store.rundir import RunStore

NASTY = r"\input{/etc/passwd} & 100% $x$ #1 a_b {c} ~ ^"


def test_escaping() -> None:
    assert tex_escape(NASTY) == (r"\textbackslash{}input\{/etc/passwd\} \& 100\% \$x\$ \#1 a\_b \{c\} "
                                 r"\textasciitilde{} \textasciicircum{}")
    assert csv_cell("=HYPERLINK(x)") == "'=HYPERLINK(x)" and csv_cell(-0.5) == -0.5 and csv_cell("ok") == "ok"


@pytest.mark.parametrize(("value", "shown"), [(0.84, "0.8400"), (0.8395, "0.8395"), (0.5, "0.5000"),
                                               (12.5, "12.50"), (0.001517, "0.001517"), (7.0, "7"), (0.0, "0"),
                                               (7, "7"), (123456.0, "1.2346e+05"), (True, "True"), (None, "")])
def test_one_precision_for_every_float(value: object, shown: str) -> None:
    """4 significant digits with the trailing zeros: 0.8400 next to 0.8395, not 0.84; a whole
    number (a step count reported as a float) as one."""
    assert fmt(value) == shown and tex_escape(value) == shown


@pytest.fixture
def run_with_nasty_values(runs: Path, script, space_file, with_plots: None) -> Path:
    body = "print('[coord-metric] {\"loss\": %f}' % len(p['label']))\n"
    space = space_file(f"params:\n  label: {{type: categorical, choices: ['{NASTY}', '=cmd|calc', 'plain']}}\n")
    out = run_search(SearchOptions(command=script(body), space=space, metrics=("loss",), sampler="grid",
                                   run_dir=str(runs / "nasty")))
    return Path(out["run_dir"])


def test_reports_regenerate_byte_identically(run_with_nasty_values: Path) -> None:
    report = run_with_nasty_values / "report"
    before = {p: p.read_bytes() for p in report.rglob("*") if p.is_file()}
    shutil.rmtree(report)
    write_report(RunStore.open(run_with_nasty_values))
    after = {p: p.read_bytes() for p in report.rglob("*") if p.is_file()}
    # csv, best, hosts.csv, usage.csv, four tables and their preview, four plots as PDF and PNG (one
    # parameter: no importances), index.html
    assert before == after and len(before) == 18
    hosts = (report / "hosts.csv").read_text().splitlines()
    assert hosts[0] == "platform,model,trials,attempts,busy_s,utilisation,median_s"
    assert hosts[1].startswith("local,custom,3,3,")
    csv_text = (report / "trials.csv").read_text()
    assert "'=cmd|calc" in csv_text and "\n=cmd" not in csv_text and ",=cmd" not in csv_text
    tex = (report / "tables" / "top_custom.tex").read_text()
    assert r"\textbackslash{}input\{/etc/passwd\}" in tex and r"\input{/etc" not in tex


def test_latex_tables_compile_with_pdflatex(run_with_nasty_values: Path, tmp_path: Path) -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI: .ci/run must install texlive-latex-base")
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    tables = sorted(p for p in (run_with_nasty_values / "report" / "tables").glob("*.tex") if p.name != "preview.tex")
    doc = tmp_path / "doc.tex"
    doc.write_text(standalone_document(tables))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                           doc.name], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "root:" not in log  # /etc/passwd was never read


def test_pareto_front_table_and_plot_compile(runs: Path, script, space_file, tmp_path: Path) -> None:
    """Two objectives with a known front: loss = (x - 0.3)^2 and cost = x, both minimised;
    the front is every trial with x <= 0.3 (lower cost trades against lower loss)."""
    body = "print('[coord-metric] {\"loss\": %r, \"cost\": %r}' % ((p['x'] - 0.3) ** 2, p['x']))\n"
    space = space_file("params:\n  x: {type: float, low: 0, high: 1}\n")
    out = run_search(SearchOptions(command=script(body), space=space, metrics=("loss", "cost"), sampler="nsga2",
                                   trials=16, parallel=2, seed=4, run_dir=str(runs / "mo")))
    report = Path(out["run_dir"]) / "report"
    best = json.loads((report / "best.json").read_text())["custom"]["pareto_front"]
    xs = sorted(rec.result.params["x"] for rec in RunStore.open(Path(out["run_dir"])).trials())
    expected, lowest = [], float("inf")
    for x in xs:  # by cost ascending: on the front when its loss beats every cheaper trial's
        if (x - 0.3) ** 2 < lowest:
            expected.append(x)
            lowest = (x - 0.3) ** 2
    assert sorted(r["params"]["x"] for r in best) == expected
    fig = (report / "figures" / "pareto_custom.tex").read_text()
    assert fig.count("\\circle*") == len(best) and fig.count("\\circle{") == 16 - len(best)
    svg = (report / "figures" / "pareto_custom.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 16
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    doc = tmp_path / "mo.tex"
    doc.write_text(standalone_document([report / "tables" / "pareto_custom.tex",
                                        report / "figures" / "pareto_custom.tex"]))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.slow
def test_reports_show_the_boosting_rounds_of_the_scored_model(runs: Path, small_csv: Path, space_file,
                                                               tmp_path: Path) -> None:
    """A built-in XGBoost trial ends at its best step: the tables, trials.csv and best.json
    show those rounds (the configured maximum stays in n_estimators_max / configured_params),
    and best.json's params retrain exactly the scored model."""
    import csv
    import sys

    from coordinator import resources

    space = space_file("params:\n  n_estimators: {type: int, low: 180, high: 211}\n"
                       "  learning_rate: {type: float, low: 0.6, high: 0.9}\n"
                       "fixed: {max_depth: 6}\n")
    out = run_search(SearchOptions(models=("xgboost",), space=space, data=str(small_csv), target="home_win",
                                   time_col="season", folds=2, trials=3, parallel=2, run_dir=str(runs / "x")))
    run = Path(out["run_dir"])
    results = {rec.number: rec.result.to_json() for rec in RunStore.open(run).trials() if rec.result}
    assert all(r["status"] == "COMPLETE" for r in results.values()) and len(results) == 3
    used = {n: int(r["metrics"]["best_step"]) for n, r in results.items()}
    configured = {n: r["params"]["n_estimators"] for n, r in results.items()}
    assert any(used[n] < configured[n] for n in results)  # the tables must not show the configured value
    table = {int(r["number"]): r for r in csv.DictReader((run / "report" / "trials.csv").open())}
    for n in results:
        assert int(table[n]["n_estimators"]) == used[n] and int(table[n]["n_estimators_max"]) == configured[n]
    tex = (run / "report" / "tables" / "top_xgboost.tex").read_text()
    assert "boosting rounds at the best validation step" in tex and "n\\_estimators\\_max" in tex
    header = next(ln for ln in tex.splitlines() if ln.strip().startswith("Rank")).split("&")
    column = [h.strip() for h in header].index("Rounds")  # n_estimators of a built-in XGBoost: its label
    shown = {_number(ln.split("&")[1]): _number(ln.split("&")[column]) for ln in tex.splitlines()
             if ln.strip().startswith("$")}
    assert shown == used
    best = json.loads((run / "report" / "best.json").read_text())["xgboost"]
    assert best["params"]["n_estimators"] == used[best["number"]]
    assert best["configured_params"]["n_estimators"] == configured[best["number"]]
    spec = json.loads((run / best["recipe"]).read_text())  # location-free: placed here by the test
    spec.update(params=best["params"], checkpoint_dir=None, attempt_dir=None)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(resources.folder("runners") / "run_trial.py")], capture_output=True,
                          env={**os.environ, "COORD_SPEC": str(tmp_path / "spec.json")}, text=True, check=True)
    again = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("[coord-metric]")][-1].split(" ", 1)[1])
    assert again["auc"] == best["value"] and again["best_step"] == used[best["number"]]
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    doc = tmp_path / "top.tex"
    doc.write_text(standalone_document([run / "report" / "tables" / "top_xgboost.tex"]))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def _number(cell: str) -> int:
    """A table cell's integer: ``$7$`` or, the best of its column, ``$\\mathbf{7}$``."""
    return int(cell.strip().strip("$").removeprefix("\\mathbf{").removesuffix("}"))


def test_parameter_columns_keep_search_space_order_when_rebuilt(runs: Path, script, space_file) -> None:
    """The search's own report and ``coord report RUN`` afterwards are the same bytes, with
    the parameters in the space's order (x, lr, depth: not alphabetical). run.json used to be
    written with sorted keys while the live run kept its in-memory order, so the top table's
    columns changed order once, on the first rebuild."""
    from click.testing import CliRunner

    from coordinator.cli import main

    body = "print('[coord-metric] {\"loss\": %r}' % ((p['x'] - 0.3) ** 2 + p['lr'] * p['depth']))\n"
    space = space_file("params:\n  x: {type: float, low: 0, high: 1}\n"
                       "  lr: {type: float, low: 0.001, high: 0.1, log: true}\n  depth: {type: int, low: 1, high: 4}\n")
    out = run_search(SearchOptions(command=script(body), space=space, metrics=("loss",), sampler="random",
                                   trials=3, parallel=2, run_dir=str(runs / "order")))
    report = Path(out["run_dir"]) / "report"
    first = {p.relative_to(report): p.read_bytes() for p in sorted(report.rglob("*")) if p.is_file()}
    tex = first[Path("tables/top_custom.tex")].decode()
    header = next(ln for ln in tex.splitlines() if ln.strip().startswith("Rank"))
    assert [h.strip() for h in header.rstrip("\\ ").split("&")][2:5] == ["x", "lr", "depth"]
    csv_header = first[Path("trials.csv")].decode().splitlines()[0].split(",")
    assert csv_header.index("x") < csv_header.index("lr") < csv_header.index("depth")
    res = CliRunner().invoke(main, ["report", out["run_dir"]])
    assert res.exit_code == 0, res.output
    again = {p.relative_to(report): p.read_bytes() for p in sorted(report.rglob("*")) if p.is_file()}
    assert again == first
