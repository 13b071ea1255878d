"""Shape and dtype inference over the graph in topological order, and the model-size checks."""

from __future__ import annotations

from .digraph import CycleError, DiGraph
from .errors import GraphProblem, LimitProblem, OpError, ShapeProblem
from .graph import Ref, layers, type_of
from .ops import get_op, param_count

MAX_PARAMETERS = 10_000_000_000  # past this, a spec is a typo (Linear(10**9)), not a model
MAX_ELEMENTS = 2**40  # elements of one tensor per batch item


def _notes(node: dict) -> tuple:
    """Where the layer's blocks were instantiated, innermost first."""
    ctx = node.get("context") or ()
    return tuple((f"in block {label}, used here", span) for label, span in reversed(ctx[-4:]))


def _fail(g: DiGraph, name: str, err: OpError, cls=ShapeProblem):
    node = g.nodes[name]
    span = node.get("param_spans", {}).get(err.param) or node["span"]
    ins = [type_of(g, r) for r in node["args"] if g.nodes[r.node]["types"]]
    msg = f"{node['op']} '{name}': {err.message}"
    if ins and not any(str(t) in err.message for t in ins):
        shown = ", ".join(t.full() for t in ins)
        msg += f" (input{'s' if len(ins) > 1 else ''}: {shown})"
    raise cls(msg, span, err.hint, notes=_notes(node))


def infer(g: DiGraph) -> DiGraph:
    """Fill every node's `types`, raising a located error at the first rule broken."""
    try:
        order = g.topological_order()
    except CycleError:
        cycle = g.find_cycle()
        first = g.nodes[cycle[0][0]]
        raise GraphProblem("the connections form a cycle: " + " -> ".join(u for u, _ in cycle)
                           + f" -> {cycle[0][0]}", first.get("span")) from None
    total = 0
    for name in order:
        node = g.nodes[name]
        if node["kind"] in ("input", "target"):
            continue
        if node["types"] is None:  # the elaborator types nodes as it adds them; a hand-built graph may not
            infer_node(g, name)
        if node["kind"] == "op":
            total += param_count(get_op(node["op"]), node["params"], [type_of(g, r) for r in node["args"]])
            if total > MAX_PARAMETERS:
                _fail(g, name, OpError(f"brings the model past {MAX_PARAMETERS:,} parameters"
                                       f" ({total:,} so far)", hint="check the sizes of this layer"),
                      LimitProblem)
    _check_losses(g)
    return g


def infer_node(g: DiGraph, name: str) -> None:
    """Run one node's shape rule (its inputs are typed), raising a located error."""
    node = g.nodes[name]
    op = get_op(node["op"])
    p = node["params"]
    if node["kind"] == "loss":
        _infer_target(g, node, op, p)
    ins = [type_of(g, r) for r in node["args"]]
    try:
        key = (op.name, p, tuple(ins))
        outs = _SHAPES.get(key)
    except TypeError:  # params holding a list are not hashable: nothing to reuse
        key, outs = None, None
    if outs is None:
        try:
            outs = op.shape(p, ins)
        except OpError as e:
            _fail(g, name, e)
        for t in outs:
            if t.per_item_numel() > MAX_ELEMENTS:
                _fail(g, name, OpError(f"produces a tensor {t} of over 2**40 elements"), LimitProblem)
        if len(_SHAPES) > 50_000:
            _SHAPES.clear()
        if key is not None:
            _SHAPES[key] = outs
    node["types"] = list(outs)


# Shape rules are pure and a network repeats the same layer on the same input many times, so
# results are kept by (op, params, input types).
_SHAPES: dict = {}


def _infer_target(g: DiGraph, node: dict, op, p) -> None:
    pred, target = node["args"][0], node["args"][1]
    tnode = g.nodes[target.node]
    if tnode["kind"] == "target" and not tnode["types"]:
        try:
            tnode["types"] = [op.target(p, type_of(g, pred))]
        except OpError as e:
            raise ShapeProblem(f"{node['op']}: {e.message}", node["span"], e.hint) from None


def _check_losses(g: DiGraph) -> None:
    outputs = {ref for _, ref, _ in g.graph["outputs"]}
    for name in g.graph["losses"]:
        node = g.nodes[name]
        pred: Ref = node["args"][0]
        if pred not in outputs:
            raise GraphProblem(f"{node['op']} reads '{pred.node}', which is not a network output",
                               node["span"], hint="declare it with `output NAME = ...` so training can read it")
        t = node["types"][0]
        if t.rank != 0:
            raise ShapeProblem(f"{node['op']} should give a scalar, got {t}", node["span"])


def summary(g: DiGraph) -> list[dict]:
    """One row per layer: name, op, output shape, trainable parameters, MACs and element-wise ops per item."""
    rows = []
    for name in layers(g):
        node = g.nodes[name]
        op = get_op(node["op"])
        ins = [type_of(g, r) for r in node["args"]]
        rows.append({"name": name, "op": node["op"], "shape": " ".join(str(t) for t in node["types"]),
                     "parameters": param_count(op, node["params"], ins),
                     "macs": op.macs(node["params"], ins, node["types"]),
                     "elementwise": op.elementwise(node["params"], ins, node["types"])})
    return rows


def total_parameters(g: DiGraph) -> int:
    return sum(r["parameters"] for r in summary(g))

