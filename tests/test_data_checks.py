"""A user's CSV is checked before a run exists: every validation fold must be scorable
(two classes), and a binary target's positive class is decided, printed, recorded in
run.json and used by the trial side."""

from __future__ import annotations

import importlib
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from coordinator import resources
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions, resolve
from coordinator.errors import ConfigError


def games(path: Path, seasons: dict[int, int], one_class: tuple[int, ...] = (), labels: tuple[Any, Any] = ("no", "yes"),
          seed: int = 3) -> Path:
    """A small seasonal table: two numeric features, a string feature and a binary target
    with signal; every row of the seasons in ``one_class`` gets the second label."""
    rng = random.Random(seed)
    lines = ["season,x1,x2,venue,won"]
    for season, n in seasons.items():
        for _ in range(n):
            x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
            win = season in one_class or rng.random() < 1 / (1 + math.exp(-(1.5 * x1 - x2)))
            lines.append(f"{season},{x1:.4f},{x2:.4f},{rng.choice(['home', 'away'])},{labels[int(win)]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def search(runs: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["search", "--model", "glm", "--trials", "2", "--parallel", "1",
                                     "--runs", str(runs), *args])


def one_line_error(res: Any, runs: Path) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coord: error: "), res.output
    assert not runs.exists()  # checked before the run directory exists
    return str(lines[0])


def test_a_last_season_with_one_row_is_refused_before_the_run(runs: Path, tmp_path: Path) -> None:
    """The issue's case: the last season has one game, so every trial's AUC would be NaN.
    Fewer folds cannot help (the last season always validates): the message says so."""
    data = games(tmp_path / "g.csv", {2015: 40, 2016: 40, 2017: 40, 2018: 40, 2019: 40, 2020: 1})
    line = one_line_error(search(runs, "--data", str(data), "--target", "won", "--time-col", "season",
                                 "--folds", "2"), runs)
    assert line.startswith(f"coord: error: {data}: --folds: walk-forward fold 2 of 2 validates on season 2020: "
                           "1 row, 1 class ("), line
    assert "the last season always validates" in line and "--cv kfold" in line, line


def test_a_middle_season_with_one_class_names_the_fold_and_fewer_folds(runs: Path, tmp_path: Path) -> None:
    data = games(tmp_path / "g.csv", {s: 30 for s in range(2015, 2021)}, one_class=(2018,))
    line = one_line_error(search(runs, "--data", str(data), "--target", "won", "--time-col", "season",
                                 "--folds", "3"), runs)
    assert f"{data}: --folds: walk-forward fold 1 of 3 validates on season 2018: 30 rows, 1 class (yes)" in line, line
    assert "--folds 2" in line, line
    # with two folds season 2018 only trains: accepted
    exp = resolve(SearchOptions(models=("glm",), data=str(data), target="won", time_col="season", folds=2))
    assert exp.data is not None and exp.data["folds"] == 2


def test_a_training_fold_with_one_class_is_refused(runs: Path, tmp_path: Path) -> None:
    data = games(tmp_path / "g.csv", {s: 30 for s in range(2015, 2019)}, one_class=(2015,))
    line = one_line_error(search(runs, "--data", str(data), "--target", "won", "--time-col", "season",
                                 "--folds", "3"), runs)
    assert "walk-forward fold 1 of 3 trains on season 2015: 30 rows, 1 class (yes)" in line, line
    assert "--folds 2" in line, line


@pytest.mark.parametrize(("cv", "expected"), [
    ("kfold", "--folds: k-fold fold "),
    ("holdout", "--cv: holdout: cannot split"),
])
def test_random_splits_with_a_rare_class_are_refused(runs: Path, tmp_path: Path, cv: str, expected: str) -> None:
    rows = ["x,y"] + [f"{i},{int(i == 7)}" for i in range(30)]  # one positive row
    data = tmp_path / "rare.csv"
    data.write_text("\n".join(rows) + "\n")
    line = one_line_error(search(runs, "--data", str(data), "--target", "y", "--cv", cv, "--folds", "3"), runs)
    assert f"{data}: {expected}" in line, line


def test_a_string_target_gets_a_positive_class_printed_recorded_and_sent(runs: Path, tmp_path: Path) -> None:
    data = games(tmp_path / "g.csv", {s: 40 for s in range(2015, 2019)})
    res = search(runs, "--data", str(data), "--target", "won", "--time-col", "season", "--folds", "2",
                 "--run-dir", str(runs / "r"))
    assert res.exit_code == 0, res.output
    assert res.output.count("positive class 'yes'") == 1, res.output
    run_json = json.loads((runs / "r" / "run.json").read_text())
    assert run_json["data"]["positive_class"] == "yes" and run_json["data"]["classes"] == ["no", "yes"]
    spec = json.loads((runs / "r" / "trials" / "0" / "attempt-1" / "spec.json").read_text())
    assert spec["data"]["positive_class"] == "yes"
    chosen = resolve(SearchOptions(models=("glm",), data=str(data), target="won", time_col="season",
                                   positive_class="no"))
    assert chosen.data is not None and chosen.data["positive_class"] == "no"


@pytest.mark.parametrize(("labels", "positive"), [((0, 1), 1), ((False, True), True), (("no", "yes"), "yes"),
                                                  ((2, 10), 10)])
def test_the_default_positive_class(tmp_path: Path, labels: tuple[Any, Any], positive: Any) -> None:
    data = games(tmp_path / "g.csv", {2015: 30, 2016: 30}, labels=labels)
    exp = resolve(SearchOptions(models=("glm",), data=str(data), target="won"))
    assert exp.data is not None and exp.data["positive_class"] == positive
    assert type(exp.data["positive_class"]) is type(positive)


def test_positive_class_mistakes(runs: Path, tmp_path: Path) -> None:
    data = games(tmp_path / "g.csv", {2015: 30, 2016: 30})
    line = one_line_error(search(runs, "--data", str(data), "--target", "won", "--positive-class", "maybe"), runs)
    assert line == f"coord: error: {data}: --positive-class: 'maybe' is not a class of target 'won' (valid: no, yes)"
    line = one_line_error(search(runs, "--data", str(data), "--target", "x1", "--positive-class", "1"), runs)
    assert "--positive-class: the task is regression" in line, line
    line = one_line_error(search(runs, "--positive-class", "2"), runs)
    assert line.endswith("--positive-class: '2' is not a class of target 'home_win' (valid: 0, 1)"), line
    builtin = resolve(SearchOptions()).data
    assert builtin is not None and builtin["positive_class"] == 1
    assert resolve(SearchOptions(positive_class="0")).data == {**builtin, "positive_class": 0}
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match="--positive-class"):
        resolve(SearchOptions(command="python x.py", space=str(space), metrics=("loss",), positive_class="1"))


def _trialkit() -> Any:
    sys.path.insert(0, str(resources.folder("runners")))
    try:
        return importlib.import_module("trialkit")
    finally:
        sys.path.remove(str(resources.folder("runners")))


def test_the_trial_side_encodes_the_recorded_positive_class(tmp_path: Path) -> None:
    data = games(tmp_path / "g.csv", {2015: 30, 2016: 30, 2017: 30})
    won = [line.rsplit(",", 1)[1] for line in data.read_text().splitlines()[1:]]
    spec = {"path": str(data), "target": "won", "task": "classification", "cv": "walk-forward",
            "time_col": "season", "folds": 2, "split_seed": 0}
    trialkit = _trialkit()
    assert trialkit.load_dataset({**spec, "positive_class": "no"}).y.tolist() == [float(w == "no") for w in won]
    assert trialkit.load_dataset(spec).y.tolist() == [float(w == "yes") for w in won]


def test_the_trial_side_names_a_fold_it_cannot_score(tmp_path: Path) -> None:
    data = games(tmp_path / "g.csv", {2015: 30, 2016: 30, 2017: 1})
    trialkit = _trialkit()
    with pytest.raises(trialkit.DataProblem, match="fold 2 of 2 validates on season 2017: 1 row, 1 class"):
        trialkit.load_dataset({"path": str(data), "target": "won", "task": "classification", "cv": "walk-forward",
                               "time_col": "season", "folds": 2, "split_seed": 0})
