"""Where the shipped data folders are: inside the wheel (``coordinator/_data``) or, in a
source checkout or editable install, at the repository's top level."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent


def folder(name: str) -> Path:
    """``registry``, ``runners`` or ``reports``."""
    for candidate in (_HERE / "_data" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"coord installation is missing its {name}/ folder")


@functools.cache
def runner_module(name: str) -> ModuleType:
    """``runners/<name>.py`` as a module of its own, loaded once. The coordinator never
    imports the ``runners`` folder as a package: the runner modules it shares code with
    (dataprep, calibrate) import nothing from it."""
    path = folder("runners") / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"coord_runners_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
