"""docs/tracking.md's commands, as the tests run them: a ``coord`` and an ``mlflow`` on PATH
that are this checkout's and this Python's, and the shell a reader types them into."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "tracking.md"
DOC_PORT = "5000"  # the port the page shows; a test's server has its own (put in its place)


def shown_commands() -> list[str]:
    return [line.strip() for line in PAGE.read_text(encoding="utf-8").splitlines()
            if line.startswith("    ") and line.strip().split(" ", 1)[0] in ("coord", "mlflow")]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def shell_env(tmp: Path) -> dict[str, str]:
    """PATH with ``coord`` (this checkout) and ``mlflow`` (this Python's) first."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, module in (("coord", "coordinator"), ("mlflow", "mlflow")):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\nexec {sys.executable} -m {module} \"$@\"\n", encoding="utf-8")
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("COORD_MLFLOW", "MLFLOW_TRACKING_URI")}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "PYTHONPATH": str(ROOT)}


def run_shown(line: str, cwd: Path, port: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run one line of the page in bash (globs expand as for a reader), in ``cwd``."""
    assert line in shown_commands(), f"not on docs/tracking.md: {line}"
    if port is not None:
        line = line.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{port}")
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=shell_env(cwd), capture_output=True, text=True,
                          timeout=timeout)


# every command the page shows, and the test that runs it
DEFAULT_SEARCH = "coord search --model xgboost --trials 4"  # test_mlflow_default
UI = "mlflow ui --backend-store-uri sqlite:///runs/mlflow.db"  # test_mlflow_default
SYNC = "coord sync runs/xgboost-*"  # test_mlflow_default
REGISTER_AS = "coord search --model glm --trials 4 --register-as home-win"  # test_mlflow_default
OFF = "coord search --model glm --trials 4 --no-mlflow"  # test_mlflow_default
SERVER_SEARCH = "coord search --model glm --trials 4 --mlflow-uri http://127.0.0.1:5000"  # test_mlflow_server
SERVER_SYNC = "coord sync runs/glm-* --mlflow-uri http://127.0.0.1:5000"  # test_mlflow_server
ALL = (DEFAULT_SEARCH, UI, SYNC, REGISTER_AS, OFF, SERVER_SEARCH, SERVER_SYNC)
