from pathlib import Path

import pytest

from coordinator import resources
from coordinator.config.models import BUILTIN
from coordinator.config.space import check_space_matches, load_space
from coordinator.errors import SpaceError

SPACES = resources.folder("registry") / "spaces"


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_shipped_spaces_match_their_models(name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    check_space_matches(space, BUILTIN[name].params, name)
    assert space.distributions()


def test_xgboost_grid_is_the_users_324_configurations() -> None:
    grid = load_space(SPACES / "xgboost.yaml").grid()
    size = 1
    for values in grid.values():
        size *= len(values)
    assert size == 324
    assert grid["max_depth"] == [3, 5, 7, 9] and grid["learning_rate"] == [0.01, 0.05, 0.1]


def test_int_float_log_categorical(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("params:\n  a: {type: int, low: 1, high: 5, step: 2}\n  b: {type: float, low: 0.001, high: 1, log: true}\n"
                 "  c: {type: categorical, choices: [x, 'y', 3]}\nfixed: {d: 7}\n")
    s = load_space(p)
    d = s.distributions()
    assert d["b"].log and d["a"].step == 2 and s.fixed == {"d": 7}
    with pytest.raises(SpaceError, match="params.b: the grid sampler needs finite values"):
        s.grid()


@pytest.mark.parametrize(("text", "fragment"), [
    ("params:\n  a: {type: int, low: 5, high: 1}\n", "s.yaml:2: params.a.low: low (5) is greater than high (1)"),
    ("params:\n  a: {type: float, low: 0, high: 1, log: true}\n", "a log-scaled range needs low > 0"),
    ("params:\n  a: {type: nope}\n", "params.a.type: unknown value 'nope' (valid: categorical, float, int)"),
    ("params:\n  a: {type: categorical, choices: []}\n", "expected a non-empty list"),
    ("params:\n  a: {type: int, low: 1, high: 3, hgih: 4}\n", "params.a.hgih: unknown key"),
    ("params: {}\n", "at least one parameter is required"),
    # typos of the space's own keys: unknown, with the nearest valid key, before any missing key
    ("parms:\n  a: {type: int, low: 1, high: 3}\n",
     "s.yaml:1: parms: unknown key; did you mean 'params'? (valid: fixed, gpus_per_proc, model, params, procs)"),
    ("params:\n  a: {type: int, lo: 1, high: 3}\n", "s.yaml:2: params.a.lo: unknown key; did you mean 'low'?"),
    ("params:\n  a:\n    type: categorical\n    choice: [x, y]\n",
     "s.yaml:4: params.a.choice: unknown key; did you mean 'choices'?"),
    ("params:\n  a: {tpye: int, low: 1, high: 3}\n", "params.a.tpye: unknown key; did you mean 'type'?"),
    ("params:\n  a: {type: int, low: 1, high: 3, choices: [1]}\n",
     "params.a.choices: unknown key (valid: grid, high, label, log, low, step, type)"),
])
def test_bad_spaces(tmp_path: Path, text: str, fragment: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(p)
    assert fragment in str(err.value)


def test_space_that_does_not_match_the_model(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("params:\n  num_leaves: {type: int, low: 2, high: 64}\n")
    with pytest.raises(SpaceError, match="xgboost has no parameter 'num_leaves'.*valid: .*max_depth"):
        check_space_matches(load_space(p), BUILTIN["xgboost"].params, "xgboost")


@pytest.mark.parametrize(("text", "args", "message"), [
    # the model named in the space, or by --model: the check coord search --model makes
    ("model: xgboost\nparams:\n  num_leaves: {type: int, low: 2, high: 64}\n", [],
     "s.yaml:3: params.num_leaves: xgboost has no parameter 'num_leaves'"),
    ("params:\n  subsample: {type: float, low: 0.5, high: 1}\nfixed: {max_dpeth: 3}\n", ["--model", "xgboost"],
     "s.yaml:3: fixed.max_dpeth: xgboost has no parameter 'max_dpeth'; did you mean 'max_depth'?"),
    ("model: glm\nparams:\n  C: {type: float, low: 0.1, high: 1}\n", ["--model", "mlp"],
     "s.yaml:1: model: space is for model 'glm', not 'mlp'"),
])
def test_validate_refuses_what_search_refuses(tmp_path: Path, text: str, args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from coordinator.cli import main

    p = tmp_path / "s.yaml"
    p.write_text(text)
    model = args[1:] or ["xgboost"]
    outputs = [CliRunner().invoke(main, ["validate", str(p), *args]),
               CliRunner().invoke(main, ["search", "--space", str(p), "--model", *model, "--runs", str(tmp_path)])]
    for res in outputs:
        assert res.exit_code == 2 and res.output.startswith(f"coord: error: {p.parent}/{message}"), res.output
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_validate_says_which_models_a_space_fits(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from coordinator.cli import main

    p = tmp_path / "s.yaml"
    p.write_text("params:\n  max_depth: {type: int, low: 2, high: 6}\n")
    res = CliRunner().invoke(main, ["validate", str(p)])
    assert res.exit_code == 0 and res.output.strip().endswith(
        "valid search space: 1 parameter (max_depth); fits random_forest, xgboost (--model NAME checks one)")
    p.write_text("params:\n  num_leaves: {type: int, low: 2, high: 6}\n")
    res = CliRunner().invoke(main, ["validate", str(p)])
    assert res.exit_code == 0 and "for --command only: no built-in model has all of them" in res.output
