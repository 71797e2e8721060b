"""The launch plan is pure: recipe + attempt + allocation + a host's layout -> text. Checked
as text, the way a generated job script is."""

from __future__ import annotations

import json

from coordinator.backends.plan import HostLayout, build
from coordinator.records import Allocation, Recipe

DATA = {"path": "/home/me/games.csv", "sha256": "ab" * 32, "target": "won"}
HOST = HostLayout("/srv/coord/runs/r1", "/srv/coord/runners/h1", "/opt/py/bin/python", "/srv/coord", 4)


def _recipe(**kw: object) -> Recipe:
    base = dict(number=7, study="s", params={"max_depth": 3, "eta": 0.1}, seed=107, model="xgboost", command=None,
                data=DATA, metrics=("auc",), timeout_s=60.0)
    return Recipe(**{**base, **kw})  # type: ignore[arg-type]


def test_the_recipe_is_location_free_and_round_trips() -> None:
    r = _recipe()
    text = json.dumps(r.to_json())
    assert "attempt_dir" not in text and "checkpoint_dir" not in text and "/srv/" not in text
    assert Recipe.from_json(json.loads(text)) == r


def test_a_built_in_trial_is_placed_on_the_host_with_its_paths_threads_and_gpu() -> None:
    plan = build(_recipe(), 2, Allocation("gpu", 1, 0, "rule"), HOST, "/srv/coord/data/abab.csv")
    assert plan.attempt_dir == "/srv/coord/runs/r1/trials/7/attempt-2"
    assert plan.checkpoint_dir == "/srv/coord/runs/r1/trials/7/checkpoint"
    spec = json.loads(plan.spec_text)
    assert spec["data"]["path"] == "/srv/coord/data/abab.csv" and spec["threads"] == 4 and spec["device"] == "cuda"
    assert spec["attempt"] == 2 and spec["params"] == {"max_depth": 3, "eta": 0.1}
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0" and plan.env["OMP_NUM_THREADS"] == "4"
    assert plan.env["COORD_SPEC"] == f"{plan.attempt_dir}/spec.json"
    assert plan.argv == ("/opt/py/bin/python", "/srv/coord/runners/h1/run_trial.py")
    assert plan.warm is not None and plan.warm["slot_dir"] == "/srv/coord/runs/r1/slots/1"
    assert not any(k.startswith("COORD_") for k in plan.warm["env"])  # a worker serves many attempts
    assert plan.cwd == "/srv/coord" and plan.timeout_s == 60.0


def test_parameters_never_reach_argv_or_environment() -> None:
    plan = build(_recipe(model=None, command=("python3", "train.py"), data=None,
                         params={"x": "$(rm -rf ~)"}), 1, Allocation("cpu", 0, None, "rule"), HOST)
    request = json.dumps({k: v for k, v in plan.request("7.1").items() if k != "files"})
    assert "rm -rf" not in request and "rm -rf" not in " ".join(plan.argv) + json.dumps(plan.env)
    assert "rm -rf" in plan.request("7.1")["files"]["spec.json"]  # only in the spec file
    assert plan.warm is None and plan.env["CUDA_VISIBLE_DEVICES"] == "" and json.loads(plan.spec_text)["device"] == "cpu"


def test_the_same_inputs_give_the_same_plan_text() -> None:
    a = build(_recipe(), 1, Allocation("gpu", 0, None, "rule"), HOST)
    b = build(_recipe(), 1, Allocation("gpu", 0, None, "rule"), HOST)
    assert a.request("7.1") == b.request("7.1") and a.spec_text == b.spec_text
    assert json.loads(a.spec_text)["data"]["path"] == DATA["path"]  # no host path given: the recipe's own
