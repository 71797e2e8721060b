"""Where the shipped data folders are: inside the wheel (``coordinator/_data``) or, in a
source checkout or editable install, at the repository's top level."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def folder(name: str) -> Path:
    """``registry``, ``runners`` or ``reports``."""
    for candidate in (_HERE / "_data" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"coord installation is missing its {name}/ folder")
