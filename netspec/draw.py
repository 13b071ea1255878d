"""Draw a checked network: a view of boxes and arrows, laid out top to bottom, written as
.dot, .svg, .png or a self-contained .html page.

The layout is grandalf's Sugiyama (layered) algorithm, pure Python, so drawing needs no system
package; a .dot file is left for graphviz to lay out itself. Blocks are clusters; `depth`
collapses every block instance nested `depth` deep into one box.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataProblem, ParamProblem, Span
from .graph import type_of

FORMATS = (".svg", ".png", ".dot", ".html")
_CONTEXT = re.compile(r"^(?P<block>\S+) '(?P<name>.+)'$")

# Drawing metrics, in SVG pixels: a monospace character, a text line, padding and gaps.
CHAR_W, LINE_H, PAD, X_GAP, Y_GAP = 7.2, 15, 8, 24, 46
COLORS = {"input": "#d8f0d8", "target": "#f3e6c8", "op": "#ffffff", "block": "#dfe9f7",
          "output": "#d8f0d8", "loss": "#f7d9d9"}
CLUSTER_FILL = ("#f4f6fa", "#e9eef6", "#dde5f2", "#d2dcee")


@dataclass
class Box:
    id: str
    kind: str  # input, target, op, block, output, loss
    lines: list[str]  # the first is the title
    span: Span | None = None
    cluster: str | None = None  # innermost cluster drawn around it
    info: dict = field(default_factory=dict)  # shown when the node is clicked in the HTML page

    @property
    def size(self) -> tuple[float, float]:
        return (max(len(s) for s in self.lines) * CHAR_W + 2 * PAD, len(self.lines) * LINE_H + PAD)


@dataclass
class Arrow:
    src: str
    dst: str
    label: str


@dataclass
class Cluster:
    id: str
    label: str
    parent: str | None
    span: Span | None


@dataclass
class View:
    title: str
    boxes: dict[str, Box]
    arrows: list[Arrow]
    clusters: dict[str, Cluster]


def _levels(node: dict) -> list[tuple[str, str, Span]]:
    """The block instances a layer sits in, outermost first: (instance name, block, call span)."""
    out = []
    for label, span in node.get("context") or ():
        m = _CONTEXT.match(label)
        if m:
            out.append((m["name"], m["block"], span))
    return out


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def op_call(op_name: str, params) -> str:
    """`Conv2d(64, kernel=7, stride=2)`: the op with the parameters that differ from the defaults."""
    from .ops import get_op
    op = get_op(op_name)
    shown = []
    for name, f in type(params).model_fields.items():
        value = getattr(params, name)
        if f.is_required() or value != f.default:
            prefix = "" if name in op.positional[:1] and not shown else f"{name}="
            shown.append(prefix + _value(value))
    return f"{op_name}({', '.join(shown)})" if shown else op_name


def _clip(s: str, n: int = 44) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def build_view(spec, depth: int | None = None) -> View:
    """The boxes, arrows and clusters to draw; blocks nested `depth` deep become one box each."""
    if depth is not None and depth < 1:
        raise ParamProblem(f"--depth must be 1 or more, got {depth}",
                           hint="--depth 1 draws each top-level block as one box; leave it out to draw every layer")
    g = spec.graph
    rows = {r["name"]: r for r in spec.rows}
    boxes: dict[str, Box] = {}
    clusters: dict[str, Cluster] = {}
    box_of: dict[str, str] = {}
    for name, node in g.nodes(data=True):
        if node["kind"] == "target":
            continue  # drawn inside the loss box that reads it, not as a root far above it
        levels = _levels(node)
        if depth is not None and len(levels) >= depth:
            inst, block, span = levels[depth - 1]
            outer = levels[:depth - 1]
            box = boxes.get(inst)
            if box is None:
                box = boxes[inst] = Box(inst, "block", [inst, block, ""], span, outer[-1][0] if outer else None,
                                        {"block": block, "layers": 0, "parameters": 0})
            box.info["layers"] += 1
            box.info["parameters"] += rows.get(name, {}).get("parameters", 0)
            box.lines[2] = f"{box.info['layers']} layers, {box.info['parameters']:,} params"
        else:
            outer = levels
            box = boxes[name] = _layer_box(g, name, node, rows.get(name), outer[-1][0] if outer else None)
        for i, (inst, block, span) in enumerate(outer):
            clusters.setdefault(inst, Cluster(inst, f"{inst}: {block}", outer[i - 1][0] if i else None, span))
        box_of[name] = box.id
    arrows, seen = [], set()

    def arrow(src: str, dst: str, label: str, key) -> None:
        if src != dst and key not in seen:
            seen.add(key)
            arrows.append(Arrow(src, dst, label))

    outputs = {}
    for out_name, ref, span in g.graph["outputs"]:
        t = type_of(g, ref)
        bid = f"output {out_name}"
        boxes[bid] = Box(bid, "output", [f"output {out_name}", t.full()], span, None,
                         {"shape": t.full(), "from": ref.node})
        arrow(box_of[ref.node], bid, str(t), (ref, bid))
        outputs[ref] = bid
    for name, node in g.nodes(data=True):
        for ref in node["args"]:
            if g.nodes[ref.node]["kind"] == "target":
                continue
            src = outputs.get(ref, box_of[ref.node]) if node["kind"] == "loss" else box_of[ref.node]
            label = "" if src in outputs.values() else str(type_of(g, ref))
            arrow(src, box_of[name], label, (ref, box_of[name]))
    for box in boxes.values():
        if box.kind == "block":
            ins = [a.label for a in arrows if a.dst == box.id]
            outs = sorted({a.label for a in arrows if a.src == box.id})
            box.info.update(inputs=ins, outputs=outs)
    return View(f"{spec.name} ({spec.path})", boxes, arrows, clusters)


def _layer_box(g, name: str, node: dict, row: dict | None, cluster: str | None) -> Box:
    kind = node["kind"]
    types = node["types"] or []
    info = {"outputs": [t.full() for t in types],
            "inputs": [f"{r.node}: {type_of(g, r).full()}" for r in node["args"]]}
    if kind in ("input", "target"):
        lines = [f"{kind} {name}", types[0].full() if types else "(inferred)"]
    elif kind == "loss":
        weight = f" x {node['weight']:g}" if node["weight"] != 1 else ""
        target = node["args"][1]
        lines = [f"loss {node['op']}{weight}", f"target {target.node}: {type_of(g, target).full()}"]
        info["op"] = node["op"]
    else:
        params = row["parameters"] if row else 0
        lines = [name, _clip(op_call(node["op"], node["params"]))]
        if params:
            lines.append(f"{params:,} params")
        info.update(op=op_call(node["op"], node["params"]), parameters=params)
    return Box(name, "loss" if kind == "loss" else kind, lines, node.get("span"), cluster, info)


# Layout -----------------------------------------------------------------------------------

@dataclass
class Placed:
    """Where everything goes: box centres and sizes, arrow polylines, cluster rectangles."""

    width: float
    height: float
    boxes: dict[str, tuple[float, float, float, float]]  # x, y (top left), w, h
    arrows: list[list[tuple[float, float]]]
    clusters: dict[str, tuple[float, float, float, float]]


class _Size:
    """What grandalf reads and writes of a vertex: its size, then its centre."""

    def __init__(self, w: float, h: float):
        self.w, self.h, self.xy = w, h, (0.0, 0.0)


class _Path:
    def setpath(self, pts):
        self.pts = pts


def layout(view: View) -> Placed:
    """Lay out each cluster on its own, innermost first, then place it as one box in its parent,
    so that no layer is drawn inside a block it is not part of."""
    margin = 30.0
    rel = _place(view, None)
    boxes, rects, routes = {}, {}, {}

    def absolute(unit: _Unit, ox: float, oy: float) -> None:
        for bid, (x, y, w, h) in unit.boxes.items():
            boxes[bid] = (x + ox, y + oy, w, h)
        for cid, (x, y, w, h, inner) in unit.children.items():
            rects[cid] = (x + ox, y + oy, w, h)
            absolute(inner, x + ox + CLUSTER_PAD, y + oy + CLUSTER_PAD + LINE_H)
        for k, pts in unit.routes.items():
            routes[k] = [(x + ox, y + oy) for x, y in pts]

    absolute(rel, margin, margin)
    arrows = []
    for k, a in enumerate(view.arrows):
        sx, sy, sw, sh = boxes[a.src]
        dx, dy, dw, dh = boxes[a.dst]
        middle = routes.get(k, [])[1:-1]
        pts = [(sx + sw / 2, sy + sh)] + middle + [(dx + dw / 2, dy)]
        entered = _entered(view, a)
        if entered is not None and _crosses(pts, boxes, a):
            # Into a block past its first layers (a residual Add): down the block's left margin,
            # then across, instead of straight through the layers in between.
            cx, cy, _, _ = rects[entered]
            side = cx + CLUSTER_PAD / 2
            pts = pts[:-1] + [(pts[-2][0], cy - 4), (side, cy - 4), (side, dy + dh / 2), (dx, dy + dh / 2)]
        arrows.append(pts)
    return Placed(rel.w + 2 * margin, rel.h + 2 * margin, boxes, arrows, rects)


def _chain(view: View, cid: str | None) -> list[str]:
    out = []
    while cid is not None:
        out.append(cid)
        cid = view.clusters[cid].parent
    return out


def _entered(view: View, a: Arrow) -> str | None:
    """The outermost cluster that holds the arrow's head but not its tail."""
    src = set(_chain(view, view.boxes[a.src].cluster))
    outside = [c for c in _chain(view, view.boxes[a.dst].cluster) if c not in src]
    return outside[-1] if outside else None


def _crosses(pts, boxes, a: Arrow) -> bool:
    segments = list(zip(pts, pts[1:]))
    for bid, (x, y, w, h) in boxes.items():
        if bid in (a.src, a.dst):
            continue
        for (x0, y0), (x1, y1) in segments:
            if _segment_hits(x0, y0, x1, y1, x, y, x + w, y + h):
                return True
    return False


def _segment_hits(x0, y0, x1, y1, left, top, right, bottom) -> bool:
    """Whether a segment passes through a rectangle (Liang-Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - left), (dx, right - x0), (-dy, y0 - top), (dy, bottom - y0)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


CLUSTER_PAD = 10.0


@dataclass
class _Unit:
    """A cluster laid out on its own: sizes and positions relative to its top left corner."""

    w: float
    h: float
    boxes: dict  # box id -> (x, y, w, h)
    children: dict  # cluster id -> (x, y, w, h, _Unit)
    routes: dict  # arrow index -> polyline, for arrows between this cluster's parts


def _place(view: View, cid: str | None) -> _Unit:
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout
    from grandalf.routing import route_with_lines
    inner = {c: _place(view, c) for c, cl in view.clusters.items() if cl.parent == cid}
    parts: dict[str, _Size] = {}
    for c, unit in inner.items():
        parts["cluster:" + c] = _Size(unit.w + 2 * CLUSTER_PAD, unit.h + 2 * CLUSTER_PAD + LINE_H)
    for bid, box in view.boxes.items():
        if box.cluster == cid:
            parts[bid] = _Size(*box.size)

    def part_of(bid: str) -> str | None:
        c = view.boxes[bid].cluster
        if c == cid:
            return bid
        while c is not None and view.clusters[c].parent != cid:
            c = view.clusters[c].parent
        return None if c is None else "cluster:" + c

    verts = {p: Vertex(p) for p in parts}
    for p, v in verts.items():
        v.view = parts[p]
    edges, routed = {}, {}
    for k, a in enumerate(view.arrows):
        u, w = part_of(a.src), part_of(a.dst)
        if u is None or w is None or u == w:
            continue
        if (u, w) not in edges:
            e = Edge(verts[u], verts[w])
            e.view = _Path()
            edges[(u, w)] = e
        routed[k] = edges[(u, w)]
    offset_x = 0.0
    for comp in Graph(list(verts.values()), list(edges.values())).C:  # connected parts side by side
        sug = SugiyamaLayout(comp)
        sug.xspace, sug.yspace = X_GAP, Y_GAP
        sug.route_edge = route_with_lines
        sug.init_all(roots=[v for v in comp.sV if not v.e_in()])
        sug.draw(3)
        shift = offset_x - min(v.view.xy[0] - v.view.w / 2 for v in comp.sV)
        for v in comp.sV:
            v.view.xy = (v.view.xy[0] + shift, v.view.xy[1])
        for e in comp.sE:
            e.view.pts = [(x + shift, y) for x, y in getattr(e.view, "pts", [])]
        offset_x = max(v.view.xy[0] + v.view.w / 2 for v in comp.sV) + 2 * X_GAP
    top = min(v.view.xy[1] - v.view.h / 2 for v in verts.values())
    corner = {p: (v.view.xy[0] - v.view.w / 2, v.view.xy[1] - v.view.h / 2 - top) for p, v in verts.items()}
    unit = _Unit(max(x + parts[p].w for p, (x, _) in corner.items()),
                 max(y + parts[p].h for p, (_, y) in corner.items()), {}, {}, {})
    for p, (x, y) in corner.items():
        if p.startswith("cluster:"):
            unit.children[p[8:]] = (x, y, parts[p].w, parts[p].h, inner[p[8:]])
        else:
            unit.boxes[p] = (x, y, parts[p].w, parts[p].h)
    for k, e in routed.items():
        unit.routes[k] = [(x, y - top) for x, y in getattr(e.view, "pts", [])]
    return unit


def _nesting(view: View, cid: str) -> int:
    n = 0
    while view.clusters[cid].parent is not None:
        cid, n = view.clusters[cid].parent, n + 1
    return n


# Writers ------------------------------------------------------------------------------------

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
                       f'fillcolor="{CLUSTER_FILL[min(_nesting(view, child), 3)]}";')
            emit(child, indent + "  ")
            out.append(f"{indent}}}")

    emit(None, "  ")
    for a in view.arrows:
        label = f" [label={q(a.label)}]" if a.label else ""
        out.append(f"  {q(a.src)} -> {q(a.dst)}{label};")
    out.append("}")
    return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def to_svg(view: View, placed: Placed, interactive: bool = False) -> str:
    w, h = placed.width, placed.height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
           f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">',
           f"<title>{_esc(view.title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
           f'<rect width="{w:.0f}" height="{h:.0f}" fill="white"/>', '<g id="scene">']
    for cid, (x, y, cw, ch) in sorted(placed.clusters.items(), key=lambda kv: _nesting(view, kv[0])):
        fill = CLUSTER_FILL[min(_nesting(view, cid), 3)]
        out.append(f'<g class="cluster"><rect x="{x:.1f}" y="{y:.1f}" width="{cw:.1f}" height="{ch:.1f}" rx="6" '
                   f'fill="{fill}" stroke="#b8c4d8"/><text x="{x + 6:.1f}" y="{y + LINE_H - 2:.1f}" '
                   f'fill="#4a5a78" font-size="11">{_esc(view.clusters[cid].label)}</text></g>')
    for a, pts in zip(view.arrows, placed.arrows):
        if len(pts) < 2:
            continue
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"/>')
        if a.label:
            lx, ly = _label_at(pts)
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" fill="#7a4b00" font-size="10">{_esc(a.label)}</text>')
    for bid, (x, y, bw, bh) in placed.boxes.items():
        box = view.boxes[bid]
        rx = bh / 2 if box.kind in ("input", "target", "output") else 4
        attrs = f' class="node" data-id="{_esc(bid)}" style="cursor:pointer"' if interactive else ""
        out.append(f"<g{attrs}><title>{_esc(_tooltip(box))}</title>"
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="{rx:.1f}" '
                   f'fill="{COLORS[box.kind]}" stroke="#333"/>')
        for k, line in enumerate(box.lines):
            weight = ' font-weight="bold"' if k == 0 else ""
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y + PAD / 2 + LINE_H * (k + 1) - 3:.1f}" '
                       f'text-anchor="middle"{weight}>{_esc(line)}</text>')
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

    for cid, (x, y, cw, ch) in sorted(placed.clusters.items(), key=lambda kv: _nesting(view, kv[0])):
        d.rounded_rectangle([s(x), s(y), s(x + cw), s(y + ch)], radius=s(6),
                            fill=CLUSTER_FILL[min(_nesting(view, cid), 3)], outline="#b8c4d8")
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
    img.save(path, "PNG", optimize=True)


def _arrowhead(d, pts, size: float) -> None:
    import math
    (x0, y0), (x1, y1) = pts
    ang = math.atan2(y1 - y0, x1 - x0)
    left = (x1 - size * math.cos(ang - 0.4), y1 - size * math.sin(ang - 0.4))
    right = (x1 - size * math.cos(ang + 0.4), y1 - size * math.sin(ang + 0.4))
    d.polygon([(x1, y1), left, right], fill="#555555")


def _source_line(span: Span | None) -> str:
    if span is None:
        return ""
    try:
        lines = Path(span.path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    return lines[span.line - 1] if 0 < span.line <= len(lines) else ""


def to_html(view: View, placed: Placed) -> str:
    nodes = {}
    for bid, box in view.boxes.items():
        nodes[bid] = dict(box.info, title=box.lines[0], kind=box.kind,
                          where=str(box.span) if box.span else "", source=_source_line(box.span).strip())
    data = json.dumps(nodes).replace("</", "<\\/")
    svg = to_svg(view, placed, interactive=True)
    return _HTML.replace("%TITLE%", _esc(view.title)).replace("%SVG%", svg).replace("%DATA%", data)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<style>
html, body { margin: 0; height: 100%; overflow: hidden; font: 13px system-ui, sans-serif; }
#stage { position: absolute; inset: 0 340px 0 0; overflow: hidden; cursor: grab; background: #fafafa; }
#stage.dragging { cursor: grabbing; }
#stage svg { transform-origin: 0 0; }
#panel { position: absolute; top: 0; right: 0; bottom: 0; width: 340px; box-sizing: border-box; padding: 12px;
         border-left: 1px solid #ccc; overflow: auto; background: white; }
#panel h2 { font-size: 15px; margin: 0 0 8px; word-break: break-all; }
#panel pre { background: #f4f4f4; padding: 6px; white-space: pre-wrap; word-break: break-all; }
#panel dt { font-weight: bold; margin-top: 6px; }
#panel dd { margin: 0 0 0 8px; font-family: monospace; }
.node.selected rect { stroke: #d33; stroke-width: 3; }
#help { color: #666; }
</style></head>
<body>
<div id="stage">%SVG%</div>
<div id="panel"><h2>%TITLE%</h2><p id="help">Drag to pan, scroll to zoom, click a box for its shapes
and the spec line it comes from. Keys: 0 fits the page.</p><div id="details"></div></div>
<script>
"use strict";
const NODES = %DATA%;
const stage = document.getElementById("stage");
const svg = stage.querySelector("svg");
let scale = 1, tx = 0, ty = 0;
function apply() { svg.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`; }
// The whole drawing (key 0), or at first its top at a readable size: deep networks are tall.
function fit(whole) {
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  scale = Math.min(stage.clientWidth / w, whole ? stage.clientHeight / h : 1, 1);
  tx = (stage.clientWidth - w * scale) / 2; ty = 10; apply();
}
stage.addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = stage.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  const k = Math.exp(-e.deltaY * 0.0015), next = Math.min(8, Math.max(0.02, scale * k));
  tx = mx - (mx - tx) * next / scale; ty = my - (my - ty) * next / scale; scale = next; apply();
}, { passive: false });
let drag = null;
stage.addEventListener("mousedown", (e) => { drag = { x: e.clientX - tx, y: e.clientY - ty, moved: false }; stage.classList.add("dragging"); });
window.addEventListener("mousemove", (e) => {
  if (!drag) return;
  drag.moved = true; tx = e.clientX - drag.x; ty = e.clientY - drag.y; apply();
});
window.addEventListener("mouseup", () => { stage.classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); });
window.addEventListener("keydown", (e) => { if (e.key === "0") fit(true); });
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
function show(id) {
  const n = NODES[id];
  document.querySelectorAll(".node.selected").forEach((g) => g.classList.remove("selected"));
  document.querySelectorAll(".node").forEach((g) => { if (g.dataset.id === id) g.classList.add("selected"); });
  let out = `<h3 id="selected-title">${esc(n.title)}</h3><dl>`;
  const rows = [["op", n.op], ["block", n.block], ["layers", n.layers], ["parameters", n.parameters],
                ["inputs", (n.inputs || []).join("\\n")], ["outputs", (n.outputs || []).join("\\n")],
                ["shape", n.shape], ["spec", n.where]];
  for (const [k, v] of rows) {
    if (v === undefined || v === "" || v === null) continue;
    const text = typeof v === "number" ? v.toLocaleString("en") : v;
    out += `<dt>${k}</dt><dd class="${k}">${esc(text).replace(/\\n/g, "<br>")}</dd>`;
  }
  out += "</dl>";
  if (n.source) out += `<pre class="source">${esc(n.source)}</pre>`;
  document.getElementById("details").innerHTML = out;
}
document.querySelectorAll(".node").forEach((g) => g.addEventListener("click", () => { if (!drag || !drag.moved) show(g.dataset.id); }));
fit(false);
</script>
</body></html>
"""


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
    view = build_view(spec, depth)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
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
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
