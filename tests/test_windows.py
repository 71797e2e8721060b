"""Availability windows (config/windows.py): a window may wrap midnight (it belongs to the
day it opens on), named and listed days, several windows, and bad input as one error
naming the key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coordinator.config.registry import load_registry
from coordinator.config.windows import Window, open_at
from coordinator.errors import RegistryError


def _at(day: int, hour: int, minute: int = 0) -> float:
    """Local time on a day of the week 2026-11-30 (a Monday) + ``day``."""
    return time.mktime((2026, 11, 30 + day, hour, minute, 0, 0, 0, -1))


def test_an_evening_window_on_weekdays_runs_into_the_next_morning() -> None:
    w = Window(19 * 60, 8 * 60, (0, 1, 2, 3, 4))
    assert not w.open_at(_at(0, 18, 59)) and w.open_at(_at(0, 19, 0)) and w.open_at(_at(1, 7, 59))
    assert not w.open_at(_at(1, 8, 0)) and not w.open_at(_at(0, 7, 0))  # Monday morning: Sunday opened none
    assert w.open_at(_at(5, 7, 0)) and not w.open_at(_at(5, 20, 0))  # Friday's runs into Saturday; none opens then
    assert open_at((), _at(6, 12)) and not open_at((w,), _at(6, 12)) and w.describe() == "19:00-08:00 weekdays"


def _registry(tmp_path: Path, available: str) -> object:
    path = tmp_path / "reg.yaml"
    path.write_text("platforms:\n  laptop:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 4}\n"
                    f"    available: {available}\n")
    return load_registry(str(path))


def test_the_registry_reads_windows_and_refuses_bad_ones(tmp_path: Path) -> None:
    reg = _registry(tmp_path, '[{hours: "19:00-08:00", days: weekdays}, {days: weekends}]')
    windows = reg.platforms["laptop"].available  # type: ignore[attr-defined]
    assert [w.describe() for w in windows] == ["19:00-08:00 weekdays", "00:00-24:00 weekends"]
    assert open_at(windows, _at(6, 12)) and not open_at(windows, _at(2, 12))
    with pytest.raises(RegistryError, match=r"available\.hours.*'25:00-08:00' is not a window of hours"):
        _registry(tmp_path, '{hours: "25:00-08:00"}')
    with pytest.raises(RegistryError, match=r"available\.days.*is not a list of days"):
        _registry(tmp_path, '{hours: "19:00-08:00", days: [mon, funday]}')
    with pytest.raises(RegistryError, match=r"available\.hourz: unknown key"):
        _registry(tmp_path, '{hourz: "19:00-08:00"}')


def test_coord_plan_says_when_a_host_is_available(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from coordinator.cli import main

    path = tmp_path / "reg.yaml"
    path.write_text("platforms:\n  laptop:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 4}\n"
                    "    available: {hours: \"19:00-08:00\", days: weekdays}\n")
    out = CliRunner().invoke(main, ["plan", "--registry", str(path), "--model", "glm"]).output
    assert "available: 19:00-08:00 weekdays (local time; closed, it takes no trial" in out, out
