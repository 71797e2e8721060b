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
