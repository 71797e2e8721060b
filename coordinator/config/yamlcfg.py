"""Safe YAML loading with line numbers, and a small typed reader for validation.

PyYAML's safe loader never executes tags such as ``!!python/object/apply``. The text is
composed once; before the node graph is turned into Python objects, one pass learns the line
of every key (so every validation error can say ``file:line: key.path: what is wrong
(valid: ...)``), refuses duplicate keys, and bounds what aliases expand to. Files are
limited to ``MAX_CONFIG_BYTES``.
"""

from __future__ import annotations

import difflib
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


# A registry or search space is a few KB; 1 MB leaves room for anything hand-written and
# keeps a runaway file (a generated 14 MB registry took minutes to parse) from stalling coord.
MAX_CONFIG_BYTES = 1_000_000
# Values that aliases may add to a document beyond those written in it. A merge key or a
# shared ``specs:`` block adds a handful; nine levels of nine aliases (a "billion laughs")
# add 387 million, which every later pass would follow.
MAX_ALIAS_EXPANSION = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: yaml.Node, source: Source) -> None:
    """One pass over the composed document, visiting every node object once (an alias is
    the same object as its anchor): record the line of every key path, refuse duplicate
    keys and recursive aliases, and bound what aliases expand to, before anything walks the
    expanded document."""
    sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, KeyPath | None, bool]] = [(root, (), False)]
    while stack:
        node, path, leaving = stack.pop()
        key = id(node)
        if leaving:
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            continue
        if key in sizes:
            continue
        if key in entered:  # reached again from inside itself
            raise source.error("invalid YAML: an alias refers to a node that contains it (a recursive "
                               "structure)", file=source.file, line=node.start_mark.line + 1)
        entered.add(key)
        stack.append((node, path, True))
        if path is not None:
            source.lines.setdefault(path, node.start_mark.line + 1)
        pushes: list[tuple[yaml.Node, KeyPath | None, bool]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                sub: KeyPath | None = None
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    line = key_node.start_mark.line + 1
                    ident = (key_node.tag, str(key_node.value))
                    if ident in first:
                        raise source.error(f"duplicate key {key_node.value!r} (first at line {first[ident]}); "
                                           "a second definition would silently replace the first",
                                           file=source.file, line=line,
                                           key=render_path((*(path or ()), str(key_node.value))))
                    first[ident] = line
                    if path is not None:
                        sub = (*path, str(key_node.value))
                        source.lines[sub] = line
                pushes += [(key_node, None, False), (value_node, sub, False)]
        elif isinstance(node, yaml.SequenceNode):
            pushes = [(item, None if path is None else (*path, i), False) for i, item in enumerate(node.value)]
        stack.extend(reversed(pushes))  # document order: an anchor is indexed where it is written
    expanded, written = sizes[id(root)], len(sizes)
    if expanded - written > MAX_ALIAS_EXPANSION:
        raise source.error(f"aliases expand this file to {expanded} values from {written} written; at most "
                           f"{MAX_ALIAS_EXPANSION} more than written are allowed (a YAML alias bomb?)",
                           file=source.file)


def load_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> tuple[Any, Source]:
    """Read a YAML file safely; raise ``error`` naming the file and line on any problem."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)  # bounded: a FIFO or /dev/zero cannot make us read forever
    except FileNotFoundError:
        raise error("file not found", file=name) from None
    except OSError as exc:
        raise error(f"cannot read file: {exc}", file=name) from None
    if len(raw) > MAX_CONFIG_BYTES:
        try:
            size = f"{Path(path).stat().st_size / 1e6:.1f} MB"
        except OSError:
            size = "more than that"
        raise error(f"file is {size}; a configuration file may be at most {MAX_CONFIG_BYTES / 1e6:g} MB",
                    file=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", file=name,
                    line=raw.count(b"\n", 0, exc.start) + 1) from None
    return parse_yaml(text, name, error)


def parse_yaml(text: str, name: str, error: type[ConfigError] = ConfigError) -> tuple[Any, Source]:
    source = Source(name, error=error)
    loader = yaml.SafeLoader(text)  # composed once: the checks run on the node graph, then it is built
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_graph(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"invalid YAML: {problem}", file=name,
                    line=mark.line + 1 if mark else None) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise error("invalid YAML: nested too deeply", file=name) from None
    finally:
        loader.dispose()
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
                raise self.missing(key)
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

    def missing(self, key: str) -> ConfigError:
        """``key: required key is missing``, naming a present key that looks like it
        (``cpu_coers`` for ``cpu_cores``): that points at the line to fix, where "missing"
        alone sends the user looking."""
        close = closest(key, [str(k) for k in self.data if str(k) not in self._known])
        return self.fail(key, "required key is missing" + (f" ({close!r} is here: a typo of it?)" if close else ""))

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

    def only(self, keys: Iterable[str]) -> None:
        """Refuse any key but ``keys`` now, before a typo (``lo:``) could surface as a required
        key missing (``low``) or an optional one silently defaulted."""
        allowed = set(keys)
        unknown = [str(k) for k in self.data if str(k) not in allowed]
        if unknown:
            raise self.unknown(unknown[0], allowed)

    def done(self) -> None:
        unknown = [str(k) for k in self.data if str(k) not in self._known]
        if unknown:
            raise self.unknown(unknown[0], self._known)

    def unknown(self, key: str, valid: Iterable[str]) -> ConfigError:
        """``key: unknown key; did you mean 'x'?`` with the valid keys."""
        valid = sorted(valid)
        close = closest(key, valid)
        return self.fail(key, "unknown key" + (f"; did you mean {close!r}?" if close else ""), valid=valid)


def closest(key: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The one candidate close enough to ``key`` to be its typo (or it a typo of ``key``):
    every did-you-mean of coord's messages comes from here."""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=cutoff)
    return close[0] if close else None


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing",
            bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
