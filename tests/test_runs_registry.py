"""The experiment registry across runs (issue 10, item 4) and `coord show` (item 2): three
small real runs (two of one name, with a user script; one built-in GLM on real data),
listed by `coord runs` (text and JSON), merged by `coord report ... -o DIR` into
byte-identical CSV and LaTeX that pdflatex compiles, and one trial shown by `coord show`."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli import main
from coordinator.config import datasets
from coordinator.reporting import runs as registry
from coordinator.reporting.fmt import fmt
from coordinator.reporting.tables import standalone_document
from coordinator.store.rundir import RunStore
from tests.conftest import write_script

pytestmark = pytest.mark.xdist_group("runs-registry")  # one worker: the module's fixtures are built once, not once per xdist worker

ROOT = Path(__file__).resolve().parents[1]


def _coord(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory, small_csv: Path) -> Path:
    """base/runs with alpha (3 trials), alpha again (2 trials, another seed) and beta (GLM)."""
    base = tmp_path_factory.mktemp("registry")
    script = write_script(base / "t.py", "print('[coord-metric] {\"loss\": %r}' % ((p['x'] - 0.3) ** 2))\n")
    (base / "space.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    root = str(base / "runs")
    common = ["--quiet", "--runs", root, "--parallel", "1"]
    with pytest.MonkeyPatch.context() as env:  # as every test here reports: a module fixture runs before conftest's
        env.setenv("COORD_PLOTS", "0")
        _searches(base, script, root, common, small_csv)
    return base


def _searches(base: Path, script: Path, root: str, common: list[str], small_csv: Path) -> None:
    _coord("search", "--command", f"{sys.executable} {script}", "--space", str(base / "space.yaml"), "--metric",
           "loss", "--trials", "3", "--name", "alpha", *common)
    _coord("search", "--command", f"{sys.executable} {script}", "--space", str(base / "space.yaml"), "--metric",
           "loss", "--trials", "2", "--seed", "3", "--name", "alpha", *common)
    _coord("search", "--model", "glm", "--data", str(small_csv), "--target", "home_win", "--time-col", "season",
           "--folds", "2", "--trials", "2", "--name", "beta", *common)


def _runs(base: Path) -> dict[str, list[Path]]:
    """Run directories by run.json name, in start order (the first event)."""
    out: dict[str, list[Path]] = {}
    for d in (base / "runs").iterdir():
        if not (d / "run.json").is_file():  # the runs root also holds MLflow's store (mlflow.db, mlartifacts)
            continue
        first = json.loads((d / "events.jsonl").read_text().splitlines()[0])
        out.setdefault(json.loads((d / "run.json").read_text())["name"], []).append((first["t"], d))
    return {k: [d for _, d in sorted(v)] for k, v in out.items()}


def _results(run: Path) -> list[dict]:
    return [json.loads((d / "result.json").read_text()) for d in sorted((run / "trials").iterdir(),
                                                                        key=lambda p: int(p.name))]


# --- coord runs ---------------------------------------------------------------------------

def test_runs_lists_every_run_with_its_counts_best_hosts_and_times(three: Path) -> None:
    by_name = _runs(three)
    listed = json.loads(_coord("runs", "--runs", str(three / "runs"), "--json"))
    assert [r["run"] for r in listed] == [d.name for d in (*by_name["alpha"], *by_name["beta"])]
    for entry, run in zip(listed, (*by_name["alpha"], *by_name["beta"]), strict=True):
        results = _results(run)
        cfg = json.loads((run / "run.json").read_text())
        pick = max if cfg["directions"][0] == "maximize" else min
        best = pick(results, key=lambda r: r["values"][0])
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        assert entry["status"] == "finished" and entry["reason"] is None and entry["pid"] is None
        assert entry["trials"] == {"complete": len(results)} and entry["planned"] == cfg["trials"]
        assert (entry["best_value"], entry["best_trial"]) == (best["values"][0], best["number"])
        assert entry["metric"] == cfg["metrics"][0] and entry["hosts"] == ["local"]
        assert entry["started"] == registry.iso_time(events[0]["t"])
        assert entry["duration_s"] == round(events[-1]["t"] - events[0]["t"], 3)
    assert [r["models"] for r in listed] == [["custom"], ["custom"], ["glm"]]
    assert listed[2]["direction"] == "maximize" and listed[2]["best_model"] == "glm"

    text = _coord("runs", "--runs", str(three / "runs")).splitlines()
    assert text[0].split() == ["RUN", "NAME", "MODELS", "STATUS", "TRIALS", "BEST", "HOSTS", "STARTED", "DURATION"]
    beta = next(line for line in text if line.startswith(by_name["beta"][0].name))
    assert f"auc {fmt(listed[2]['best_value'])} (max, trial {listed[2]['best_trial']})" in beta
    assert " beta " in beta and " glm " in beta and " finished " in beta and "2 complete (of 2)" in beta
    assert len(text) == 4


def test_runs_reads_no_event_log_in_full(three: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing uses the log's two ends only: reading a whole log here is a failure."""
    def whole_log(self: RunStore) -> list[dict]:
        raise AssertionError("coord runs read a whole event log")

    monkeypatch.setattr(RunStore, "events_read", whole_log)
    assert [s.status for s in registry.list_runs(three / "runs")] == ["finished"] * 3


@pytest.fixture
def messy(three: Path, tmp_path: Path) -> Path:
    """A copy of the runs folder with damaged and foreign folders next to the real runs."""
    root = tmp_path / "runs"
    shutil.copytree(three / "runs", root)
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run\n")
    (root / "garbled").mkdir()
    (root / "garbled" / "run.json").write_bytes(b'{"name": "x", \xff')
    torn = root / "torn"
    shutil.copytree(_runs(three)["alpha"][0], torn)
    (torn / "trials" / "1" / "result.json").write_text('{"status": "COMPL')
    (root / ".hidden").mkdir()
    (root / "mlruns").mkdir()  # MLflow's store under the runs root is no run
    (root / "mlflow.db").write_text("")
    (root / "merged").mkdir()  # a merged report kept under the runs root
    (root / "merged" / "merged.json").write_text("{}\n")
    return root


def test_damaged_and_foreign_folders_are_listed_with_one_reason(messy: Path) -> None:
    listed = {r["run"]: r for r in json.loads(_coord("runs", "--runs", str(messy), "--json"))}
    assert sorted(listed) == sorted([*(d.name for d in messy.iterdir() if d.name.startswith(("alpha", "beta"))),
                                     "notes", "garbled", "torn"])
    assert listed["notes"]["status"] == "damaged"
    assert listed["notes"]["reason"] == f"{messy / 'notes'} is not a coord run directory (no run.json)"
    assert listed["garbled"]["reason"].startswith(f"{messy / 'garbled' / 'run.json'} is damaged (")
    assert listed["torn"]["reason"].startswith(f"{messy / 'torn' / 'trials' / '1' / 'result.json'} is damaged (")
    text = _coord("runs", "--runs", str(messy))
    assert "Traceback" not in text
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert lines["notes"].split()[1:4] == ["-", "-", "damaged"] and "no run.json" in lines["notes"]
    assert list(lines)[-3:] == ["garbled", "notes", "torn"]  # no start time: after the runs, by name


def test_running_and_unfinished_runs(three: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "alpha-copy"
    shutil.copytree(_runs(three)["alpha"][0], run)
    store = RunStore.open(run)
    store.lock()  # a live coordinator: this process holds the run's lock
    try:
        (live,) = registry.list_runs(tmp_path / "runs")
        assert (live.status, live.pid) == ("running", os.getpid())
        assert f"running (pid {os.getpid()})" in _coord("runs", "--runs", str(tmp_path / "runs"))
    finally:
        store.close()
    events = (run / "events.jsonl").read_text().splitlines()
    (run / "events.jsonl").write_text("\n".join(events[:-1]) + "\n")  # died before search_end
    assert registry.summarise(run).status == "unfinished"
    end = json.loads(events[-1])
    (run / "events.jsonl").write_text("\n".join([*events[:-1], json.dumps({**end, "interrupted": True})]) + "\n")
    assert registry.summarise(run).status == "interrupted"
    resumed = json.dumps({"t": end["t"] + 5, "event": "resumed", "number": 0})
    (run / "events.jsonl").write_text("\n".join([*events[:-1], json.dumps({**end, "interrupted": True}), resumed])
                                      + "\n")
    assert registry.summarise(run).status == "unfinished"  # a resume started after it and died


def test_an_empty_runs_folder(tmp_path: Path) -> None:
    assert "no runs in" in _coord("runs", "--runs", str(tmp_path / "none"))
    assert json.loads(_coord("runs", "--runs", str(tmp_path / "none"), "--json")) == []


# --- coord report: merged -----------------------------------------------------------------

def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_merged_report_of_three_runs(three: Path, tmp_path: Path) -> None:
    by_name = _runs(three)
    order = [*by_name["alpha"], *by_name["beta"]]
    out = tmp_path / "merged"
    _coord("report", *map(str, reversed(order)), "-o", str(out))
    assert sorted(_tree(out)) == ["hosts.csv", "merged.json", "models.csv", "runs.csv", "tables/hosts.tex",
                                  "tables/model_summary.tex", "tables/preview.tex", "tables/top_custom.tex",
                                  "tables/top_glm.tex",
                                  "top_custom.csv", "top_glm.csv", "trials.csv"]
    trials = _read_csv(out / "trials.csv")
    expected = [(run.name, r["number"], r["values"][0]) for run in order for r in _results(run)]
    assert [(t["run"], int(t["number"]), float(t["value"])) for t in trials] == expected
    assert list(trials[0])[:6] == ["run", "number", "study", "model", "status", "value"]
    assert trials[-1]["C"] and not trials[-1]["x"] and trials[0]["x"] and not trials[0]["C"]

    models = _read_csv(out / "models.csv")
    assert [(m["model"], m["run"]) for m in models] == [("custom", order[0].name), ("custom", order[1].name),
                                                        ("glm", order[2].name)]
    for m, run in zip(models, order, strict=True):
        pick = max if m["direction"] == "maximize" else min
        best = pick(_results(run), key=lambda r: r["values"][0])
        assert (float(m["best_value"]), int(m["best_trial"])) == (best["values"][0], best["number"])
        assert int(m["trials"]) == int(m["complete"]) == len(_results(run))

    top = _read_csv(out / "top_custom.csv")
    alpha = sorted((r["values"][0], run.name, r["number"]) for run in by_name["alpha"] for r in _results(run))
    assert [(float(t["loss"]), t["run"], int(t["trial"])) for t in top] == alpha
    assert [int(t["rank"]) for t in top] == [1, 2, 3, 4, 5]
    assert float(_read_csv(out / "top_glm.csv")[0]["auc"]) == float(models[2]["best_value"])

    hosts = _read_csv(out / "hosts.csv")
    assert [(h["run"], h["model"]) for h in hosts] == [(order[0].name, "custom"), (order[1].name, "custom"),
                                                       (order[2].name, "glm"), ("all runs", "custom"),
                                                       ("all runs", "glm")]
    assert int(hosts[3]["trials"]) == 5 and float(hosts[3]["busy_s"]) == pytest.approx(
        float(hosts[0]["busy_s"]) + float(hosts[1]["busy_s"]), abs=0.002)
    own = _read_csv(order[0] / "report" / "hosts.csv")[0]  # the run's own hosts.csv agrees
    assert {k: hosts[0][k] for k in own} == own

    tex = (out / "tables" / "top_custom.tex").read_text()
    assert "in 2 runs by loss (minimize)" in tex and tex.count(order[1].name.replace("_", r"\_")) >= 1
    assert [r["run"] for r in _read_csv(out / "runs.csv")] == [d.name for d in order]


def test_merged_report_is_byte_identical_however_the_runs_are_named(three: Path, tmp_path: Path) -> None:
    by_name = _runs(three)
    order = [*by_name["alpha"], *by_name["beta"]]
    _coord("report", *map(str, order), "-o", str(tmp_path / "a"))
    first = _tree(tmp_path / "a")
    _coord("report", *map(str, order), "-o", str(tmp_path / "a"))  # again, into the same folder
    assert _tree(tmp_path / "a") == first
    _coord("report", *map(str, reversed(order)), str(order[0]), "-o", str(tmp_path / "b"))  # reversed, repeated
    _coord("report", "--all", "--runs", str(three / "runs"), "-o", str(tmp_path / "c"))
    assert _tree(tmp_path / "b") == first and _tree(tmp_path / "c") == first


def test_merged_latex_compiles_with_pdflatex(three: Path, tmp_path: Path) -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI: .ci/run must install texlive-latex-base")
        pytest.skip("pdflatex not installed (scripts/install.sh installs it)")
    _coord("report", "--all", "--runs", str(three / "runs"), "-o", str(tmp_path / "m"))
    tables = sorted(p for p in (tmp_path / "m" / "tables").glob("*.tex") if p.name != "preview.tex")
    assert len(tables) == 4
    doc = tmp_path / "doc.tex"
    doc.write_text(standalone_document(tables))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    # the merged preview inputs every table, from where it lies
    preview = (tmp_path / "m" / "tables" / "preview.tex").read_text()
    assert all(f"\\input{{{t.name}}}" in preview for t in tables)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                           "preview.tex"], cwd=tmp_path / "m" / "tables", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for junk in ("aux", "log", "pdf"):  # a rebuild's tree must not change: keep the compile's files out of it
        (tmp_path / "m" / "tables" / f"preview.{junk}").unlink()


def test_report_by_name_and_all_skip_damaged_runs_and_drop_stale_files(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    res = CliRunner().invoke(main, ["report", "--all", "--runs", str(messy), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"coord: note: skipped a damaged run: {messy / 'notes'} is not a coord run directory" in res.output
    assert {r["name"] for r in _read_csv(out / "runs.csv")} == {"alpha", "beta"} and (out / "top_glm.csv").exists()
    _coord("report", "--name", "alpha", "--runs", str(messy), "-o", str(out))
    assert [r["name"] for r in _read_csv(out / "runs.csv")] == ["alpha", "alpha"]
    assert not (out / "top_glm.csv").exists() and not (out / "tables" / "top_glm.tex").exists()
    assert {m["model"] for m in _read_csv(out / "models.csv")} == {"custom"}
    (out / "thesis.tex").write_text("mine\n")  # a file of the user's in the folder is never touched
    _coord("report", "--name", "beta", "--runs", str(messy), "-o", str(out))
    assert (out / "thesis.tex").read_text() == "mine\n" and not (out / "top_custom.csv").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "gamma", "-o", "x"], "--name: no run named gamma in {root} (valid: alpha, beta)"),
    (["RUN", "RUN2"], "-o/--out: merging runs writes one set of tables: give the folder for them, e.g. -o merged"),
    (["--all"], "-o/--out: merging runs writes one set of tables"),
    (["{root}/notes", "-o", "x"], "{root}/notes is not a coord run directory (no run.json)"),
    (["{root}/torn", "RUN", "-o", "x"], "{root}/torn cannot be reported: {root}/torn/trials/1/result.json is damaged"),
])
def test_report_mistakes_are_one_line(messy: Path, tmp_path: Path, args: list[str], message: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = next(str(d) for d in messy.iterdir() if d.name.startswith("alpha"))
    args = [a.replace("RUN2", run).replace("RUN", run).format(root=messy) for a in args]
    res = CliRunner().invoke(main, ["report", *args, "--runs", str(messy)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if not line.startswith("coord: note: ")]
    assert len(errors) == 1 and errors[0].startswith("coord: error: " + message.format(root=messy)), res.output


def test_single_run_report_is_unchanged(three: Path) -> None:
    run = _runs(three)["beta"][0]
    before = _tree(run / "report")
    out = _coord("report", str(run))
    assert out.splitlines()[0].split() == ["csv", str(run / "report" / "trials.csv")]
    assert _tree(run / "report") == before
    assert CliRunner().invoke(main, ["report"]).exit_code == 2


# --- coord show ---------------------------------------------------------------------------

def test_show_prints_what_the_run_recorded_for_a_trial(three: Path, small_csv: Path) -> None:
    run = _runs(three)["beta"][0]
    result = _results(run)[1]
    text = _coord("show", str(run), "1")
    lines = text.splitlines()
    assert lines[1] == "trial      1 (study glm, model glm, optuna trial 1)"
    assert lines[2] == "status     COMPLETE"
    assert f"params     C={fmt(result['params']['C'])}, l1_ratio={fmt(result['params']['l1_ratio'])}" in lines
    assert f"seed       {result['seed']}" in lines and f"value      auc {fmt(result['values'][0])} (maximize)" in lines
    assert any(line.startswith("metrics    auc=") and "brier=" in line for line in lines)
    a = result["attempts"][0]
    assert (f"  #1 ok: local (host localhost) slot {a['slot']} gpu -, {fmt(a['duration_s'])} s, exit 0, cpu, "
            "1 thread") in lines
    assert f"  sha256   {datasets.sha256(small_csv)}" in lines
    assert "  models   glm" in lines and "  sampler  tpe (seed 0)" in lines
    record = json.loads(_coord("show", "--json", str(run), "1"))
    assert record["result"] == result and record["trial"]["params"] == result["params"]
    assert record["attempts"][0]["allocation"]["platform"] == "local"


def test_show_prints_provenance_it_does_not_know_by_name(three: Path, tmp_path: Path) -> None:
    """Fields a newer coord adds (say energy use) are shown, not hidden."""
    run = tmp_path / "run"
    shutil.copytree(_runs(three)["alpha"][0], run)
    path = run / "trials" / "0" / "result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "energy": {"joules": "3.5", "meter": "rapl"}}))
    text = _coord("show", str(run), "0")
    assert "recorded also\n  energy (result.json):\n    joules: 3.5\n    meter: rapl" in text
    res = CliRunner().invoke(main, ["show", str(run), "7"])
    assert res.exit_code == 2 and res.output == f"coord: error: TRIAL: {run} has no trial 7 (it has trials 0-2)\n"


# --- the README's lines, run ---------------------------------------------------------------

def _readme_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## All your runs\n", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    coord ")]


def test_every_command_of_the_readme_section_runs(three: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The shown run names stand for the runs of those names (the first, in start order)."""
    work = tmp_path / "work"
    shutil.copytree(three / "runs", work / "runs")
    monkeypatch.chdir(work)
    monkeypatch.delenv("COORD_RUNS_DIR", raising=False)
    real = {name: f"runs/{dirs[0].name}" for name, dirs in _runs(work).items()}
    lines = _readme_lines()
    assert len(lines) == 7
    for line in lines:
        args = [real.get(a.split("/")[-1].split("-")[0], a) if a.startswith("runs/") else a
                for a in shlex.split(line, comments=True)[1:]]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0 and "coord: error" not in res.output, (line, res.output)
    assert len(_read_csv(work / "merged" / "runs.csv")) == 3
    assert {r["name"] for r in _read_csv(work / "merged-alpha" / "runs.csv")} == {"alpha"}


def test_merged_report_names_its_files_as_a_runs_report_does(small_csv: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A random forest run: its own report writes tables/top_random_forest.tex, and the
    merged report top_random_forest.csv and tables/top_random_forest.tex (not random-forest)."""
    monkeypatch.setenv("COORD_PLOTS", "0")
    root = str(tmp_path / "runs")
    _coord("search", "--model", "random_forest", "--data", str(small_csv), "--target", "home_win", "--time-col",
           "season", "--folds", "2", "--trials", "1", "--name", "rf", "--quiet", "--runs", root, "--parallel", "1")
    (run,) = _runs(tmp_path)["rf"]
    assert (run / "report" / "tables" / "top_random_forest.tex").exists()
    out = tmp_path / "merged"
    _coord("report", str(run), "-o", str(out))
    assert (out / "top_random_forest.csv").exists() and (out / "tables" / "top_random_forest.tex").exists()
    assert r"\label{tab:merged-top-random-forest}" in (out / "tables" / "top_random_forest.tex").read_text()
