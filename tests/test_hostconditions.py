"""Host conditions of availability (``available: {when_idle: ..., on_ac_power: ...}``): the
facts script run on a host (runners/hostfacts.py, real /proc, real processes, real power
files where this machine has them, a fake sysfs root and recorded nvidia-smi output where
it has none: no GPU and no battery here), the sampler thread, the gate's hysteresis, the
registry keys and their errors, and the loop closing a platform whose host is busy."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from coordinator import resources
from coordinator.backends.fake import FakeBackend, Script, VirtualClock
from coordinator.backends.hostwatch import HostSample, HostWatch, local_sampler
from coordinator.config.registry import Candidate, Platform, Registry, RoutingRule, Specs, load_registry
from coordinator.config.space import Param, Space
from coordinator.config.windows import Conditions
from coordinator.errors import RegistryError
from coordinator.records import Needs
from coordinator.schedule import decide
from coordinator.schedule.hostgate import Gate
from coordinator.schedule.loop import Coordinator
from coordinator.schedule.plans import Limits, StudyPlan
from coordinator.search import Search
from coordinator.store.rundir import RunStore
from coordinator.tracking.progress import PlainLines, gpu_line
from coordinator.tracking.tracker import Snapshot, Tracker

SCRIPT = resources.folder("runners") / "hostfacts.py"
_spec = importlib.util.spec_from_file_location("hostfacts", SCRIPT)
assert _spec is not None and _spec.loader is not None
hostfacts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostfacts)

# recorded from `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits`
# on a two-GPU workstation (the second GPU's utilisation not supported: [N/A])
SMI_GPUS = "0, 87, 20110, 24564\n1, [N/A], 3, 24564\n"
SMI_APPS = "{own}\n{other}\n"


def _supply(root: Path, name: str, kind: str, online: str | None) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "type").write_text(kind + "\n")
    if online is not None:
        (d / "online").write_text(online + "\n")


def test_ac_power_from_a_sysfs_root_and_from_pmset(tmp_path: Path) -> None:
    _supply(tmp_path / "plugged", "AC", "Mains", "1")
    _supply(tmp_path / "plugged", "BAT0", "Battery", None)
    _supply(tmp_path / "battery", "ADP1", "Mains", "0")
    _supply(tmp_path / "battery", "BAT0", "Battery", None)
    _supply(tmp_path / "desktop", "ups", "UPS", None)  # no Mains supply: does not say
    assert hostfacts.on_ac_power(str(tmp_path / "plugged"), pmset="") is True
    assert hostfacts.on_ac_power(str(tmp_path / "battery"), pmset="") is False
    assert hostfacts.on_ac_power(str(tmp_path / "desktop"), pmset="") is None
    assert hostfacts.on_ac_power(str(tmp_path / "missing"), pmset="") is None
    assert hostfacts.parse_pmset("Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t81%;") is False
    assert hostfacts.parse_pmset("Now drawing from 'AC Power'\n") is True and hostfacts.parse_pmset("") is None
    # this machine's own power files, read for real (a container has none: None, counted as on AC)
    real = hostfacts.on_ac_power()
    mains = [d for d in Path("/sys/class/power_supply").glob("*") if (d / "type").is_file()
             and (d / "type").read_text().strip() == "Mains"]
    assert real == (any((d / "online").read_text().strip() == "1" for d in mains) if mains else None)


def _own_trial(base: Path, number: int) -> subprocess.Popen[bytes]:
    """A process in its own session with its pid file where the agent writes one."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    adir = base / "trials" / str(number) / "attempt-1"
    adir.mkdir(parents=True)
    (adir / "pid").write_text(str(proc.pid))
    return proc


def test_the_facts_script_finds_the_runs_own_processes_and_others_gpu_processes(tmp_path: Path) -> None:
    busy = _own_trial(tmp_path, 0)
    try:
        sessions = hostfacts.own_sessions(str(tmp_path))
        assert sessions == {busy.pid}
        assert hostfacts.own_cpu(sessions) > 0.3  # the busy loop uses a core (shared with the tests)
        assert hostfacts.own_cpu(set()) == 0.0
        smi = tmp_path / "nvidia-smi"  # the recorded output, answered as nvidia-smi answers each query
        smi.write_text("#!/bin/sh\ncase \"$1\" in --query-gpu*) printf '" + SMI_GPUS.replace("\n", "\\n")
                       + "';; *) printf '" + SMI_APPS.format(own=busy.pid, other=os.getpid()).replace("\n", "\\n")
                       + "';; esac\n")
        smi.chmod(0o755)
        gpus, others = hostfacts.gpu_facts(sessions, str(smi))
        assert others == 1  # this test's own process; the run's trial is left out
        assert gpus == [{"index": 0, "util": 87.0, "mem_used_mb": 20110.0, "mem_total_mb": 24564.0},
                        {"index": 1, "util": None, "mem_used_mb": 3.0, "mem_total_mb": 24564.0}]
        (tmp_path / "trials" / "0" / "attempt-1" / "exit.json").write_text("{}")  # ended: no longer the run's
        assert hostfacts.own_sessions(str(tmp_path)) == set()
    finally:
        busy.kill()
        busy.wait()
    assert hostfacts.parse_apps("No running processes found\n") == []


def test_the_watch_samples_this_machine_for_real_without_nvidia_smi(tmp_path: Path) -> None:
    watch = HostWatch({"here": local_sampler(sys.executable, str(SCRIPT), str(tmp_path))}, every_s=0.2)
    try:
        assert watch.latest("here") is None  # the first question starts the thread; no wait
        deadline = time.monotonic() + 20
        while (s := watch.latest("here")) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.close()
    assert s is not None and isinstance(s.load1, float) and s.own_cpu == 0.0
    assert s.gpu_util is None and s.gpu_procs is None  # no nvidia-smi on this machine: none, not an error
    assert watch.latest("elsewhere") is None


def _s(at: float, load: float = 0.0, own: float = 0.0, procs: int | None = None, ac: bool | None = None) -> HostSample:
    return HostSample(at, load, own, None, procs, ac)


def test_the_gate_closes_at_once_and_opens_only_after_settling() -> None:
    g = Gate(Conditions(load_below=1.5, gpu_procs_below=1, settle_s=60))
    assert not g.update(None) and g.why == "no reading from the host yet"
    assert g.update(_s(0)) and g.update(_s(0))  # the first fine reading opens; the same one again changes nothing
    assert not g.update(_s(10, load=2.0)) and g.why == "others' load 2.00 >= 1.5"
    assert not g.update(_s(20, load=0.5)) and not g.update(_s(75, load=0.5))  # fine since 20: 55 s
    assert g.update(_s(80, load=0.5))  # 60 s fine: open
    assert not g.update(_s(90, procs=1)) and g.why == "1 other GPU process (>= 1)"
    assert not g.update(_s(100, load=1.7)) and not g.update(_s(120)) and g.update(_s(180))
    assert g.update(_s(190, procs=None))  # no nvidia-smi: no GPU process


def test_the_runs_own_load_is_left_out_as_the_kernel_averages_it() -> None:
    g = Gate(Conditions(load_below=1.5, settle_s=0))
    assert g.update(_s(0, load=2.0, own=2.0))  # two of our trials, running a while: the host is idle
    # our trials end: the kernel's average decays over a minute, and so does our share
    assert g.update(_s(10, load=2.0 * 0.846, own=0.0)) and g.update(_s(30, load=2.0 * 0.61, own=0.0))
    assert not g.update(_s(40, load=3.5, own=0.0))  # someone else started work


def test_on_ac_power_and_a_host_that_does_not_say() -> None:
    g = Gate(Conditions(on_ac_power=True, settle_s=30))
    assert g.update(_s(0, ac=None))  # no power information: counted as on AC
    assert not g.update(_s(10, ac=False)) and g.why == "on battery"
    assert not g.update(_s(20, ac=True)) and g.update(_s(50, ac=True))


def _registry(tmp_path: Path, available: str, connection: str = "connection: local") -> Registry:
    path = tmp_path / "reg.yaml"
    path.write_text(f"platforms:\n  laptop:\n    {connection}\n    specs: {{cpu_cores: 2, memory_gb: 4}}\n"
                    f"    available: {available}\n")
    return load_registry(str(path))


def test_the_registry_reads_conditions_and_refuses_bad_ones(tmp_path: Path) -> None:
    p = _registry(tmp_path, "{when_idle: {load_below: 1.5, gpu_procs_below: 1}, on_ac_power: true}").platforms["laptop"]
    assert p.when == Conditions(1.5, 1, 60.0, True) and p.available == ()
    p = _registry(tmp_path, '{hours: "19:00-08:00", on_ac_power: true}').platforms["laptop"]
    assert p.when == Conditions(on_ac_power=True) and [w.describe() for w in p.available] == ["19:00-08:00 every day"]
    p = _registry(tmp_path, '{windows: [{hours: "19:00-08:00"}, {days: weekends}], when_idle: {gpu_procs_below: 2, '
                            'settle_s: 30}}').platforms["laptop"]
    assert p.when == Conditions(None, 2, 30.0) and len(p.available) == 2
    with pytest.raises(RegistryError, match=r"available\.when_idle\.load_below: when_idle needs load_below"):
        _registry(tmp_path, "{when_idle: {}}")
    with pytest.raises(RegistryError, match=r"available\.when_idle\.load_bellow: unknown key"):
        _registry(tmp_path, "{when_idle: {load_bellow: 1}}")
    with pytest.raises(RegistryError, match=r"available\[0\]\.on_ac_power: on_ac_power holds for the platform"):
        _registry(tmp_path, '[{hours: "19:00-08:00", on_ac_power: true}]')
    with pytest.raises(RegistryError, match=r"available\.on_ac_power: .*only local and ssh platforms"):
        _registry(tmp_path, "{on_ac_power: true}", "connection: slurm")


def test_coord_plan_shows_the_conditions(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from coordinator.cli import main

    _registry(tmp_path, "{when_idle: {load_below: 1.5, gpu_procs_below: 1}, on_ac_power: true}")
    out = CliRunner().invoke(main, ["plan", "--registry", str(tmp_path / "reg.yaml"), "--model", "glm"]).output
    assert "available when idle (load below 1.5, no other GPU process; open again after 60 s idle), on AC power, " \
           "read on the host every 10 s (not so, it takes no trial and its running ones move)" in out, out


def test_a_busy_host_closes_moves_its_trial_and_opens_again(tmp_path: Path) -> None:
    """On the virtual clock: the laptop's owner starts work at t=50 (others' load 3) and
    stops at t=300: its trial moves to the workstation (migrated, no retry spent), and the
    laptop takes trials again only once idle for settle_s (60 s), at t=360."""
    laptop = Platform("laptop", "Laptop", "local", Specs(4, 16), 1, when=Conditions(1.5, None, 60.0))
    work = Platform("work", "Workstation", "local", Specs(4, 16), 1)
    reg = Registry({"laptop": laptop, "work": work},
                   (RoutingRule("T", (Candidate("laptop", "first"), Candidate("work", "then"))),),
                   allow_local_fallback=False)
    clock = VirtualClock()
    store = RunStore.create(tmp_path, "sim", {"metrics": ["loss"], "directions": ["minimize"], "studies": []})
    search = Search.create(name="s", storage=optuna.storages.InMemoryStorage(),
                           sampler=optuna.samplers.RandomSampler(seed=0), space=Space({"x": Param("x", "float", 0, 1)}),
                           metrics=("loss",), directions=("minimize",), n_trials=4)
    backend = FakeBackend(clock, lambda s, n, a: Script(200.0, metrics={"loss": 1.0}))
    # sampled every 10 s, as on a real host
    backend.samples = lambda platform, t: _s(t // 10 * 10, load=3.0 if 50 <= t < 300 else 0.2)
    coord = Coordinator(store, [StudyPlan(search, Needs("T"), None, ("true",), None, 0)], reg, backend,
                        Limits(2, None, None), decide.RetryPolicy(3, rng=random.Random(0)), Tracker(), ("local",),
                        clock=clock)
    summary = coord.run()
    results = [r.result for r in store.trials()]
    assert all(r is not None and r.status.value == "COMPLETE" for r in results) and summary["retries"] == 0
    moved = [r for r in results if r and [a.platform for a in r.attempts] == ["laptop", "work"]]
    assert len(moved) == 1 and [a.kind for a in moved[0].attempts] == ["migrated", "ok"]
    laptop_starts = [t for t, _, _, alloc in backend.launched if alloc.platform == "laptop"]
    assert laptop_starts[0] == 0.0 and all(t >= 360.0 for t in laptop_starts[1:]) and len(laptop_starts) > 1
    events = (store.root / "events.jsonl").read_text()
    assert '"event": "window_closed", "platform": "laptop", "reason": "others\' load 3.00 >= 1.5"' in events
    assert '"reason": "others\' load 3.00 >= 1.5"' in events.split('"event": "migrate"')[1].split("\n")[0]


def test_the_live_display_shows_gpu_utilisation() -> None:
    assert gpu_line((87.0, None)) == ", GPU 87% ?" and gpu_line(None) == "" and gpu_line(()) == ""
    import io

    from coordinator.records import Result, TrialStatus

    out = io.StringIO()
    lines = PlainLines(out)
    lines.on_tick(Snapshot(total=1, gpu={"gpu-box": (87.0, 12.0)}))
    result = Result(0, "s", 0, None, TrialStatus.COMPLETE, "ok", [1.0], {}, {}, 0, 1, (), "gpu-box", "gpu-box",
                    3.0, 3.0)
    lines.on_trial_end(result)
    assert out.getvalue().endswith("on gpu-box in 3.0s (GPU 87% 12%)\n"), out.getvalue()


def test_the_docs_registry_and_command_run_as_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/usage.md, "When a platform is available": its registry, loaded, and its coord plan."""
    import shlex

    from click.testing import CliRunner

    from coordinator.cli import main

    text = (Path(__file__).parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    section = text.split("### When a platform is available")[1].split("\n### ")[0].split("\n## ")[0]
    block = section.split("\n\n    platforms:")[1].split("\n\n")[0]
    (tmp_path / "laptop.yaml").write_text("platforms:" + "\n".join(ln[4:] for ln in block.splitlines()) + "\n")
    p = load_registry(str(tmp_path / "laptop.yaml")).platforms["laptop"]
    assert p.when == Conditions(1.5, 1, 60.0, True) and [w.describe() for w in p.available] == ["19:00-08:00 weekdays"]
    inline = section.split("conditions: `")[1].split("`")[0].replace("\n", " ")
    (tmp_path / "several.yaml").write_text("platforms:\n  laptop:\n    connection: local\n"
                                           f"    specs: {{cpu_cores: 2, memory_gb: 4}}\n    {inline}\n")
    assert len(load_registry(str(tmp_path / "several.yaml")).platforms["laptop"].available) == 2
    (command,) = [ln.strip() for ln in section.splitlines() if ln.startswith("    coord ")]
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, shlex.split(command)[1:])
    assert out.exit_code == 0, out.output
    assert "available: 19:00-08:00 weekdays" in out.output and "when idle (load below 1.5" in out.output


def test_coord_plan_aligns_long_names_and_connections(tmp_path: Path) -> None:
    """Walk-through defect: a platform name over 16 characters and a kubernetes connection
    pushed their rows' columns out of line with the others."""
    from click.testing import CliRunner

    from coordinator.cli import main

    path = tmp_path / "reg.yaml"
    path.write_text("platforms:\n  laptop:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 4}\n"
                    "  a-very-long-platform-name:\n    connection: kubernetes\n"
                    "    kubernetes: {image: \"python:3.11\", host_path: /tmp/x}\n"
                    "    specs: {cpu_cores: 2, memory_gb: 4}\n")
    out = CliRunner().invoke(main, ["plan", "--registry", str(path), "--model", "glm"]).output
    rows = [ln for ln in out.splitlines() if ln.startswith(("  preferred", "  fallback"))]
    assert len(rows) == 2 and len({ln.index(" 2 slots") for ln in rows}) == 1, out
    heads = [ln for ln in out.splitlines() if ln.startswith(("  laptop ", "  a-very-long-platform-name "))]
    assert len({ln.index(":") - len(ln.split()[1]) for ln in heads}) == 1, out
