"""A registry written for another machine (the example's 10-core laptop on a 2-core box)
oversubscribes this one: `coord plan` and the search's pre-flight say so in one line per
local platform, with declared and real figures and the fix; a warning, never an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from coordinator.app import oversubscribed
from coordinator.cli import main
from coordinator.config.localhost import default_registry, detect_memory_gb
from coordinator.config.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1


def _registry(tmp_path: Path, cores: int, memory_gb: float, slots: int, name: str = "reg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"platforms:\n  box:\n    connection: local\n    specs: {{cpu_cores: {cores}, memory_gb: {memory_gb}}}\n"
                    f"    max_concurrent_jobs: {slots}\n", encoding="utf-8")
    return path


def test_plan_warns_when_a_local_platform_declares_more_than_this_machine_has(tmp_path: Path) -> None:
    cores, slots = 4 * CORES + 8, CORES + 1
    big = _registry(tmp_path, cores, 100000, slots)
    res = CliRunner().invoke(main, ["plan", "--registry", str(big), "--model", "glm"])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    threads = cores // slots
    assert warnings == [f"warning: box: the registry oversubscribes this machine: cpu_cores {cores} > {CORES} real "
                        f"cores; memory_gb 100000 > {detect_memory_gb():g} GB real; {slots} slots x {threads} threads "
                        f"= {slots * threads} > {CORES} real cores; lower cpu_cores to {CORES}, memory_gb to "
                        f"{detect_memory_gb():g}, max_concurrent_jobs to {CORES} in {big}"]


def test_more_slots_than_cores_is_oversubscribed_too(tmp_path: Path) -> None:
    reg = load_registry(str(_registry(tmp_path, 1, 0.5, CORES + 1)))
    (found,) = oversubscribed(reg)
    assert f"{CORES + 1} slots x 1 threads = {CORES + 1} > {CORES} real cores" in found["message"]
    assert found["message"].endswith(f"lower max_concurrent_jobs to {CORES} in {reg.source}")
    assert oversubscribed(reg, parallel=CORES) == []  # --parallel caps the slots in use


def test_a_registry_that_fits_and_the_default_one_get_no_warning(tmp_path: Path) -> None:
    fits = _registry(tmp_path, 1, 1, 1)
    res = CliRunner().invoke(main, ["plan", "--registry", str(fits), "--model", "glm"])
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    assert oversubscribed(default_registry()) == []


def test_search_warns_on_stderr_and_in_the_event_log_before_the_first_trial(tmp_path: Path, script,
                                                                              space_file) -> None:
    big = _registry(tmp_path, 4 * CORES + 8, 100000, 2)
    cmd = script("print('val_loss=0.5')\n")
    space = space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n")
    proc = subprocess.run([sys.executable, "-m", "coordinator", "search", "--command", cmd, "--space", space,
                           "--metric", "val_loss", "--trials", "1", "--parallel", "1", "--registry", str(big),
                           "--run-dir", "run", "--quiet"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # a warning, not an error
    lines = [ln for ln in proc.stderr.splitlines() if "oversubscribes" in ln]
    assert len(lines) == 1 and lines[0].startswith("WARNING ") and "box: the registry oversubscribes" in lines[0]
    assert f"1 slots x {(4 * CORES + 8) // 2} threads" in lines[0]  # --parallel 1: one slot in use
    events = [json.loads(ln) for ln in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.index("oversubscribed") < names.index("launched")
    event = events[names.index("oversubscribed")]
    assert event["platform"] == "box" and event["cpu_cores"] == 4 * CORES + 8 and event["real_cores"] == CORES
