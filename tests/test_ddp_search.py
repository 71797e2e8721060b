"""`procs: 2` through the coordinator: docs/usage.md's commands ("Trials of several
processes") run as the page shows them, on this machine's local agent, with real training:
the plan's reason for the platform that cannot hold the trial, a search whose trials each
take two slots and run under torchrun, and an exact rerun with as many processes."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli import main

ROOT = Path(__file__).resolve().parents[1]


def shown() -> list[str]:
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.startswith("    coord ") and "mlp-ddp" in ln]


def test_the_page_shows_plan_search_and_rerun() -> None:
    assert [line.split()[1] for line in shown()] == ["plan", "search", "rerun"]


def test_a_space_asking_procs_of_a_one_process_model_is_refused(tmp_path: Path) -> None:
    space = tmp_path / "xgb.yaml"
    space.write_text("params:\n  max_depth: {type: int, low: 2, high: 4}\nprocs: 2\n")
    res = CliRunner().invoke(main, ["plan", "--model", "xgboost", "--space", str(space)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output == (f"coord: error: {space}:3: procs: xgboost trains in one process; procs: 2 is for the "
                          "mlp model (torch DistributedDataParallel) (valid: 1)\n")
    same = CliRunner().invoke(main, ["validate", str(space), "--model", "xgboost"])  # the check coord search makes
    assert same.exit_code == 2 and same.output == res.output
    ok = CliRunner().invoke(main, ["validate", str(ROOT / "docs" / "examples" / "mlp-ddp.yaml")])
    assert ok.exit_code == 0 and ok.output.endswith("for mlp, 2 processes per trial\n"), ok.output


@pytest.mark.slow
def test_the_pages_procs_commands_run_as_shown(tmp_path: Path, small_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    shutil.copy(small_csv, tmp_path / "games.csv")
    plan, search, rerun = (shlex.split(line)[1:] for line in shown())
    res = CliRunner().invoke(main, plan)
    assert res.exit_code == 0, res.output
    assert "mlp (model type NeuralNetwork, GPU none, 2 processes per trial on CPU slots):" in res.output
    assert ("tiny             local  never: needs 2 CPU slots (procs: 2), platform has 1 "
            "(max_concurrent_jobs 1, 0 with GPU)") in res.output

    res = CliRunner().invoke(main, search)
    assert res.exit_code == 0, res.output
    assert "trials: 2 complete, 0 pruned, 0 failed" in res.output
    run = tmp_path / "runs" / "mlp-ddp"
    for n in (0, 1):
        adir = run / "trials" / str(n) / "attempt-1"
        alloc = json.loads((adir / "allocation.json").read_text())
        assert alloc["platform"] == "workstation" and alloc["slots"] == [0, 1] and alloc["gpus"] == []
        launch = json.loads((adir / "launch.json").read_text())
        assert launch["argv"][1].endswith("runners/ddp_launch.py") and launch["argv"][2:] == ["2"]
        assert json.loads((adir / "recipe.json").read_text())["procs"] == 2
        assert json.loads((adir / "spec.json").read_text())["device"] == "cpu"
        out = (adir / "stdout").read_text().splitlines()
        assert [json.loads(x.split(" ", 1)[1]).get("step") for x in out if x.startswith("[coord-metric]")] == \
            [1, 2, 3, None]  # rank 0 alone reports
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    launched = [e for e in events if e.get("event") == "launched"]
    ended = {e["number"]: e for e in events if e.get("event") == "ended"}
    # each trial held both slots: the second started only once the first had ended
    assert len(launched) == 2 and launched[1]["mono"] >= ended[launched[0]["number"]]["mono"]

    res = CliRunner().invoke(main, rerun)
    assert res.exit_code == 0, res.output
    assert "exact: every metric is bit for bit the recorded one" in res.output
