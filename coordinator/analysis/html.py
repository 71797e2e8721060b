"""The comparison as one offline HTML page: the summary, the tables (the same cells as the
LaTeX), and every figure embedded as a base64 PNG, with inline CSS: no network, no
script, nothing outside the file. Rendered with jinja2 (autoescaped) from
``reports/compare.html.j2``."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator import resources
from coordinator.analysis.tables import Cell, Table

_ARROWS = {"up": " ↑", "down": " ↓"}


@dataclass(frozen=True)
class Image:
    title: str
    png: Path
    caption: str


def cell_text(cell: Cell) -> str:
    if not cell.numeric:
        return cell.text

    def num(v: float) -> str:
        return cell.number(v).replace("-", "−") if math.isfinite(v) else ""

    if cell.low is not None and cell.high is not None:
        lo, hi = num(cell.low), num(cell.high)
        return f"[{lo}, {hi}]" if lo and hi else "–"
    assert cell.mean is not None
    text = num(cell.mean)
    if not text:
        return "–"
    if cell.std is not None and math.isfinite(cell.std):
        text += " ± " + num(cell.std)
    return text + ("*" if cell.star else "")


def _table(table: Table) -> dict[str, Any]:
    return {"title": table.title, "caption": table.caption,
            "header": [(c.title + _ARROWS.get(c.arrow or "", ""), c.numeric) for c in table.columns],
            "groups": [[[(cell_text(c), c.bold, col.numeric) for c, col in zip(row, table.columns, strict=True)]
                        for row in group] for group in table.groups]}


def render(title: str, summary: Sequence[tuple[str, str]], tables: Sequence[Table], images: Sequence[Image],
           files: Sequence[str], links: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()) -> str:
    """The page: ``summary`` as (term, value) pairs, then the tables, the figures, the
    list of output files (relative paths) and ``links``: (label, [(name, relative href)])
    per item, e.g. a search's trials and their logs."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.folder("reports"))),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    figures = [{"title": im.title, "caption": im.caption,
                "src": "data:image/png;base64," + base64.b64encode(im.png.read_bytes()).decode("ascii")}
               for im in images]
    rendered: str = env.get_template("compare.html.j2").render(
        title=title, summary=list(summary), tables=[_table(t) for t in tables], figures=figures, files=list(files),
        links=[(label, list(hrefs)) for label, hrefs in links])
    return rendered
