from coordinator.config.registry import Candidate, Gpu, Platform, Registry, RoutingRule, Specs
from coordinator.records import Allocation, Needs
from coordinator.schedule.routing import Busy, Infeasible, Ledger, route


def _reg(allow_local: bool = True) -> Registry:
    laptop = Platform("laptop", "Laptop", "local", Specs(10, 24), 2, capabilities=("XGBoost_CPU", "Python_sklearn"))
    gpu = Platform("gpu", "GPU box", "local", Specs(16, 64, (Gpu(0, "RTX 4090", 24),)), 3)
    rules = (RoutingRule("XGBoost", (Candidate("gpu", "GPU"), Candidate("laptop", "fallback"))),
             RoutingRule("GLM", (Candidate("laptop", "CPU"),)))
    return Registry({"laptop": laptop, "gpu": gpu}, rules, allow_local)


XGB = Needs("XGBoost", 1.0, "preferred", ("XGBoost_CPU",))
GLM = Needs("GLM", 1.0, "none", ("Python_sklearn",))


def test_preferred_platform_and_gpu_slot_first() -> None:
    d = route(XGB, _reg(), Ledger())
    assert isinstance(d, Allocation)
    assert (d.platform, d.slot, d.gpu, d.fallback) == ("gpu", 0, 0, False)


def test_cpu_models_keep_off_gpu_slots_while_cpu_slots_are_free() -> None:
    d = route(Needs("Other"), _reg(), Ledger())
    assert isinstance(d, Allocation) and d.platform == "laptop"
    ledger = Ledger()
    ledger.take(Allocation("gpu", 0, 0, ""), 0, 0.5)
    d = route(Needs("XGBoost", gpu="none"), Registry({"gpu": _reg().platforms["gpu"]}), ledger)
    assert isinstance(d, Allocation) and d.slot == 1 and d.gpu is None


def test_fallback_when_preferred_is_full_then_busy() -> None:
    reg, ledger = _reg(), Ledger()
    placed = []
    for n in range(5):
        d = route(XGB, reg, ledger)
        assert isinstance(d, Allocation)
        ledger.take(d, n, XGB.memory_gb)
        placed.append((d.platform, d.fallback))
    assert placed == [("gpu", False)] * 3 + [("laptop", True)] * 2
    d = route(XGB, reg, ledger)
    assert isinstance(d, Busy) and "gpu is full" in d.reason and "laptop is full" in d.reason
    ledger.release(Allocation("laptop", 0, None, ""), XGB.memory_gb)
    assert isinstance(route(XGB, reg, ledger), Allocation)


def test_down_host_is_skipped_and_counts_as_busy_not_infeasible() -> None:
    d = route(XGB, _reg(), Ledger(), down={"gpu"})
    assert isinstance(d, Allocation) and d.platform == "laptop"
    d = route(GLM, _reg(), Ledger(), down={"laptop", "gpu"})
    assert isinstance(d, Busy) and "laptop is down" in d.reason


def test_infeasible_everywhere_says_why() -> None:
    d = route(Needs("GLM", memory_gb=100), _reg(), Ledger())
    assert isinstance(d, Infeasible)
    assert d.reasons["laptop"] == "needs 100 GB memory, platform has 24 GB"
    d = route(Needs("NN", gpu="required"), _reg(), Ledger())
    assert isinstance(d, Allocation) and d.platform == "gpu"
    d = route(Needs("X", capabilities=("R_tidymodels",)), Registry({"laptop": _reg().platforms["laptop"]}),
              Ledger())
    assert isinstance(d, Infeasible) and "lacks the capability" in d.reasons["laptop"]


def test_memory_is_a_capacity_limit() -> None:
    reg, ledger = Registry({"laptop": _reg().platforms["laptop"]}), Ledger()
    ledger.take(Allocation("laptop", 0, None, ""), 0, 20.0)
    d = route(Needs("GLM", memory_gb=8), reg, ledger)
    assert isinstance(d, Busy) and "no free memory" in d.reason


def test_avoid_moves_a_platform_last_for_retries() -> None:
    d = route(XGB, _reg(), Ledger(), avoid={"gpu"})
    assert isinstance(d, Allocation) and d.platform == "laptop" and d.fallback


def test_unsupported_connection_is_infeasible_until_its_backend_exists() -> None:
    reg = _reg(allow_local=False)
    d = route(GLM, reg, Ledger(), runnable=("ssh",))
    assert isinstance(d, Infeasible) and "not supported" in d.reasons["laptop"]


def test_learned_speed_waits_for_a_faster_busy_host() -> None:
    from coordinator.schedule.speed import Estimate, SpeedModel

    reg, ledger = _reg(), Ledger()
    for n in range(3):  # the GPU box is full
        ledger.take(Allocation("gpu", n, None, ""), n, 1.0)
    static = route(XGB, reg, ledger)
    assert isinstance(static, Allocation) and static.platform == "laptop"  # static rules fall back
    fast = {"gpu": Estimate(10.0, wait_s=5.0), "laptop": Estimate(60.0)}
    d = route(XGB, reg, ledger, estimates=fast)
    assert isinstance(d, Busy) and "waiting for gpu" in d.reason
    slow_gpu = {"gpu": Estimate(50.0, wait_s=30.0), "laptop": Estimate(60.0)}
    d = route(XGB, reg, ledger, estimates=slow_gpu)
    assert isinstance(d, Allocation) and d.platform == "laptop" and "finish first" in d.reason
    # an estimate missing for a usable candidate: static order
    assert route(XGB, reg, ledger, estimates={"gpu": Estimate(1.0)}) == static
    model = SpeedModel(min_samples=2)
    model.observe("XGBoost", "gpu", 3.0)
    assert model.expected("XGBoost", "gpu") is None
    model.observe("XGBoost", "gpu", 5.0)
    assert model.expected("XGBoost", "gpu") == 4.0 and model.table() == {"XGBoost": {"gpu": 4.0}}


def test_learned_speed_prefers_the_faster_free_host_and_ties_keep_rule_order() -> None:
    from coordinator.schedule.speed import Estimate

    d = route(XGB, _reg(), Ledger(), estimates={"gpu": Estimate(30.0), "laptop": Estimate(10.0)})
    assert isinstance(d, Allocation) and d.platform == "laptop"  # the GPU is not assumed faster
    d = route(XGB, _reg(), Ledger(), estimates={"gpu": Estimate(10.0), "laptop": Estimate(10.0)})
    assert isinstance(d, Allocation) and d.platform == "gpu"


def test_near_equal_hosts_never_leave_a_free_slot_idle() -> None:
    from coordinator.schedule.speed import Estimate

    reg, ledger = _reg(), Ledger()
    for n in range(3):
        ledger.take(Allocation("gpu", n, None, ""), n, 1.0)
    near = {"gpu": Estimate(1.00, wait_s=0.01), "laptop": Estimate(1.06)}  # gpu 5% sooner: not worth a wait
    d = route(XGB, reg, ledger, estimates=near)
    assert isinstance(d, Allocation) and d.platform == "laptop"
