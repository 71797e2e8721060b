"""Every class of user mistake: one readable line, non-zero exit, no traceback, no run dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli import main


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    reg = tmp_path / "reg.yaml"
    reg.write_text("platforms:\n  laptop:\n    specs: {cpu_cores: 2, memory_gb: 4}\n    max_concurent_jobs: 2\n")
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("platforms:\n  laptop:\n    specs: {cpu_cores: 2, memory_gb: 0.2}\n")
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  num_leaves: {type: int, low: 2, high: 64}\n")
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n1,2,0\n3,4,1\n")
    multi = tmp_path / "multi.csv"
    multi.write_text("a,team\n1,red\n2,blue\n3,green\n")
    return {"reg": reg, "tiny": tiny, "space": space, "data": data, "multi": multi}


CASES = [
    (["--registry", "{tmp}/missing.yaml"], 2, "{tmp}/missing.yaml: file not found"),
    (["--registry", "{reg}"], 2, "{reg}:4: platforms.laptop.max_concurent_jobs: unknown key; did you mean "
                                "'max_concurrent_jobs'? (valid: "),
    (["--model", "lightgbm"], 2, "--model: unknown model type 'lightgbm'; for your own script use --command "
                                 "(valid: glm, mlp, random_forest, xgboost)"),
    (["--data", "{data}", "--target", "label"], 2, "{data}: --target: no column 'label' (valid: a, b, y)"),
    (["--data", "{tmp}/nope.csv", "--target", "y"], 2, "{tmp}/nope.csv: data file not found"),
    (["--data", "{data}"], 2, "{data}: --target: name the column to predict with --target (valid: a, b, y)"),
    (["--space", "{space}"], 2, "{space}:2: params.num_leaves: xgboost has no parameter 'num_leaves'"),
    (["--model", "mlp", "--registry", "{tiny}"], 3, "no platform can ever run a NeuralNetwork trial: laptop: needs "
                                                    "1 GB memory, platform has 0.2 GB"),
    (["--command", "python x.py"], 2, "--space: a --command search needs --space FILE"),
    (["--metric", "wobble"], 2, "--metric: built-in runners do not report 'wobble'"),
    (["--data", "{multi}", "--target", "team"], 2, "{multi}: --target: target 'team' has more than two classes"),
    (["--data", "{data}", "--target", "y", "--cv", "walk-forward"], 2, "--time-col: walk-forward validation needs --time-col COLUMN (valid: a, b, y)"),
    (["--storage", "notaurl"], 2, "--storage: 'notaurl' is not a database URL (leave --storage out for the run's "
                                  "own journal file, study.journal) (valid: mysql://user@host/db, "
                                  "postgresql://user@host/db, sqlite:///path/to/file.db)"),
    (["--storage", "sqlite:///{tmp}/no/such/dir/x.db"], 2,
     "--storage: cannot use sqlite:///{tmp}/no/such/dir/x.db: unable to open database file"),
]


@pytest.mark.parametrize(("args", "code", "message"), CASES)
def test_user_mistakes(tmp_path: Path, bad_inputs: dict[str, Path], args: list[str], code: int,
                       message: str) -> None:
    fill = {"tmp": str(tmp_path), **{k: str(v) for k, v in bad_inputs.items()}}
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["search", "--runs", str(runs), *[a.format(**fill) for a in args]])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.output.startswith(f"coord: error: {message.format(**fill)}"), res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not runs.exists()  # nothing half-written


def test_validate_and_plan(tmp_path: Path, bad_inputs: dict[str, Path]) -> None:
    from coordinator import resources

    example = resources.folder("registry") / "hardware_registry.example.yaml"
    ok = CliRunner().invoke(main, ["validate", str(example)])
    assert ok.exit_code == 0 and "valid registry: 2 platforms" in ok.output
    bad = CliRunner().invoke(main, ["validate", str(bad_inputs["reg"])])
    assert bad.exit_code == 2 and "max_concurent_jobs: unknown key" in bad.output
    plan = CliRunner().invoke(main, ["plan", "--registry", str(example), "--model", "xgboost"])
    assert plan.exit_code == 0
    assert "preferred   remote_4090" in plan.output and "fallback 1  local_m4" in plan.output


def test_report_on_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "is not a coord run directory" in res.output


def test_help_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom coordinator.cli import main\n"
            "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0\n"
            "print(sorted(m for m in ('optuna', 'mlflow', 'torch', 'xgboost', 'sklearn', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unusable_database_url_names_storage_hides_the_password_and_leaves_no_run(tmp_path: Path) -> None:
    """No server listens on port 1; without the driver installed, that is the error instead:
    either way one line naming --storage, before a run directory exists."""
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["search", "--runs", str(runs), "--model", "glm", "--trials", "2",
                                    "--storage", "postgresql://u:secret@127.0.0.1:1/db"])
    assert res.exit_code == 2 and "Traceback" not in res.output and "secret" not in res.output
    assert res.output.startswith("coord: error: --storage: cannot use postgresql://u:***@127.0.0.1:1/db: ")
    assert len(res.output.strip().splitlines()) == 1 and not runs.exists()


def test_a_database_url_holds_the_study(tmp_path: Path, small_csv: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    res = CliRunner().invoke(main, ["search", "--runs", str(tmp_path / "runs"), "--model", "glm", "--trials", "2",
                                    "--data", str(small_csv), "--target", "home_win", "--storage", url, "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(optuna.load_study(study_name="glm", storage=url).trials) == 2


@pytest.mark.parametrize(("metric", "direction", "warned"), [
    ("auc", "minimize", True), ("rmse", "maximize", True), ("auc", "maximize", False)])
def test_a_direction_against_the_metric_name_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       metric: str, direction: str, warned: bool) -> None:
    from coordinator.config.experiment import SearchOptions, resolve

    exp = resolve(SearchOptions(models=("glm",), metrics=(metric,), direction=direction,
                                runs_root=str(tmp_path)))
    assert exp.directions == (direction,)  # allowed: a metric may be misnamed
    text = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert (f"--direction {direction} for {metric}, which its name says to " in text) is warned, text


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    reg = tmp_path / "one.yaml"
    reg.write_text("platforms:\n  solo:\n    specs: {cpu_cores: 1, memory_gb: 4}\n    max_concurrent_jobs: 1\n")
    res = CliRunner().invoke(main, ["validate", str(reg)])
    assert res.exit_code == 0 and res.output == f"{reg}: valid registry: 1 platform (solo), 0 routing rules\n"
    plan = CliRunner().invoke(main, ["plan", "--registry", str(reg), "--model", "glm"]).output
    assert "solo: 1 core, 4 GB, no GPU, 1 slot\n" in plan and "local  1 slot  -- " in plan, plan
