"""Real searches: real subprocess trials, real Optuna journal storage, real training."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from coordinator.errors import SearchFailed
from coordinator.store.rundir import RunStore

QUAD = """
    x, y = p['x'], p['y']
    print(f"[coord-metric] {json.dumps({'loss': (x - 1) ** 2 + (y + 2) ** 2, 'x': x})}")
"""
XY = """
params:
  x: {type: float, low: -5, high: 5}
  y: {type: float, low: -5, high: 5}
"""


def _results(run_dir: str) -> list[dict]:
    return [r.result and r.result.to_json() for r in RunStore.open(Path(run_dir)).trials()]


def test_command_search_records_what_the_trial_computed(runs: Path, script, space_file) -> None:
    out = run_search(SearchOptions(command=script(QUAD), space=space_file(XY), metrics=("loss",), trials=8,
                                   parallel=2, sampler="random", seed=3, runs_root=str(runs)))
    assert out["complete"] == 8 and out["failed"] == 0
    results = _results(out["run_dir"])
    assert len(results) == 8
    for r in results:  # I4: every recorded value equals what the trial computed
        x, y = r["params"]["x"], r["params"]["y"]
        assert r["values"] == [pytest.approx((x - 1) ** 2 + (y + 2) ** 2)]
        assert r["status"] == "COMPLETE" and r["attempt"] == 1
    best = json.loads(Path(out["files"]["best"]).read_text())["custom"]
    assert best["value"] == min(r["values"][0] for r in results)
    rows = list(csv.DictReader(open(out["files"]["csv"])))
    assert len(rows) == 8 and {"number", "status", "loss", "x", "y", "platform", "attempts"} <= set(rows[0])


def test_fixed_seed_gives_the_same_configurations(runs: Path, script, space_file) -> None:
    params = []
    for run in ("a", "b"):
        out = run_search(SearchOptions(command=script(QUAD), space=space_file(XY), metrics=("loss",), trials=6,
                                       parallel=1, seed=11, run_dir=str(runs / run)))
        params.append([r["params"] for r in _results(out["run_dir"])])
    assert params[0] == params[1]


def test_katib_style_output_and_spec_via_env_not_argv(runs: Path, script, space_file) -> None:
    body = """
        assert os.environ['COORD_TRIAL_NUMBER'] == str(spec['number'])
        assert p['name'] not in ' '.join(sys.argv)
        print("epoch 1: val_loss=0.5")
        print(f"epoch 2: val_loss={len(p['name']) / 100}")
    """
    space = """
    params:
      name: {type: categorical, choices: ["$(touch CANARY)", "`touch CANARY`; rm -rf x | y\\n'\\"", "-oProxyCommand=z"]}
    """
    out = run_search(SearchOptions(command=script(body), space=space_file(space), metrics=("val_loss",), trials=6,
                                   sampler="grid", runs_root=str(runs)))
    assert out["complete"] == 3  # grid of 3: the trial budget is capped at the grid size
    for r in _results(out["run_dir"]):
        assert r["values"] == [pytest.approx(len(r["params"]["name"]) / 100)]
    assert not list(runs.parent.rglob("CANARY"))


def test_retries_permanent_failures_and_budget(runs: Path, script, space_file) -> None:
    body = """
        attempt = int(os.environ['COORD_ATTEMPT'])
        mode = p['mode']
        if mode == 'flaky' and attempt == 1:
            sys.exit(1)
        if mode == 'permanent':
            sys.exit(78)
        if mode == 'always':
            print('still broken', file=sys.stderr); sys.exit(3)
        if mode == 'nometric':
            sys.exit(0)
        print('[coord-metric] {"loss": %d}' % attempt)
    """
    space = "params:\n  mode: {type: categorical, choices: [flaky, permanent, always, nometric, ok]}\n"
    out = run_search(SearchOptions(command=script(body), space=space_file(space), metrics=("loss",),
                                   sampler="grid", max_retries=2, parallel=2, runs_root=str(runs)))
    by_mode = {r["params"]["mode"]: r for r in _results(out["run_dir"])}
    assert by_mode["flaky"]["status"] == "COMPLETE" and by_mode["flaky"]["values"] == [2.0]
    assert [a["kind"] for a in by_mode["flaky"]["attempts"]] == ["crashed", "ok"]
    assert len(by_mode["permanent"]["attempts"]) == 1 and by_mode["permanent"]["kind"] == "permanent"
    assert len(by_mode["always"]["attempts"]) == 3 and by_mode["always"]["status"] == "FAILED"  # 1 + max_retries
    assert "still broken" in by_mode["always"]["error"]
    assert by_mode["nometric"]["kind"] == "no_metric" and len(by_mode["nometric"]["attempts"]) == 1
    assert out["complete"] == 2 and out["failed"] == 3 and out["retries"] == 3
    # each attempt kept its own logs
    assert (Path(out["run_dir"]) / "trials" / str(by_mode["always"]["attempts"][0]["attempt"])).exists()


def test_trial_timeout_kills_the_whole_process_group(runs: Path, script, space_file, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    body = f"""
        import subprocess
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
        open({str(pidfile)!r}, 'w').write(str(child.pid))
        time.sleep(60)
    """
    t0 = time.monotonic()
    with pytest.raises(SearchFailed, match="no trial completed") as failed:
        run_search(SearchOptions(command=script(body), space=space_file("params:\n  a: {type: int, low: 0, high: 1}\n"),
                                 metrics=("loss",), trials=1, trial_timeout=1.0, max_retries=0,
                                 run_dir=str(runs / "t")))
    assert time.monotonic() - t0 < 20
    result = _results(str(runs / "t"))[0]
    assert result["kind"] == "timeout" and result["status"] == "FAILED"
    # the error says why (a trial stopped at its limit rarely says anything on its stderr)
    assert result["error"] == "timed out: stopped after 1 s (--trial-timeout)"
    assert str(failed.value).endswith("last error:\ntimed out: stopped after 1 s (--trial-timeout)")
    child = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the trial's child process outlived the timeout")


@pytest.mark.parametrize(("command", "why"), [("coord-no-such-program x.py", "not found on PATH"),
                                               ("./no-such-script.py", "no such file")])
def test_a_command_that_cannot_start_says_why_in_words(runs: Path, space_file, command: str, why: str) -> None:
    res = CliRunner().invoke(main, ["search", "--command", command, "--metric", "loss", "--trials", "1",
                                    "--max-retries", "0", "--space", space_file("params:\n  a: {type: int, low: 0, high: 1}\n"),
                                    "--runs", str(runs)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.rstrip().endswith(f"coord: cannot run {command.split()[0]}: {why}"), res.output
    assert "b'" not in res.output  # execvpe's bytes path of the last PATH entry tried


@pytest.mark.slow
def test_builtin_models_train_for_real_with_warm_workers(runs: Path, small_csv: Path, space_file) -> None:
    spaces = {
        "xgboost": "params:\n  max_depth: {type: int, low: 2, high: 4}\n  n_estimators: {type: int, low: 10, high: 30}\n",
        "random_forest": "params:\n  n_estimators: {type: int, low: 10, high: 20}\n  max_depth: {type: int, low: 2, high: 5}\n",
        "glm": "params:\n  C: {type: float, low: 0.01, high: 10, log: true}\n",
        "mlp": "params:\n  hidden_size: {type: int, low: 8, high: 16}\n  epochs: {type: int, low: 8, high: 10}\n"
               "  lr: {type: float, low: 0.005, high: 0.02}\n",
    }
    for model, text in spaces.items():
        out = run_search(SearchOptions(models=(model,), space=space_file(text, f"{model}.yaml"), data=str(small_csv),
                                       target="home_win", time_col="season", cv="walk-forward", folds=2,
                                       trials=3, parallel=2, seed=1, run_dir=str(runs / model)))
        assert out["complete"] == 3, model
        for r in _results(out["run_dir"]):
            assert 0.55 < r["metrics"]["auc"] < 1.0, (model, r["metrics"])  # learned the signal
            assert {"logloss", "brier", "train_seconds"} <= set(r["metrics"])


@pytest.mark.slow
def test_exact_rerun_of_a_trial_reproduces_its_metrics(runs: Path, small_csv: Path, space_file) -> None:
    import subprocess
    import sys

    from coordinator import resources
    out = run_search(SearchOptions(models=("xgboost",), data=str(small_csv), target="home_win", cv="kfold",
                                   space=space_file("params:\n  max_depth: {type: int, low: 2, high: 4}\n"),
                                   trials=2, parallel=2, run_dir=str(runs / "r")))
    rec = _results(out["run_dir"])[0]
    spec = Path(out["run_dir"]) / "trials" / "0" / "attempt-1" / "spec.json"
    recipe = json.loads((spec.parent / "recipe.json").read_text())  # what a rerun replays: no placement
    assert recipe["params"] == rec["params"] and recipe["attempt"] == 1 and "attempt_dir" not in recipe
    proc = subprocess.run([sys.executable, str(resources.folder("runners") / "run_trial.py")],
                          env={**os.environ, "COORD_SPEC": str(spec)}, capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("[coord-metric]")][-1]
    again = json.loads(line.split(" ", 1)[1])
    assert again["auc"] == rec["metrics"]["auc"] and again["logloss"] == rec["metrics"]["logloss"]


@pytest.mark.slow
def test_default_search_through_the_cli(runs: Path) -> None:
    """`coord search --model xgboost` with the embedded defaults (trials capped for time)."""
    res = CliRunner().invoke(main, ["search", "--model", "xgboost", "--trials", "2", "--runs", str(runs)])
    assert res.exit_code == 0, res.output
    assert "best auc:" in res.output and "trials.csv" in res.output
    run_dir = next(runs.iterdir())
    assert (run_dir / "data" / "team_features.csv").exists() and (run_dir / "study.journal").exists()
    assert (run_dir / "report" / "tables" / "top_xgboost.tex").exists()
    events = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0] == "search_start" and events[-1] == "search_end" and events.count("launched") == 2
    status = CliRunner().invoke(main, ["status", str(run_dir)])
    assert status.exit_code == 0 and "complete     2" in status.output


def test_a_script_that_never_prints_the_metric_says_what_was_expected_and_seen(runs: Path, script, space_file) -> None:
    body = """
        print("accuracy: 0.9")
        print("val_los=0.3")
    """
    with pytest.raises(SearchFailed) as err:
        run_search(SearchOptions(command=script(body), space=space_file(XY), metrics=("val_loss",), trials=1,
                                 parallel=1, runs_root=str(runs)))
    text = str(err.value)
    assert "without reporting val_loss" in text and "it reported: accuracy, val_los" in text
    assert "no error output" not in text
