"""Where everything goes: grandalf's layered (Sugiyama) layout, one cluster at a time."""

from __future__ import annotations

from dataclasses import dataclass

from .view import LINE_H, X_GAP, Y_GAP, Arrow, View


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
