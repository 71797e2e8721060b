"""Search spaces in YAML -> Optuna distributions (and grids for the grid sampler).

Format (``registry/spaces/<model>.yaml`` or ``--space FILE``)::

    model: xgboost            # optional; checked against --model
    params:
      max_depth:     {type: int, low: 3, high: 9, grid: [3, 5, 7, 9]}
      learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
      booster:       {type: categorical, choices: [gbtree, dart]}
      eta:           {type: float, low: 0.01, high: 0.3, label: 'Learning rate $\\eta$'}
    fixed:                    # passed unchanged to every trial
      max_bin: 256
    procs: 2                  # optional: each trial trains as 2 processes (torch DDP; mlp only)
    gpus_per_proc: 0          # optional: 1 gives every process a GPU of its own (NCCL); 0: CPU (gloo)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.config.yamlcfg import Section, Source, closest, load_yaml
from coordinator.errors import SpaceError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

TYPES = ("int", "float", "categorical")
KEYS = ("model", "params", "fixed", "procs", "gpus_per_proc")
MAX_PROCS = 64
# label: the parameter's column header in the report's LaTeX tables, as LaTeX source (not escaped)
PARAM_KEYS = {"categorical": ("type", "choices", "label"),
              "int": ("type", "low", "high", "log", "step", "grid", "label")}
PARAM_KEYS["float"] = PARAM_KEYS["int"]
MAX_GRID = 100_000


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()
    label: str | None = None  # LaTeX source for the report's table headers

    def distribution(self) -> BaseDistribution:
        from optuna import distributions as d

        if self.type == "categorical":
            return d.CategoricalDistribution(self.choices)
        if self.type == "int":
            return d.IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log,
                                     step=int(self.step or 1))
        return d.FloatDistribution(float(self.low or 0), float(self.high or 0), log=self.log, step=self.step)

    def grid_values(self) -> tuple[Any, ...] | None:
        """Explicit grid, else every value of a categorical or a stepped range; None if continuous."""
        if self.grid:
            return self.grid
        if self.type == "categorical":
            return self.choices
        if self.type == "int" and not self.log:
            step = int(self.step or 1)
            values = tuple(range(int(self.low or 0), int(self.high or 0) + 1, step))
            return values if len(values) <= 1000 else None
        if self.type == "float" and self.step:
            n = int(round(((self.high or 0) - (self.low or 0)) / self.step)) + 1
            return tuple(round((self.low or 0) + i * self.step, 12) for i in range(n)) if n <= 1000 else None
        return None


@dataclass(frozen=True)
class Space:
    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    source: str = ""
    where: Source | None = field(default=None, compare=False, repr=False)  # the line of every key
    procs: int = 1  # processes per trial (torch DDP under torchrun)
    gpus_per_proc: int = 0

    def fail(self, path: tuple[str, ...], message: str, valid: Iterable[str] | None = None) -> SpaceError:
        """An error at ``path`` (e.g. ``("params", "max_depth")``) with its file and line."""
        line = self.where.line(path) if self.where is not None and path else None
        return SpaceError(message, file=self.source, line=line, key=".".join(path) or None, valid=valid)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: p.distribution() for name, p in self.params.items()}

    def grid(self) -> dict[str, list[Any]]:
        """The full grid, or a SpaceError naming the first parameter with no finite values."""
        out: dict[str, list[Any]] = {}
        size = 1
        for name, p in self.params.items():
            values = p.grid_values()
            if values is None:
                raise self.fail(("params", name), "the grid sampler needs finite values: give 'grid: [...]', "
                                "a 'step', or make it categorical")
            out[name] = list(values)
            size *= len(values)
        if size > MAX_GRID:
            raise SpaceError(f"grid has {size} points (limit {MAX_GRID})", file=self.source)
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "fixed": self.fixed,
               "params": {n: {k: v for k, v in p.__dict__.items() if v not in (None, (), False) or k == "type"}
                          for n, p in self.params.items()}}
        if self.procs > 1:  # only then: run.json of a one-process search stays as it was
            out["procs"], out["gpus_per_proc"] = self.procs, self.gpus_per_proc
        return out


def load_space(path: str | Path) -> Space:
    data, source = load_yaml(path, SpaceError)
    return parse_space(data, source)


def parse_space(data: Any, source: Source) -> Space:
    root = Section(data, source)
    root.only(KEYS)
    if not root.has("params"):
        raise root.missing("params")
    model = root.get("model", str, None)
    psec = root.section("params")
    params: dict[str, Param] = {}
    for name, _ in psec.items():
        params[name] = _parse_param(name, psec.section(name))
    fixed_raw = root.raw("fixed", {})
    if not isinstance(fixed_raw, dict):
        raise root.fail("fixed", "expected a mapping of parameter: value")
    fixed = {str(k): v for k, v in fixed_raw.items()}
    for name in fixed:
        if name in params:
            raise root.fail("fixed", f"{name!r} is both searched and fixed")
    procs = root.get("procs", int, 1, minimum=1)
    if procs > MAX_PROCS:
        raise root.fail("procs", f"{procs} processes per trial; at most {MAX_PROCS} (all on one host)")
    gpus_per_proc = root.get("gpus_per_proc", int, 0, minimum=0)
    if gpus_per_proc > 1:
        raise root.fail("gpus_per_proc", "DistributedDataParallel gives each process one GPU: expected 0 or 1")
    root.done()
    if not params:
        raise root.fail("params", "at least one parameter is required")
    return Space(params, fixed, model, source.file, source, procs=procs, gpus_per_proc=gpus_per_proc)


def _parse_param(name: str, sec: Section) -> Param:
    sec.only({k for keys in PARAM_KEYS.values() for k in keys})
    kind = sec.get("type", str, choices=TYPES)
    sec.only(PARAM_KEYS[kind])  # e.g. choices of an int
    if kind == "categorical":
        choices = sec.get("choices", list)
        if not choices:
            raise sec.fail("choices", "expected a non-empty list")
        if not all(c is None or isinstance(c, (str, int, float, bool)) for c in choices):
            raise sec.fail("choices", "choices must be strings, numbers, booleans or null")
        label = _label(sec)
        sec.done()
        return Param(name, kind, choices=tuple(choices), label=label)
    num = (int,) if kind == "int" else (float,)
    low, high = sec.get("low", num), sec.get("high", num)
    log = sec.get("log", bool, False)
    step = sec.get("step", num, None)
    if low > high:
        raise sec.fail("low", f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise sec.fail("low", "a log-scaled range needs low > 0")
    if log and step is not None:
        raise sec.fail("step", "step and log cannot be combined")
    grid = sec.raw("grid", [])
    if not isinstance(grid, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in grid):
        raise sec.fail("grid", "expected a list of numbers")
    for v in grid:
        if not low <= v <= high:
            raise sec.fail("grid", f"grid value {v} is outside [{low}, {high}]")
    label = _label(sec)
    sec.done()
    return Param(name, kind, low, high, log, step, grid=tuple(grid), label=label)


def _label(sec: Section) -> str | None:
    label: str | None = sec.get("label", str, None)
    # in YAML's double quotes "\eta" is an escape (ESC + "ta"): single quotes keep LaTeX as written
    if label is not None and (not label.strip() or any(ord(ch) < 32 for ch in label)):
        raise sec.fail("label", "expected one line of LaTeX for the table header, in single quotes, "
                       "e.g. 'Learning rate $\\eta$'")
    return label


def check_space_matches(space: Space, accepted: frozenset[str], model: str, distributed: bool = False) -> None:
    """Refuse a space that names parameters the model does not have, or asks a model that
    trains in one process for several (``distributed``: the model can)."""
    if space.model is not None and space.model.lower() != model.lower():
        raise space.fail(("model",), f"space is for model {space.model!r}, not {model!r}")
    if space.procs > 1 and not distributed:
        raise space.fail(("procs",), f"{model} trains in one process; procs: {space.procs} is for the mlp "
                         "model (torch DistributedDataParallel)", valid=("1",))
    if space.gpus_per_proc and space.procs == 1:
        raise space.fail(("gpus_per_proc",), "gpus_per_proc is for a trial of several processes: "
                         "set procs: N (2 or more) too, or leave gpus_per_proc out")
    for name in [*space.params, *space.fixed]:
        if name not in accepted:
            section = "params" if name in space.params else "fixed"
            close = closest(name, sorted(accepted))
            hint = f"; did you mean {close!r}?" if close else ""
            raise space.fail((section, name), f"{model} has no parameter {name!r}{hint}", valid=accepted)
