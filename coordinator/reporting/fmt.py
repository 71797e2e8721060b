"""How one value is shown: in the console, in CSV cells, in LaTeX. One function per target,
so progress lines, summaries, status and tables agree on digits, and nothing a trial
reports can become a spreadsheet formula or a LaTeX command."""

from __future__ import annotations

import math
from typing import Any

from coordinator import resources

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(value: Any) -> str:
    """Escape every LaTeX special, so ``\\input{/etc/passwd}`` prints literally."""
    return "".join(_TEX.get(ch, ch) for ch in fmt(value))


def fmt(value: Any) -> str:
    """Floats with 4 significant digits, trailing zeros kept ('#'), so 0.8400 stands next to
    0.8395 as the same precision, not as 0.84; a whole number (a step count a runner reports
    as a float, 7.0) as one (7)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1e5:
            return f"{value:.4e}"
        return str(int(value)) if value.is_integer() else f"{value:#.4g}"
    return "" if value is None else str(value)


def plural(n: int, word: str) -> str:
    """``1 platform``, ``2 platforms``: a count with its noun (regular plurals only)."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def csv_cell(value: Any) -> Any:
    """Neutralise text cells that a spreadsheet would run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def latex_env() -> Any:
    """The Jinja environment of every LaTeX template under ``reports/`` (``\\VAR{}`` and
    ``\\BLOCK{}`` delimiters, so LaTeX's braces need no escaping; undefined names fail)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.folder("reports"))),
        block_start_string=r"\BLOCK{", block_end_string="}", variable_start_string=r"\VAR{",
        variable_end_string="}", comment_start_string=r"\#{", comment_end_string="}",
        trim_blocks=True, lstrip_blocks=True, autoescape=False, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined)
