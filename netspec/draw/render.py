"""The pictures: SVG and PNG of a laid-out view, and graphviz source of a view."""

from __future__ import annotations

import html
import math
from pathlib import Path

from ..errors import DataProblem
from .layout import Placed
from .view import LINE_H, PAD, Box, View, nesting

COLORS = {"input": "#d8f0d8", "target": "#f3e6c8", "op": "#ffffff", "block": "#dfe9f7",
          "output": "#d8f0d8", "loss": "#f7d9d9"}
CLUSTER_FILL = ("#f4f6fa", "#e9eef6", "#dde5f2", "#d2dcee")


def to_dot(view: View) -> str:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = [f"digraph {q(view.title)} {{", "  rankdir=TB;",
           '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];',
           '  edge [fontname="monospace", fontsize=9];']
    children: dict[str | None, list[str]] = {}
    for cid, c in view.clusters.items():
        children.setdefault(c.parent, []).append(cid)
    boxes_in: dict[str | None, list[Box]] = {}
    for box in view.boxes.values():
        boxes_in.setdefault(box.cluster, []).append(box)

    def emit(cid: str | None, indent: str) -> None:
        for box in boxes_in.get(cid, []):
            shape = ", shape=ellipse" if box.kind in ("input", "target", "output") else ""
            label = "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in box.lines)
            out.append(f'{indent}{q(box.id)} [label="{label}", fillcolor="{COLORS[box.kind]}"{shape}];')
        for child in children.get(cid, []):
            out.append(f"{indent}subgraph {q('cluster_' + child)} {{")
            out.append(f'{indent}  label={q(view.clusters[child].label)}; style="rounded,filled"; '
                       f'fillcolor="{CLUSTER_FILL[min(nesting(view, child), 3)]}";')
            emit(child, indent + "  ")
            out.append(f"{indent}}}")

    emit(None, "  ")
    for a in view.arrows:
        label = f" [label={q(a.label)}]" if a.label else ""
        out.append(f"  {q(a.src)} -> {q(a.dst)}{label};")
    out.append("}")
    return "\n".join(out) + "\n"


def esc(s: str) -> str:
    return html.escape(s, quote=True)


def to_svg(view: View, placed: Placed, interactive: bool = False) -> str:
    w, h = placed.width, placed.height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
           f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">',
           f"<title>{esc(view.title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
           f'<rect width="{w:.0f}" height="{h:.0f}" fill="white"/>', '<g id="scene">']
    for cid, (x, y, cw, ch) in sorted(placed.clusters.items(), key=lambda kv: nesting(view, kv[0])):
        fill = CLUSTER_FILL[min(nesting(view, cid), 3)]
        out.append(f'<g class="cluster"><rect x="{x:.1f}" y="{y:.1f}" width="{cw:.1f}" height="{ch:.1f}" rx="6" '
                   f'fill="{fill}" stroke="#b8c4d8"/><text x="{x + 6:.1f}" y="{y + LINE_H - 2:.1f}" '
                   f'fill="#4a5a78" font-size="11">{esc(view.clusters[cid].label)}</text></g>')
    for a, pts in zip(view.arrows, placed.arrows):
        if len(pts) < 2:
            continue
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"/>')
        if a.label:
            lx, ly = _label_at(pts)
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" fill="#7a4b00" font-size="10">{esc(a.label)}</text>')
    for bid, (x, y, bw, bh) in placed.boxes.items():
        box = view.boxes[bid]
        rx = bh / 2 if box.kind in ("input", "target", "output") else 4
        attrs = f' class="node" data-id="{esc(bid)}" style="cursor:pointer"' if interactive else ""
        out.append(f"<g{attrs}><title>{esc(_tooltip(box))}</title>"
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="{rx:.1f}" '
                   f'fill="{COLORS[box.kind]}" stroke="#333"/>')
        for k, line in enumerate(box.lines):
            weight = ' font-weight="bold"' if k == 0 else ""
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y + PAD / 2 + LINE_H * (k + 1) - 3:.1f}" '
                       f'text-anchor="middle"{weight}>{esc(line)}</text>')
        out.append("</g>")
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def _label_at(pts) -> tuple[float, float]:
    """Where an arrow's shape label goes (its baseline's start): beside the arrow's last leg."""
    (x0, y0), (x1, y1) = pts[-2], pts[-1]
    if abs(y1 - y0) < 1:  # a horizontal leg into the side of a box: above it
        return min(x0, x1) + 4, y0 - 4
    return x0 + (x1 - x0) * 0.55 + 4, y0 + (y1 - y0) * 0.55


def _tooltip(box: Box) -> str:
    return " | ".join(box.lines) + (f" ({box.span})" if box.span else "")


def to_png(view: View, placed: Placed, path: Path, scale: float = 1.5) -> None:
    from PIL import Image, ImageDraw, ImageFont
    w, h = int(placed.width * scale) + 1, int(placed.height * scale) + 1
    if w * h > 400_000_000:
        raise DataProblem(f"the picture would be {w} x {h} pixels, too large for a PNG",
                          hint="draw it as .svg or .html, or collapse blocks with --depth")
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12 * scale)
    small = ImageFont.load_default(size=10 * scale)

    def s(v: float) -> float:
        return v * scale

    for cid, (x, y, cw, ch) in sorted(placed.clusters.items(), key=lambda kv: nesting(view, kv[0])):
        d.rounded_rectangle([s(x), s(y), s(x + cw), s(y + ch)], radius=s(6),
                            fill=CLUSTER_FILL[min(nesting(view, cid), 3)], outline="#b8c4d8")
        d.text((s(x + 6), s(y + 2)), view.clusters[cid].label, fill="#4a5a78", font=small)
    for a, pts in zip(view.arrows, placed.arrows):
        if len(pts) < 2:
            continue
        d.line([(s(x), s(y)) for x, y in pts], fill="#555555", width=max(1, int(scale)))
        _arrowhead(d, [(s(x), s(y)) for x, y in pts[-2:]], s(7))
        if a.label:
            lx, ly = _label_at(pts)
            d.text((s(lx), s(ly - 10)), a.label, fill="#7a4b00", font=small)
    for bid, (x, y, bw, bh) in placed.boxes.items():
        box = view.boxes[bid]
        rx = bh / 2 if box.kind in ("input", "target", "output") else 4
        d.rounded_rectangle([s(x), s(y), s(x + bw), s(y + bh)], radius=s(rx), fill=COLORS[box.kind], outline="#333333")
        for k, line in enumerate(box.lines):
            d.text((s(x + bw / 2), s(y + PAD / 2 + LINE_H * k + LINE_H / 2)), line, fill="black", font=font, anchor="mm")
    img.save(path, "PNG")


def _arrowhead(d, pts, size: float) -> None:
    (x0, y0), (x1, y1) = pts
    ang = math.atan2(y1 - y0, x1 - x0)
    left = (x1 - size * math.cos(ang - 0.4), y1 - size * math.sin(ang - 0.4))
    right = (x1 - size * math.cos(ang + 0.4), y1 - size * math.sin(ang + 0.4))
    d.polygon([(x1, y1), left, right], fill="#555555")
