"""A real ``mlflow server`` for the tests: on 127.0.0.1, a free port, its own SQLite
database and artefact folder; killed with SIGKILL (the whole process group) when asked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 120.0  # a cold start on two busy cores takes tens of seconds
# one worker, no job runner: the least a test needs (both are the server's own settings)
QUIET_ENV = {"MLFLOW_WORKERS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MLflow server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the MLflow server did not answer in {START_TIMEOUT_S:.0f}s: {log.read_text()[-2000:]}")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


class MlflowServer:
    """``start()`` (again after ``kill()``: the same port, database and artefacts)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = folder / "server.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> MlflowServer:
        self.starts += 1
        log = self.folder / f"server-{self.starts}.log"
        args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.db}", "--artifacts-destination",
                str(self.folder / "artifacts"), "--serve-artifacts"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **QUIET_ENV})
        wait_ready(self.url, self.proc, log)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
