"""The package's shape, checked: modules of at most 400 lines, no import cycles, and imports
only downwards through the layers that docs/architecture.md describes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "coordinator"
MAX_LINES = 400

# lowest first; a module may import its own layer and the ones below, never one above
LAYERS: list[tuple[str, ...]] = [
    ("errors", "protocol", "resources", "crashpoint", "records", "provenance"),
    ("config",),
    ("store", "search"),
    ("backends",),
    ("reporting", "tracking", "analysis"),
    ("schedule",),
    ("app", "app_compare", "app_status", "rerun", "validate"),
    ("cli", "cli_compare", "cli_help", "cli_runs", "cli_tracking", "__main__"),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(["coordinator", *parts])] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports (at any depth of its code: lazy imports count)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("coordinator"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("coordinator"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_architecture.py")


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, set(mods)) for name, path in mods.items()}


def test_every_module_is_at_most_400_lines() -> None:
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_imports_only_go_downwards() -> None:
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
              for a, deps in _graph().items() if a != "coordinator" for b in deps
              if b != "coordinator" and _layer(b) > _layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The cycle finder and the layer rule see what they must (a checker that cannot fail is none)."""
    a = tmp_path / "a.py"
    a.write_text("from coordinator.app import run_search\nimport coordinator.cli\n")
    assert _imports(a, "coordinator.errors", {"coordinator.app", "coordinator.cli", "coordinator.errors"}) == \
        {"coordinator.app", "coordinator.cli"}
    assert _layer("coordinator.app") > _layer("coordinator.schedule.loop") > _layer("coordinator.config.registry")


def test_the_backend_registry_and_the_config_agree_on_what_runs() -> None:
    """config/ cannot import backends/ (it sits below): its list of runnable connections,
    used to refuse a search that can never be placed, must be the backends' own."""
    from coordinator.backends.registry import runnable
    from coordinator.config.registry import CONNECTIONS, RUNNABLE_CONNECTIONS

    assert set(runnable()) == set(RUNNABLE_CONNECTIONS) and set(runnable()) <= set(CONNECTIONS)
