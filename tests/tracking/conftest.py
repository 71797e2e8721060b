"""MLflow tests: tracking back on (tests/conftest.py turns it off for everything else), and
no tracking URI from the environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tracking_as_a_user_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COORD_MLFLOW", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
