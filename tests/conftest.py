"""Shared fixtures: small real data, tiny trial scripts, an isolated runs folder."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from coordinator.config import datasets


@pytest.fixture(autouse=True)
def _no_mlflow_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """`coord search` tracks to MLflow by default; the tests of other concerns run without it
    (tests/tracking/ turn it back on), so they neither wait for MLflow nor share its database."""
    monkeypatch.setenv("COORD_MLFLOW", "0")


@pytest.fixture(autouse=True)
def _no_plots_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every report draws its search plots (seconds of CPU each); the tests of other concerns
    leave them out (COORD_PLOTS=0), those of the plots and the page turn them back on."""
    monkeypatch.setenv("COORD_PLOTS", "0")


@pytest.fixture(autouse=True)
def _own_lease_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Searches on this machine share its slots through ~/.coord/leases; tests that run at the
    same time (xdist workers) are not one user's searches, so each test has its own."""
    monkeypatch.setenv("COORD_LEASE_DIR", str(tmp_path_factory.mktemp("leases")))


@pytest.fixture
def with_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORD_PLOTS", "1")


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in generator, smaller: 6 seasons x 120 games (fast real training)."""
    return datasets.generate(tmp_path_factory.mktemp("data") / "small.csv", seasons=range(2015, 2021),
                             games_per_season=120, seed=7)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


def write_script(path: Path, body: str) -> Path:
    """A trial script that reads its spec the supported way (COORD_SPEC)."""
    path.write_text("import json, os, sys, time\nspec = json.load(open(os.environ['COORD_SPEC']))\n"
                    "p = spec['params']\n" + textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def script(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(body: str, name: str = "trial.py") -> str:
        return f"{sys.executable} {write_script(tmp_path / name, body)}"
    return make


@pytest.fixture
def space_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(text: str, name: str = "space.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return str(path)
    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``optin`` (minutes of inherent waiting, their path also proved by a test
    of the default run) run only with COORD_TEST_ALL=1."""
    if os.environ.get("COORD_TEST_ALL") != "1":
        opted = [item for item in items if item.get_closest_marker("optin")]
        if opted:
            config.hook.pytest_deselected(items=opted)
            items[:] = [item for item in items if not item.get_closest_marker("optin")]
