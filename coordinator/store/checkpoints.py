"""Checkpoint space: cleaned as each trial ends, keeping the best trial's model per study.

A built-in trial's last checkpoint is its trained model (every fold). The run directory
keeps it for the best trial of each study (so the dissertation's best model can be
reloaded without retraining) and deletes the rest; copies on SSH hosts are always deleted,
since the run directory holds the one that matters.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


class CheckpointKeeper:
    def __init__(self, trial_dir: Callable[[int], Path]) -> None:
        self.trial_dir = trial_dir
        self.best: dict[str, tuple[float, int]] = {}  # study -> (value, trial number) whose model is kept

    def note(self, study: str, number: int, value: float | None, better: Callable[[float, float], bool]) -> bool:
        """Record a committed trial; True if it is now its study's best (keep its model).
        The model of the study's previous best is deleted."""
        current = self.best.get(study)
        if value is not None and (current is None or better(value, current[0])):
            self.best[study] = (value, number)
            if current is not None:
                self._delete(current[1])
            for older in sorted((self.trial_dir(number) / "checkpoint").glob("step-*.ckpt"))[:-1]:
                older.unlink(missing_ok=True)  # the last one is the trained model
            return True
        return False

    def ended(self, study: str, number: int, value: float | None, better: Callable[[float, float], bool]) -> None:
        if not self.note(study, number, value, better):
            self._delete(number)

    def _delete(self, number: int) -> None:
        shutil.rmtree(self.trial_dir(number) / "checkpoint", ignore_errors=True)
