"""coord dashboard: optuna-dashboard on a run's study, served while the search runs, on
127.0.0.1 only (the test fails if the port listens anywhere else), read-only (a study the
page tries to create is refused and the study is unchanged), and a path that is no run is
one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from coordinator.cli import main
from coordinator.tracking.dashboard import open_read_only
from tests.tracking.server import free_port

ROOT = Path(__file__).resolve().parents[1]


def _listening(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                out.add(addr)
    return out


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_dashboard_serves_a_live_search_on_loopback_and_changes_nothing(tmp_path: Path, script,
                                                                            space_file) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = tmp_path / "run"
    cmd = script("time.sleep(0.7)\nprint(f\"loss={p['x']}\")\n")
    search = subprocess.Popen([sys.executable, "-m", "coordinator", "search", "--command", cmd, "--space",
                               space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n"), "--metric", "loss",
                               "--trials", "8", "--parallel", "2", "--run-dir", str(run), "--quiet", "--no-mlflow"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    dash = None
    try:
        while not (run / "study.journal").exists():
            assert search.poll() is None, search.communicate()
            time.sleep(0.1)
        dash = subprocess.Popen([sys.executable, "-m", "coordinator", "dashboard", str(run), "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        assert dash.stdout is not None
        first = dash.stdout.readline()
        assert _listening(port), "the URL was printed before the port listened"
        assert first.startswith(f"dashboard: http://127.0.0.1:{port}/dashboard/ (custom; read-only"), first
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and dash.poll() is None, "the dashboard did not start"
                time.sleep(0.2)
        assert status == 200 and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["custom"]
        assert _listening(port) == {"0100007F"}, _listening(port)  # 127.0.0.1, and nothing else
        status, page = _get(f"http://127.0.0.1:{port}/dashboard/")
        assert status == 200 and b"<html" in page.lower()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/studies", method="POST",
                                         data=json.dumps({"study_name": "x", "directions": ["minimize"]}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
            refused: tuple[int, bytes] | None = None
        except urllib.error.HTTPError as exc:
            refused = exc.code, exc.read()
        # refused as forbidden, with the reason; not a server error (500) with a traceback
        assert refused is not None and refused[0] == 403, refused
        assert "coord dashboard is read-only: create_new_study refused" in json.loads(refused[1])["reason"]
        status, body = _get(f"http://127.0.0.1:{port}/api/studies/0")
        assert status == 200 and json.loads(body)["name"] == "custom"
        out, err = search.communicate(timeout=240)
        assert search.returncode == 0, out + err  # the search was not disturbed
    finally:
        console = ""
        if dash is not None and dash.poll() is None:
            os.killpg(dash.pid, signal.SIGTERM)
            console = dash.communicate(timeout=30)[0]
        assert "Traceback" not in console and " 403 " in console, console
        if search.poll() is None:
            search.kill()
    storage, studies = open_read_only(run)
    assert studies == ["custom"] and len(storage.get_all_trials(0)) == 8


def test_a_path_that_is_no_run_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["dashboard", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "Traceback" not in res.output and str(tmp_path / "nope") in res.output, res.output
