"""The graph IR: one `DiGraph` (`netspec.digraph`, a subset of networkx's interface) per network,
read by every stage after `elaborate`.

A node is keyed by its layer name (dotted, like a torch state-dict prefix: ``layer1.0.conv1``)
and carries these attributes:

- ``kind``: ``"input"`` (a network input), ``"target"`` (a tensor the dataset provides to a
  loss), ``"op"`` (a layer) or ``"loss"`` (a loss term);
- ``op``: the registry name (``"op"`` and ``"loss"`` nodes);
- ``params``: the op's validated pydantic params;
- ``args``: the ordered inputs, each a `Ref` (source node, output port);
- ``span`` and ``param_spans`` (parameter name -> Span): where the author wrote it;
- ``context``: the block instantiations it came from, outermost first, as (label, call span);
- ``types``: its output TensorTypes. Declared for inputs; filled by `infer` for the rest;
- ``weight``: a loss node's weight in the total loss.

An edge (u, v) exists when v reads an output of u; ``args`` holds the order and ports.
Graph attributes: ``name``, ``path``, ``inputs`` (input node names in order), ``outputs``
(list of (name, Ref, Span)), ``targets`` (target node names), ``losses`` (loss node names),
``train`` (the validated TrainConfig or None) and ``train_spans``.
"""

from __future__ import annotations

from typing import NamedTuple

from .digraph import DiGraph
from .errors import Span
from .types import TensorType


class Ref(NamedTuple):
    """An output port of a node."""

    node: str
    port: int = 0


def new_graph(name: str, path: str) -> DiGraph:
    g = DiGraph()
    g.graph.update(name=name, path=path, inputs=[], outputs=[], targets=[], losses=[], train=None,
                   train_spans={})
    return g


def add_input(g: DiGraph, name: str, ttype: TensorType, span: Span | None = None) -> Ref:
    g.add_node(name, kind="input", types=[ttype], span=span, args=[], context=())
    g.graph["inputs"].append(name)
    return Ref(name, 0)


def add_target(g: DiGraph, name: str, ttype: TensorType | None, span: Span | None = None) -> Ref:
    """A tensor the dataset provides; its type may be left for the loss to infer."""
    g.add_node(name, kind="target", types=[ttype] if ttype else None, span=span, args=[], context=())
    g.graph["targets"].append(name)
    return Ref(name, 0)


def add_op(g: DiGraph, name: str, op: str, params, args: list[Ref], span: Span | None = None,
           param_spans: dict | None = None, context: tuple = (), kind: str = "op",
           weight: float = 1.0) -> str:
    if name in g:
        raise ValueError(f"layer {name!r} is already in the graph")
    g.add_node(name, kind=kind, op=op, params=params, args=list(args), span=span,
               param_spans=param_spans or {}, context=context, types=None, weight=weight)
    for ref in args:
        g.add_edge(ref.node, name)
    if kind == "loss":
        g.graph["losses"].append(name)
    return name


def add_output(g: DiGraph, name: str, ref: Ref, span: Span | None = None) -> None:
    g.graph["outputs"].append((name, ref, span))


def type_of(g: DiGraph, ref: Ref) -> TensorType:
    return g.nodes[ref.node]["types"][ref.port]


def layers(g: DiGraph) -> list[str]:
    """The op nodes (not inputs, targets or losses) in a deterministic topological order."""
    # Ties go to insertion order, which keeps the generated code and the ONNX node list in spec order.
    return [n for n in g.topological_order() if g.nodes[n]["kind"] == "op"]
