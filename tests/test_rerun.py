"""``coord rerun``: real searches of every deterministic built-in model, trained again from
their recipes; bit-for-bit matches, a changed data file refused with both hashes, the
finished run left untouched, and a recorded value that does not match caught. The page
docs/reproducibility.md's commands are the ones run here."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config import datasets
from coordinator.config.experiment import SearchOptions
from tests.tracking import docs

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reproducibility.md"
SEARCH = ("coord search --name thesis --model glm --model random_forest --model xgboost --model mlp --trials 1 "
          "--data games.csv --target home_win --time-col season")
SHOW = "coord show runs/thesis-* 3"
RERUN_ONE = "coord rerun runs/thesis-* 3"
RERUN_ALL = "coord rerun runs/thesis-* --all"
SHOWN = (SEARCH, SHOW, RERUN_ONE, RERUN_ALL)


def _shown() -> list[str]:
    return [line.strip() for line in PAGE.read_text(encoding="utf-8").splitlines()
            if line.startswith("    coord ")]


def _sh(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert line in _shown(), f"not on docs/reproducibility.md: {line}"
    # MLflow off (COORD_MLFLOW=0, as for every test not about tracking): refitting and
    # registering four best models cost 45 s here and is not what this page is about
    env = {**docs.shell_env(cwd), "COORD_MLFLOW": "0"}
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _tree(root: Path) -> dict[str, str]:
    """Every file of a run directory and its content hash."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_command_the_page_shows_is_run_here() -> None:
    assert sorted(_shown()) == sorted(SHOWN)


@pytest.mark.slow
def test_the_page_every_builtin_model_reruns_bit_for_bit(tmp_path: Path, small_csv: Path) -> None:
    """As the page shows it: one trial of each built-in model (GLM, random forest, XGBoost
    and the MLP, all on CPU), then each trained again from its recipe."""
    shutil.copy(small_csv, tmp_path / "games.csv")  # the page's data file: the built-in set, smaller
    assert _sh(SEARCH, tmp_path).returncode == 0
    (run,) = (tmp_path / "runs").glob("thesis-*")
    before = _tree(run)
    show = _sh(SHOW, tmp_path)
    assert show.returncode == 0 and "made on " in show.stdout and "  seeds    sampler 0" in show.stdout
    one = _sh(RERUN_ONE, tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "exact: every metric is bit for bit the recorded one" in one.stdout
    recorded = json.loads((run / "trials" / "3" / "result.json").read_text())
    auc = next(line for line in one.stdout.splitlines() if line.strip().startswith("auc "))
    assert auc.split()[1:4] == [repr(recorded["metrics"]["auc"])] * 2 + ["same"]
    every = _sh(RERUN_ALL, tmp_path)
    assert every.returncode == 0, every.stdout + every.stderr
    assert every.stdout.strip().splitlines()[-1] == "4 trials: 4 exact, 0 differ, 0 failed, 0 skipped"
    models = {line.split()[1] for line in every.stdout.splitlines()[1:-1]}
    assert models == {"glm", "random_forest", "xgboost", "mlp"}
    assert _tree(run) == before  # the finished run was only read


@pytest.fixture
def glm_run(tmp_path: Path, small_csv: Path) -> tuple[Path, Path]:
    data = tmp_path / "games.csv"
    shutil.copy(small_csv, data)
    out = run_search(SearchOptions(models=("glm",), data=str(data), target="home_win", time_col="season", folds=2,
                                   trials=2, run_dir=str(tmp_path / "run")))
    return Path(out["run_dir"]), data


def test_a_changed_data_file_is_refused_with_both_hashes(glm_run: tuple[Path, Path]) -> None:
    run, data = glm_run
    old = datasets.sha256(data)
    data.write_text(data.read_text() + data.read_text().splitlines()[-1] + "\n")
    before = _tree(run)
    res = CliRunner().invoke(main, ["rerun", str(run), "1"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output == (f"coord: error: data: the data file {data} changed since trial 1 ran: recorded sha256 "
                          f"{old}, now {datasets.sha256(data)}; restore the original file to rerun it\n")
    assert _tree(run) == before


def test_a_difference_is_caught_and_bad_arguments_are_one_line(glm_run: tuple[Path, Path]) -> None:
    run, _ = glm_run
    path = run / "trials" / "0" / "result.json"
    result = json.loads(path.read_text())
    true_auc = result["metrics"]["auc"]
    result["metrics"]["auc"] = true_auc + 1e-12  # one bit off: a rerun must say so, and fail
    path.write_text(json.dumps(result))
    res = CliRunner().invoke(main, ["rerun", str(run), "0", "--json"])
    assert res.exit_code == 1, res.output
    (check,) = json.loads(res.output)
    assert check["verdict"] == "differs" and check["why_not_exact"] == ""
    assert {m["name"]: m["rerun"] for m in check["metrics"]}["auc"] == true_auc
    ok = CliRunner().invoke(main, ["rerun", str(run), "1"])
    assert ok.exit_code == 0 and "exact" in ok.output
    for args, message in (
            (["rerun", str(run)], "coord: error: TRIAL: name the trials to rerun, or give --all (not both)\n"),
            (["rerun", str(run), "9"], f"coord: error: TRIAL: {run} has no trial 9 (it has trials 0-1)\n"),
            (["rerun", str(run), "0", "--host", "gpu_box"],
             "coord: error: --host: no platform 'gpu_box' in <embedded default> (valid: local)\n")):
        bad = CliRunner().invoke(main, args)
        assert (bad.exit_code, bad.output) == (2, message)


def test_a_command_trial_says_why_it_may_not_match(tmp_path: Path, script, space_file) -> None:  # noqa: ANN001
    out = run_search(SearchOptions(command=script("print('loss=%r' % (p['x'] ** 2))"), metrics=("loss",),
                                   space=space_file("params:\n  x: {type: float, low: -1, high: 1}\n"), trials=1,
                                   run_dir=str(tmp_path / "run")))
    res = CliRunner().invoke(main, ["rerun", out["run_dir"], "0"])
    assert res.exit_code == 0, res.output
    assert "exact" in res.output  # this script is deterministic; coord only could not promise it
    (check,) = json.loads(CliRunner().invoke(main, ["rerun", out["run_dir"], "0", "--json"]).output)
    assert check["why_not_exact"].startswith("a --command script")
