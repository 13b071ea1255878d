"""What to draw: boxes (layers, collapsed blocks, outputs, losses), arrows labelled with tensor
shapes, and the block instances as clusters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ParamProblem, Span
from ..graph import type_of

_CONTEXT = re.compile(r"^(?P<block>\S+) '(?P<name>.+)'$")

# Drawing metrics, in SVG pixels: a monospace character, a text line, padding and gaps.
CHAR_W, LINE_H, PAD, X_GAP, Y_GAP = 7.2, 15, 8, 24, 46


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
    from ..ops import get_op
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


def nesting(view: View, cid: str) -> int:
    n = 0
    while view.clusters[cid].parent is not None:
        cid, n = view.clusters[cid].parent, n + 1
    return n
