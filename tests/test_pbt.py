"""Population-based training with real MLP trials: segments behind a barrier, the worst
quarter taking a better member's checkpoint with perturbed parameters, lineage recorded
and reported."""

from __future__ import annotations

import csv as csvlib
import json
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.errors import ConfigError
from coordinator.reporting.fmt import fmt
from coordinator.reporting.show import render, trial_record
from coordinator.store.rundir import RunStore

SPACE = ("params:\n  lr: {type: float, low: 0.0001, high: 0.05, log: true}\n"
         "  dropout: {type: float, low: 0.0, high: 0.5}\nfixed: {epochs: 8, hidden_size: 16, batch_size: 128}\n")


def test_pbt_exploits_and_explores_with_lineage(tmp_path: Path, small_csv: Path, space_file) -> None:
    out = run_search(SearchOptions(models=("mlp",), space=space_file(SPACE), data=str(small_csv), target="home_win",
                                   cv="kfold", folds=2, trials=4, parallel=2, pbt=True, pbt_interval=2,
                                   checkpoint_every=0.0, run_dir=str(tmp_path / "run")))
    run = Path(out["run_dir"])
    records = {rec.number: rec for rec in RunStore.open(run).trials()}
    assert out["complete"] == 4 and all(r.result.status == "COMPLETE" for r in records.values())
    for rec in records.values():  # three segments of 2 epochs, then the last one runs to the end (8)
        assert [a.kind for a in rec.result.attempts] == ["segment"] * 3 + ["ok"]
        assert "segment_step" not in rec.result.metrics  # a control marker, not a metric
    lineage = [(n, e) for n, rec in records.items() for e in rec.result.lineage]
    assert lineage, "with 4 members the worst one exploits after every segment"
    assert sorted({e["generation"] for _, e in lineage}) == [1, 2, 3]  # one exploit per generation
    for number, e in lineage:
        assert e["donor"] != number and e["step"] == 2 * e["generation"]
        # the next attempt started from the donor's checkpoint, re-keyed for the new parameters
        stderr = (run / f"trials/{number}/attempt-{e['generation'] + 1}/stderr").read_text()
        assert f"resuming from the checkpoint at step {e['step']}" in stderr
        assert {k: e["params"][k] for k in ("epochs", "hidden_size", "batch_size")} == \
            {"epochs": 8, "hidden_size": 16, "batch_size": 128}  # the architecture is never perturbed
        assert 0.0001 <= e["params"]["lr"] <= 0.05 and 0.0 <= e["params"]["dropout"] <= 0.5
    exploited = {n for n, _ in lineage}
    for n in exploited:  # the trial ends with the parameters of its last exploit
        assert records[n].result.params == records[n].result.lineage[-1]["params"]
        assert records[n].info.params != records[n].result.params  # trial.json keeps where it began
    # the reports pair each score with the parameters it came from: the last segment's
    table = {int(r["number"]): r for r in csvlib.DictReader((run / "report/trials.csv").open())}
    for n, rec in records.items():
        assert {k: float(table[n][k]) for k in ("lr", "dropout")} == \
            {k: rec.result.params[k] for k in ("lr", "dropout")}
    best = json.loads((run / "report/best.json").read_text())["mlp"]
    winner = records[best["number"]]
    assert {k: best["params"][k] for k in ("lr", "dropout")} == {k: winner.result.params[k] for k in ("lr", "dropout")}
    assert best.get("lineage", []) == list(winner.result.lineage or [])
    shown = render(trial_record(RunStore.open(run), min(exploited)))
    assert f"lr={fmt(records[min(exploited)].result.params['lr'])}" in shown.split("began with")[0]
    csv = (run / "report/lineage.csv").read_text().splitlines()
    assert csv[0] == "study,trial,generation,step,donor,params" and len(csv) == 1 + len(lineage)
    assert (run / "report/tables/lineage_mlp.tex").exists()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "exploit" for e in events) == len(lineage)


@pytest.mark.parametrize(("opts", "message"), [
    ({"command": "python t.py", "space": "s.yaml", "metrics": ("loss",)}, "built-in models"),
    ({"models": ("glm",)}, "built-in models"),
    ({"models": ("mlp",), "pruner": "asha"}, "no pruner"),
    ({"models": ("mlp",), "trials": 3}, "too small"),
])
def test_pbt_refuses_what_it_cannot_do(tmp_path: Path, opts: dict, message: str) -> None:
    (tmp_path / "s.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    from coordinator.config.experiment import resolve

    with pytest.raises(ConfigError, match=message):
        resolve(SearchOptions(pbt=True, runs_root=str(tmp_path), **{"trials": 8, **opts,
                              **({"space": str(tmp_path / "s.yaml")} if "space" in opts else {})}))


def test_an_exploiting_member_does_not_inherit_its_donors_best(tmp_path: Path, small_csv: Path) -> None:
    """The donor's checkpoint carries the donor's best-so-far; a member that takes it scores
    only the steps it trained with its own (explored) parameters, so its result pairs the
    score with the parameters that produced it."""
    from coordinator.schedule.pbt import rekey_checkpoint
    from tests.test_checkpoints import _final, _run, _spec

    donor = {"epochs": 8, "hidden_size": 16, "dropout": 0.1, "batch_size": 64, "lr": 0.003}
    spec = _spec(tmp_path, "donor", "mlp", donor, small_csv)
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "stop_at": 4}))  # one PBT segment
    assert _run(spec)[0] == 75
    source = sorted((tmp_path / "donor" / "ckpt").glob("step-*.ckpt"))[-1]
    assert source.name == "step-00000004.ckpt"
    member = {**donor, "lr": 5.0}  # an explore that ruins training: every later step is worse
    target = tmp_path / "member" / "ckpt"
    target.mkdir(parents=True)
    (target / source.name).write_bytes(rekey_checkpoint(source.read_bytes(), member))
    rc, lines, err = _run(_spec(tmp_path, "member", "mlp", member, small_csv, target))
    assert rc == 0 and "resuming from the checkpoint at step 4" in err
    final = _final(lines)
    assert final["best_step"] > 4  # scored on a step trained with lr=5.0, not the donor's model
    curve = _curve(lines)
    assert min(curve) > 4 and final["auc"] == curve[max(curve)]  # no report carries the donor's value
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "stop_at": None}))
    rc, rest, _ = _run(spec)  # the donor goes on with its own parameters
    assert rc == 0 and _curve(rest)[5] != curve[5]  # the explored lr took effect (not the optimiser's saved one)


def _curve(lines: list[str]) -> dict[float, float]:
    """A trial's reported objective by step (the best so far at each)."""
    reports = [json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("[coord-metric]")]
    return {r["step"]: r["auc"] for r in reports if "step" in r and "auc" in r}
