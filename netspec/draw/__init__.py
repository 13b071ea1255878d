"""Draw a checked network: a view of boxes and arrows, laid out top to bottom, written as
.dot, .svg, .png or a self-contained .html page.

`view` decides what to draw, `layout` where (grandalf's layered algorithm, pure Python, so
drawing needs no system package; a .dot file leaves the layout to graphviz), `render` and `page`
write it. Blocks are clusters; `depth` collapses each block instance nested that deep into a box.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataProblem
from ..file_kinds import check_output
from ..runfolder import atomic_path
from .layout import Placed, layout
from .page import to_html
from .render import to_dot, to_png, to_svg
from .view import Arrow, Box, Cluster, View, build_view, op_call

FORMATS = (".svg", ".png", ".dot", ".html")

__all__ = ["FORMATS", "Arrow", "Box", "Cluster", "Placed", "View", "build_view", "layout", "op_call",
           "to_dot", "to_html", "to_png", "to_svg", "write"]


def write(spec, out: str | Path, depth: int | None = None) -> Path:
    """Draw `spec` into `out`; the extension picks the format."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise DataProblem(f"cannot draw into '{out}': unknown format '{suffix or out.name}'",
                          hint="name the output .svg, .png, .dot or .html")
    if not out.parent.is_dir():
        raise DataProblem(f"cannot write {out}: the folder '{out.parent}' does not exist",
                          hint="create it first, or give another -o path")
    check_output(out)  # before the layout, which can take a while
    view = build_view(spec, depth)
    # atomic_path checks `out` again and renames over it only when the drawing is whole.
    with atomic_path(out) as tmp:
        if suffix == ".dot":
            tmp.write_text(to_dot(view), encoding="utf-8")
        else:
            placed = layout(view)
            if suffix == ".svg":
                tmp.write_text(to_svg(view, placed), encoding="utf-8")
            elif suffix == ".html":
                tmp.write_text(to_html(view, placed), encoding="utf-8")
            else:
                to_png(view, placed, tmp)
    return out
