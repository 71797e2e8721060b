"""The comparison's tables as LaTeX: booktabs, numbers in math mode (a real minus sign,
``\\pm``), the best per column in bold, every text escaped, ``\\input``-ready fragments
plus one preview document with every table and figure. Only packages that
texlive-latex-base and texlive-latex-recommended provide (booktabs, graphicx, geometry).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.analysis.tables import Cell, Column, Table
from coordinator.reporting.fmt import latex_env, tex_escape

_SYMBOLS = {"±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "²": r"\textsuperscript{2}", "−": "-",
            "≥": r"$\geq$", "≤": r"$\leq$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--"}
_ARROWS = {"up": r" $\uparrow$", "down": r" $\downarrow$"}


@dataclass(frozen=True)
class FigureRef:
    """A figure of the preview document: its PDF (relative to the document) and caption."""

    path: str
    caption: str
    label: str
    width: str = r"0.6\linewidth"


def tex_text(value: Any) -> str:
    """Escaped text with the few non-ASCII symbols the captions use spelled in LaTeX."""
    out = tex_escape(value)
    return "".join(_SYMBOLS.get(ch, ch) for ch in out)


def label(prefix: str, name: str) -> str:
    """A LaTeX label: the prefix and name, with anything but letters, digits, : and - as -."""
    return re.sub(r"[^A-Za-z0-9:\-]", "-", f"{prefix}{name}")


def _number(cell: Cell, value: float) -> str:
    return cell.number(value) if math.isfinite(value) else ""


def cell_tex(cell: Cell) -> str:
    if not cell.numeric:
        return tex_text(cell.text)
    if cell.low is not None and cell.high is not None:
        lo, hi = _number(cell, cell.low), _number(cell, cell.high)
        return f"$[{lo}, {hi}]$" if lo and hi else "--"
    assert cell.mean is not None
    mean = _number(cell, cell.mean)
    if not mean:
        return "--"
    body = mean
    if cell.std is not None and math.isfinite(cell.std):
        body += r" \pm " + cell.number(cell.std)
    if cell.bold:
        body = rf"\mathbf{{{body}}}"
    if cell.star:
        body += "^{*}"
    return f"${body}$"


def header_tex(col: Column) -> str:
    text = col.tex if col.tex is not None else tex_text(col.title)
    return text + _ARROWS.get(col.arrow or "", "")


def render_table(table: Table, label_prefix: str = "") -> str:
    align = "".join("r" if c.numeric else "l" for c in table.columns)
    groups = [[" & ".join(cell_tex(c) for c in row) for row in group] for group in table.groups]
    rendered: str = latex_env().get_template("compare_table.tex.j2").render(
        caption=tex_text(table.caption), label=label(label_prefix, "tab:" + table.name.replace("_", "-")),
        align=align, header=" & ".join(header_tex(c) for c in table.columns),
        groups=groups)
    return rendered


def preview_document(title: str, tables: Sequence[str], figures: Sequence[FigureRef]) -> str:
    """A standalone document that ``\\input``s the tables (paths relative to it) and shows
    the figures; compile it in its own folder."""
    rendered: str = latex_env().get_template("compare_preview.tex.j2").render(
        title=tex_text(title), tables=list(tables),
        figures=[{"path": f.path, "caption": tex_text(f.caption), "label": f.label, "width": f.width}
                 for f in figures])
    return rendered
