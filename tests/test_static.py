"""The project's own static checks, so CI enforces them: mypy --strict and ruff."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_on_the_package() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_ruff() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is missing: scripts/install.sh installs the test extras")
    proc = subprocess.run([ruff, "check", "coordinator", "runners", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
