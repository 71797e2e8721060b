"""Safe YAML loading with line numbers, and a small typed reader for validation.

``yaml.safe_load`` never executes tags such as ``!!python/object/apply``; we compose the
same text once more to learn the line of every key, so every validation error can say
``file:line: key.path: what is wrong (valid: ...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coordinator.errors import ConfigError

T = TypeVar("T")
KeyPath = tuple[str | int, ...]


@dataclass
class Source:
    """Where a document came from: a file name and the line of every key path."""

    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    error: type[ConfigError] = ConfigError

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def fail(self, path: KeyPath, message: str, valid: Iterable[str] | None = None) -> ConfigError:
        return self.error(message, file=self.file, line=self.line(path), key=render_path(path) or None,
                          valid=valid)


def render_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _index_lines(node: yaml.Node | None, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    if node is None:
        return
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                sub = (*path, str(key_node.value))
                lines[sub] = key_node.start_mark.line + 1
                _index_lines(value_node, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines)


def load_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> tuple[Any, Source]:
    """Read a YAML file safely; raise ``error`` naming the file and line on any problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("file not found", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read file: {exc}", file=name) from None
    return parse_yaml(text, name, error)


def parse_yaml(text: str, name: str, error: type[ConfigError] = ConfigError) -> tuple[Any, Source]:
    source = Source(name, error=error)
    try:
        data = yaml.safe_load(text)
        _index_lines(yaml.compose(text, Loader=yaml.SafeLoader), (), source.lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"invalid YAML: {problem}", file=name,
                    line=mark.line + 1 if mark else None) from None
    if data is None:
        raise error("file is empty", file=name)
    return data, source


class Section:
    """A mapping being validated: typed getters that fail with file, line and key path.

    Every key a section reads is remembered; ``done()`` rejects the rest as unknown keys,
    listing the valid ones, so a typo never silently falls back to a default.
    """

    def __init__(self, data: Any, source: Source, path: KeyPath = ()) -> None:
        if not isinstance(data, dict):
            raise source.fail(path, f"expected a mapping, got {type_name(data)}")
        self.data: dict[Any, Any] = data
        self.source = source
        self.path = path
        self._known: set[str] = set()

    def fail(self, key: str | None, message: str, valid: Iterable[str] | None = None) -> ConfigError:
        return self.source.fail(self.path + ((key,) if key is not None else ()), message, valid)

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self._known.add(key)
        return self.data.get(key, default)

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any = ..., *,
            choices: Iterable[str] | None = None, minimum: float | None = None) -> Any:
        self._known.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, "required key is missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"expected {_kind_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {_kind_names(kinds)}, got {type_name(value)} {value!r}")
        if choices is not None and value not in set(choices):
            raise self.fail(key, f"unknown value {value!r}", valid=choices)
        if minimum is not None and isinstance(value, (int, float)) and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value!r}")
        return value

    def str_list(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(key)
        if value is None:
            return list(default or [])
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise self.fail(key, "expected a list of strings")
        return [str(v) for v in value]

    def section(self, key: str) -> Section:
        self._known.add(key)
        return Section(self.data.get(key), self.source, (*self.path, key))

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, value in self.data.items():
            self._known.add(str(key))
            yield str(key), value

    def done(self) -> None:
        unknown = [str(k) for k in self.data if str(k) not in self._known]
        if unknown:
            raise self.fail(unknown[0], "unknown key", valid=self._known)


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing",
            bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
