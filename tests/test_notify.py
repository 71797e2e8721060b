"""--notify COMMAND: the user's command hears of a burst of failures, a host going down, 80%
of a budget and the search's end, each as one JSON object on its stdin (never on its
command line); a notifier that fails never stops the search; a bad command is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _notifier(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "events.jsonl"
    tool = tmp_path / "notify.py"
    tool.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.stdin.read())\nsys.exit(len(sys.argv) - 2)\n")
    return f"{sys.executable} {tool} {log}", log


def _search(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", "search", *args, "--run-dir", str(tmp_path / "run"),
                           "--no-mlflow", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_failures_a_host_down_a_budget_and_the_end_reach_the_command(tmp_path: Path, script, space_file) -> None:
    command, log = _notifier(tmp_path)
    reg = tmp_path / "reg.yaml"
    reg.write_text("platforms:\n  box:\n    connection: local\n    specs: {cpu_cores: 1, memory_gb: 1}\n"
                   "    max_concurrent_jobs: 1\n  gone:\n    connection: ssh\n    host: 127.0.0.1\n    port: 1\n"
                   "    specs: {cpu_cores: 1, memory_gb: 1}\n")
    cmd = script("if int(os.environ['COORD_TRIAL_NUMBER']) < 3:\n    sys.exit(78)\n"
                 "time.sleep(1.0)\nprint(f\"loss={p['x']}\")\n")
    res = _search(tmp_path, "--command", cmd, "--space", space_file("params:\n  x: {type: float, low: 0, high: 1}\n"),
                  "--metric", "loss", "--trials", "30", "--parallel", "1", "--registry", str(reg),
                  "--budget-machine-hours", str(10.0 / 3600), "--notify", command)
    assert res.returncode == 0, res.stdout + res.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "search_end" and kinds.count("search_end") == 1, kinds
    assert {"failures", "host_down", "budget"} <= set(kinds), kinds
    (burst,) = [e for e in events if e["event"] == "failures"]
    assert burst["count"] == 3 and burst["last_trial"] == 2 and burst["run"] == str(tmp_path / "run")
    (down,) = [e for e in events if e["event"] == "host_down"]
    assert down["platform"] == "gone" and down["quarantined"] is False
    assert "of the machine-hour budget" in next(e for e in events if e["event"] == "budget")["message"]
    end = events[-1]
    assert end["failed"] == 3 and end["ended_by"].startswith("the machine-hour budget")


def test_a_failing_notifier_never_stops_the_search(tmp_path: Path, script, space_file) -> None:
    command, _ = _notifier(tmp_path)
    res = _search(tmp_path, "--command", script("print('loss=1')\n"), "--space",
                  space_file("params:\n  x: {type: float, low: 0, high: 1}\n"), "--metric", "loss", "--trials", "2",
                  "--notify", command + " extra-argument-makes-it-exit-1")
    assert res.returncode == 0 and "trials: 2 complete" in res.stdout, res.stdout + res.stderr
    assert res.stderr.count("--notify") == 1 and "failed (exit 1" in res.stderr, res.stderr


def test_an_unsplittable_notify_command_is_one_line(tmp_path: Path, script, space_file) -> None:
    res = _search(tmp_path, "--command", script("print('loss=1')\n"), "--space",
                  space_file("params:\n  x: {type: float, low: 0, high: 1}\n"), "--metric", "loss",
                  "--notify", "notify-send 'unclosed")
    assert res.returncode == 2 and "--notify" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()
