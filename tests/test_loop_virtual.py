"""The loop on a virtual clock (fake backend): retries, backoff, deadlines, placement —
logic only, no sleeping. Real subprocess and SSH trials are tested elsewhere."""

from __future__ import annotations

import random
from pathlib import Path

import optuna

from coordinator.backends.fake import FakeBackend, Script, VirtualClock
from coordinator.config.registry import Candidate, Platform, Registry, RoutingRule, Specs
from coordinator.config.space import Param, Space
from coordinator.records import Needs
from coordinator.schedule import decide
from coordinator.schedule.loop import Coordinator
from coordinator.schedule.plans import Limits, StudyPlan
from coordinator.schedule.speed import SpeedModel
from coordinator.search import Search
from coordinator.store.rundir import RunStore
from coordinator.tracking.tracker import Tracker

SPACE = Space({"x": Param("x", "float", 0.0, 1.0)})


def _run(tmp_path: Path, script, registry: Registry, plans_spec, parallel: int, *, speed: bool | SpeedModel = False,
         trial_timeout: float | None = None, max_retries: int = 3, promote_step: int | None = None):
    clock = VirtualClock()
    store = RunStore.create(tmp_path, "sim", {"metrics": ["loss"], "directions": ["minimize"], "studies": []})
    plans = []
    for name, model_type, n in plans_spec:
        study = Search.create(name=name, storage=optuna.storages.InMemoryStorage(),
                              sampler=optuna.samplers.RandomSampler(seed=0), space=SPACE, metrics=("loss",),
                              directions=("minimize",), n_trials=n)
        plans.append(StudyPlan(study, Needs(model_type), None, ("true",), None, 0, promote_step=promote_step))
    backend = FakeBackend(clock, script)
    coord = Coordinator(store, plans, registry, backend, Limits(parallel, None, trial_timeout),
                        decide.RetryPolicy(max_retries, base_s=10.0, cap_s=40.0, rng=random.Random(0)),
                        Tracker(), ("local",), clock=clock,
                        speed=speed if isinstance(speed, SpeedModel) else SpeedModel() if speed else None)
    summary = coord.run()
    return summary, store, backend, clock


def _one_host(slots: int = 2) -> Registry:
    return Registry({"box": Platform("box", "box", "local", Specs(4, 16), slots)})


def test_retry_backoff_on_the_virtual_clock(tmp_path: Path) -> None:
    def script(spec, attempt, alloc):
        return Script(5.0, exit_code=1) if attempt < 3 else Script(5.0, metrics={"loss": 1.0})
    summary, store, backend, clock = _run(tmp_path, script, _one_host(1), [("s", "T", 1)], 1)
    (rec,) = store.trials()
    assert rec.result.status == "COMPLETE" and [a.kind for a in rec.result.attempts] == \
        ["crashed", "crashed", "ok"]
    starts = [t for t, _, _, _ in backend.launched]
    assert 5 + 5 <= starts[1] <= 5 + 10  # first backoff within [base/2, base]
    assert starts[1] + 5 + 10 <= starts[2] <= starts[1] + 5 + 20  # then [base, 2 base]
    assert clock() < 60 and summary["retries"] == 2


def test_trial_deadline_on_the_virtual_clock(tmp_path: Path) -> None:
    summary, store, _, clock = _run(tmp_path, lambda s, n, a: Script(1000.0, metrics={"loss": 1.0}), _one_host(1),
                                    [("s", "T", 2)], 1, trial_timeout=30.0)
    assert [r.result.kind for r in store.trials()] == ["timeout", "timeout"]
    assert 60 <= clock() < 61  # two trials, each stopped at its 30 s deadline


def _pool() -> Registry:
    laptop = Platform("laptop", "Laptop", "local", Specs(10, 24), 4)
    gpu = Platform("gpu", "GPU box", "local", Specs(16, 64), 2)
    rules = (RoutingRule("XGBoost", (Candidate("gpu", "GPU"), Candidate("laptop", "fallback"))),
             RoutingRule("RandomForest", (Candidate("laptop", "CPU"), Candidate("gpu", "fallback"))))
    return Registry({"laptop": laptop, "gpu": gpu}, rules, allow_local_fallback=False)


TRUE_S = {("XGBoost", "gpu"): 10.0, ("XGBoost", "laptop"): 60.0,
          ("RandomForest", "laptop"): 30.0, ("RandomForest", "gpu"): 25.0}


def pool_script(spec, attempt, alloc, salt: int = 0) -> Script:
    model_type = "XGBoost" if spec.study == "xgb" else "RandomForest"
    jitter = 1.0 + 0.1 * (((spec.number + salt) * 7919) % 11 - 5) / 5  # +-10%, deterministic
    return Script(TRUE_S[(model_type, alloc.platform)] * jitter, metrics={"loss": 1.0})


def test_learned_placement_beats_static_rules_on_a_heterogeneous_pool(tmp_path: Path) -> None:
    plans = [("xgb", "XGBoost", 40), ("rf", "RandomForest", 40)]
    static, *_, clock_static = _run(tmp_path / "a", pool_script, _pool(), plans, 6)
    learned, *_, clock_learned = _run(tmp_path / "b", pool_script, _pool(), plans, 6, speed=True)
    assert static["complete"] == learned["complete"] == 80
    # the target, and near the best split of this pool (262.5 s, computed in
    # benchmarks/sim_placement.py, which also reports the ratio over several noise seeds)
    assert clock_learned() <= 0.7 * clock_static()
    assert clock_learned() <= 1.1 * 262.5
    assert learned["learned_speed_s"]["XGBoost"]["gpu"] < learned["learned_speed_s"]["XGBoost"]["laptop"]


def test_a_promoted_trial_moves_to_the_faster_host_when_it_frees(tmp_path: Path) -> None:
    """Fidelity-aware placement: at the tail of a search the fast host is idle while a
    trial grinds on the slow one; once that trial passes its first rung it checkpoints
    (exit 75 on the stop request) and continues on the fast host, spending no retry."""
    slow, fast = (Platform(n, n, "local", Specs(4, 16), 1) for n in ("slow", "fast"))
    registry = Registry({"slow": slow, "fast": fast}, rules=(RoutingRule("T", (Candidate("slow", ""),
                                                                              Candidate("fast", ""))),))
    speed = SpeedModel()
    speed.observe("T", "slow", 30.0)
    speed.observe("T", "fast", 15.0)

    def script(spec, attempt, alloc):
        if alloc.platform == "fast":  # a resumed attempt has only the rest to do
            return Script(15.0 if attempt == 1 else 6.0, metrics={"loss": 1.0})
        return Script(30.0, metrics={"loss": 1.0},
                      steps=tuple((3.0 * k, {"step": k, "loss": 1.0}) for k in range(1, 10)))
    summary, store, backend, clock = _run(tmp_path, script, registry, [("s", "T", 2)], 2, speed=speed,
                                          max_retries=0, promote_step=3)
    moved = [rec.result.to_json() for rec in store.trials() if len(rec.result.attempts) == 2]
    assert len(moved) == 1 and summary["complete"] == 2
    assert [(a["platform"], a["kind"]) for a in moved[0]["attempts"]] == [("slow", "migrated"), ("fast", "ok")]
    assert clock() == 24.0  # moved at its report at t=18 (the fast host freed at 15): 18 + 6, not 30
    events = (store.root / "events.jsonl").read_text()
    assert '"event": "migrate"' in events and '"target": "fast"' in events


def test_no_move_to_a_host_less_than_30_percent_faster(tmp_path: Path) -> None:
    slow, fast = (Platform(n, n, "local", Specs(4, 16), 1) for n in ("slow", "fast"))
    registry = Registry({"slow": slow, "fast": fast}, rules=(RoutingRule("T", (Candidate("slow", ""),
                                                                              Candidate("fast", ""))),))
    speed = SpeedModel()
    speed.observe("T", "slow", 30.0)
    speed.observe("T", "fast", 25.0)  # less than 30% faster: not worth a move

    def script(spec, attempt, alloc):
        return Script(30.0 if alloc.platform == "slow" else 25.0, metrics={"loss": 1.0},
                      steps=tuple((3.0 * k, {"step": k, "loss": 1.0}) for k in range(1, 10)))
    summary, store, _, _ = _run(tmp_path, script, registry, [("s", "T", 2)], 2, speed=speed, promote_step=3)
    assert summary["complete"] == 2 and all(len(r.result.attempts) == 1 for r in store.trials())
    assert '"event": "migrate"' not in (store.root / "events.jsonl").read_text()


def test_a_window_that_closes_moves_the_running_trial_and_takes_no_new_one(tmp_path: Path) -> None:
    """The laptop is available only until 60 s from now (its window, in wall time, moves
    with the virtual clock): its running trial is moved to the workstation when the window
    closes (migrated, no retry spent), and no trial starts there after."""
    import time as _time

    from coordinator.config.windows import Window

    now = _time.localtime(_time.time())
    minute = now.tm_hour * 60 + now.tm_min
    if minute >= 24 * 60 - 3:
        minute = 0  # too close to midnight for a window ending 2 minutes from now: shift it
    window = Window(0, minute + 2, tuple(range(7)))  # closes 1-2 minutes from now, every day
    laptop = Platform("laptop", "Laptop", "local", Specs(4, 16), 1, available=(window,))
    work = Platform("work", "Workstation", "local", Specs(4, 16), 1)
    reg = Registry({"laptop": laptop, "work": work},
                   (RoutingRule("T", (Candidate("laptop", "first"), Candidate("work", "then"))),),
                   allow_local_fallback=False)
    summary, store, backend, clock = _run(tmp_path, lambda s, n, a: Script(200.0, metrics={"loss": 1.0}), reg,
                                          [("s", "T", 3)], 2)
    results = {r.number: r.result for r in store.trials()}
    assert all(r is not None and r.status == "COMPLETE" for r in results.values()) and summary["retries"] == 0
    moved = [r for r in results.values() if r and [a.platform for a in r.attempts] == ["laptop", "work"]]
    assert len(moved) == 1 and [a.kind for a in moved[0].attempts] == ["migrated", "ok"]
    laptop_starts = [t for t, _, _, alloc in backend.launched if alloc.platform == "laptop"]
    assert laptop_starts == [0.0] and len(backend.launched) == 4, backend.launched
    events = (store.root / "events.jsonl").read_text()
    assert '"event": "window_closed", "platform": "laptop"' in events
    assert clock() == 600.0  # the moved trial waited for the workstation's slot: three 200 s trials there
