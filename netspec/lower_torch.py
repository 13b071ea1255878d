"""Lower a checked graph to a `torch.fx.GraphModule` whose forward is straight-line code."""

from __future__ import annotations

import keyword
import operator
import re

import torch
from torch import fx, nn

from .digraph import DiGraph
from .graph import Ref, layers, type_of
from .ops import Attr, Call, get_op


def _ident(name: str) -> str:
    """A Python identifier close to `name`, for fx node and class names."""
    s = re.sub(r"\W", "_", name)
    if not s or s[0].isdigit() or keyword.iskeyword(s):
        s = "_" + s
    return s


def _ins(g: DiGraph, name: str):
    node = g.nodes[name]
    return [type_of(g, r) for r in node["args"]]


def to_module(g: DiGraph) -> fx.GraphModule:
    """Build the fx graph by hand, one call per layer, so forward has no interpretation overhead."""
    graph = fx.Graph()
    modules: dict[str, nn.Module] = {}
    env: dict[Ref, fx.Node] = {}
    multi: dict[str, fx.Node] = {}  # node name -> the fx node returning its tuple of outputs

    def value(ref: Ref) -> fx.Node:
        if ref in env:
            return env[ref]
        # A port of a multi-output op: read it once with getitem, right where it is first needed.
        item = graph.create_node("call_function", operator.getitem, (multi[ref.node], ref.port),
                                 name=_ident(f"{ref.node}_{ref.port}"))
        env[ref] = item
        return item

    for name in g.graph["inputs"]:
        ph = graph.placeholder(_ident(name))
        env[Ref(name, 0)] = ph

    for name in layers(g):
        node = g.nodes[name]
        op = get_op(node["op"])
        p = node["params"]
        ins = _ins(g, name)
        args = [value(r) for r in node["args"]]
        lowered = op.torch(p, ins)
        if isinstance(lowered, Attr):
            modules[name] = lowered.module
            fnode = graph.get_attr(f"{name}.{lowered.attr}")
        elif isinstance(lowered, Call):
            call_args = (args,) if lowered.pack else tuple(args)
            fnode = graph.create_node("call_function", lowered.target, call_args, dict(lowered.kwargs),
                                      name=_ident(name))
        else:
            modules[name] = lowered
            fnode = graph.create_node("call_module", name, tuple(args), {}, name=_ident(name))
        if op.outputs(p) > 1:
            multi[name] = fnode
        else:
            env[Ref(name, 0)] = fnode

    outs = [value(ref) for _, ref, _ in g.graph["outputs"]]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    graph.lint()
    # Built in layer order: a dict root would be sorted by nesting depth, and the state dict
    # should read in spec order.
    root = nn.Module()
    for name, mod in modules.items():
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, mod)
    return fx.GraphModule(root, graph, class_name=_ident(g.graph.get("name") or "Network"))


class _CallModule(nn.Module):
    """Wrap a stateless loss `Call` so that every loss term is a module called as (pred, target)."""

    def __init__(self, call: Call):
        super().__init__()
        self.call = call

    def forward(self, pred, target):
        return self.call.target(pred, target, **self.call.kwargs)


class LossModule(nn.Module):
    """(outputs by name, targets by name) -> (weighted total, {loss node name: unweighted value})."""

    def __init__(self, terms: list[tuple[str, str, str, float]], losses: dict[str, nn.Module]):
        super().__init__()
        # (loss node name, output name, target name, weight), in spec order.
        self.terms = terms
        # ModuleDict keys may not contain dots, which dotted block names do.
        self.losses = nn.ModuleDict({_ident(n): m for n, m in losses.items()})

    def forward(self, outputs: dict, targets: dict):
        total = None
        values = {}
        for name, out, tgt, weight in self.terms:
            v = self.losses[_ident(name)](outputs[out], targets[tgt])
            values[name] = v
            term = v if weight == 1.0 else v * weight
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros(())
        return total, values


def loss_module(g: DiGraph) -> LossModule:
    """The spec's losses as one module; each reads a network output and a target."""
    by_ref: dict[Ref, str] = {}
    for out_name, ref, _ in g.graph["outputs"]:
        by_ref.setdefault(ref, out_name)
    terms, mods = [], {}
    for name in g.graph["losses"]:
        node = g.nodes[name]
        op = get_op(node["op"])
        pred, target = node["args"][0], node["args"][1]
        lowered = op.torch(node["params"], _ins(g, name))
        mods[name] = _CallModule(lowered) if isinstance(lowered, Call) else lowered
        terms.append((name, by_ref[pred], target.node, float(node.get("weight", 1.0))))
    return LossModule(terms, mods)
