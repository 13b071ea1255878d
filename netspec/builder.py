"""Build: the graph of one network, layer by layer. Binds and validates an op's parameters,
names the layer, adds the node and runs the op's shape rule at once, so a block can read the
shapes of the tensors it is given."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from .digraph import DiGraph
from .errors import LimitProblem, NameProblem, ParamProblem, ShapeProblem, Span, did_you_mean
from .graph import Ref, add_op
from .infer import infer_node
from .types import TensorType
from .validation import choose_word, first
from .values import Layer, Symbolic, Tensor, show

MAX_LAYERS = 200_000


@dataclass
class Scope:
    """One network body or one block instance being expanded."""

    g: DiGraph
    prefix: str  # layer-name prefix: "" in the network, "stage1.0." inside a block instance
    context: tuple  # (label, call span) of the block instantiations we are inside, for messages
    stack: tuple  # names of the blocks being expanded, for recursion checks
    is_network: bool
    file: object  # the loader's FileScope of the file the body was written in
    vars: dict = field(default_factory=dict)
    anon: int = 0
    # Names assigned only in an `if` branch not taken: name -> the `if`'s span, for messages.
    skipped: dict = field(default_factory=dict)


class Namer:
    """Names the layers of one statement: `x.0, x.1, ...`, or `x` for a single layer."""

    __slots__ = ("base", "scope", "single", "count")

    def __init__(self, scope: Scope, base: str, single: bool = False):
        # A block's `out` chain is numbered right under the block, as nn.Sequential would be.
        self.base = "" if base == "out" and scope.prefix else base + "."
        self.scope, self.single, self.count = scope, single and bool(self.base), 0

    def next(self, explicit: str | None = None) -> str:
        if explicit:
            self.count += 1  # the layers after it keep the numbers they would have had
            return self.scope.prefix + explicit
        if self.single and self.count == 0:
            self.count = 1
            return self.scope.prefix + self.base[:-1]
        name = f"{self.scope.prefix}{self.base}{self.count}"
        self.count += 1
        return name


def origin_problem(origin: str, message: str, used_at: Span | None, hint: str | None = None) -> ParamProblem:
    """A bad `--set` value: reported at the option, with where the spec uses it."""
    return ParamProblem(f"{origin}: {message}", None, hint,
                        notes=(("the value is used here", used_at),) if used_at else ())


def _param_value(v):
    """A compile-time value as an op's schema takes it: a symbolic dim is its name."""
    if isinstance(v, Symbolic):
        return v.name
    if isinstance(v, tuple):
        return tuple(_param_value(x) for x in v)
    return v


def op_params(layer: Layer):
    """Validate a layer's written parameters against its op's schema: (params, spans)."""
    op = layer.callee
    fields = list(op.Params.model_fields)
    values, spans, origins = {}, {}, {}
    if len(layer.pos) > len(op.positional):
        span = layer.pos[len(op.positional)][1]
        if op.positional:
            msg = (f"{op.name} takes at most {len(op.positional)} positional parameter"
                   f"{'s' if len(op.positional) != 1 else ''} ({', '.join(op.positional)})")
        else:
            msg = f"{op.name} takes no positional parameters"
        named = [f for f in fields if f not in op.positional]
        raise ParamProblem(msg, span, hint=f"name the others: {', '.join(f + '=...' for f in named)}"
                           if named else f"{op.name} has no other parameters")
    for name, (v, span, origin) in zip(op.positional, layer.pos):
        values[name], spans[name], origins[name] = _param_value(v), span, origin
    for name, (v, span, name_span, origin) in layer.kw.items():
        if name not in fields:
            raise ParamProblem(f"{op.name} has no parameter '{name}'", name_span or span,
                               hint=did_you_mean(name, fields) or
                               (f"its parameters: {', '.join(fields)}" if fields else f"{op.name} takes no parameters"))
        if name in values:
            raise ParamProblem(f"{op.name}: parameter '{name}' is given twice", name_span or span)
        values[name], spans[name], origins[name] = _param_value(v), span, origin
    try:
        return op.Params.model_validate(values), spans
    except ValidationError as e:
        loc, msg, given = first(e)
        if not loc:  # a rule across parameters (the schema's own validator)
            raise ParamProblem(f"{op.name}: {msg}", layer.span) from None
        pname = str(loc[0])
        if msg == "Field required":
            raise ParamProblem(f"{op.name} needs its parameter '{pname}'", layer.span,
                               hint=f"for example {op.name}({', '.join(op.positional) or pname + '=...'})") from None
        written = dict(zip(op.positional, (v for v, *_ in layer.pos))) | {k: v for k, (v, *_) in layer.kw.items()}
        if isinstance(written.get(pname), Symbolic):
            raise ShapeProblem(f"{op.name}: '{pname}' needs a size, but {written[pname].name} is a symbolic dim, "
                               "known only at run time", spans.get(pname, layer.span),
                               hint="read a fixed dim, or declare the input with a fixed size") from None
        shown = show(values.get(pname)) if pname in values else show(given)
        hint = None
        if isinstance(values.get(pname), str):
            # A misspelt word: the number and tuple alternatives of the union are noise.
            msg, words = choose_word(msg)
            hint = did_you_mean(values[pname], words) if words else None
        if origins.get(pname):
            raise origin_problem(origins[pname], f"{op.name}'s '{pname}' {msg}", spans.get(pname, layer.span),
                                 hint) from None
        raise ParamProblem(f"{op.name}: bad value {shown} for '{pname}': {msg}",
                           spans.get(pname, layer.span), hint) from None


def add_layer(scope: Scope, name: str, op, params, inputs: list[Tensor], span: Span | None,
              spans: dict, kind: str = "op", weight: float = 1.0) -> tuple[Tensor, ...]:
    """Add one op node, run its shape rule, and return its output tensors."""
    g = scope.g
    if name in g:
        raise NameProblem(f"two layers are named '{name}'", span,
                          notes=(("the other one", g.nodes[name]["span"]),))
    if g.number_of_nodes() >= MAX_LAYERS:
        raise LimitProblem(f"the network grows past {MAX_LAYERS:,} layers", span)
    add_op(g, name, op.name, params, [t.ref for t in inputs], span, spans, scope.context, kind=kind, weight=weight)
    infer_node(g, name)
    return tuple(Tensor(Ref(name, k), span) for k in range(len(g.nodes[name]["types"])))


def tensor_type(g: DiGraph, t: Tensor) -> TensorType | None:
    types = g.nodes[t.ref.node]["types"]
    return types[t.ref.port] if types else None


def check_names(g: DiGraph) -> None:
    # A layer cannot also be the parent of other layers: state-dict keys would collide.
    names = set(g.nodes)
    for n in names:
        parts = n.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if parent in names and g.nodes[parent]["kind"] == "op":
                raise NameProblem(f"layer '{parent}' is also the prefix of layer '{n}'",
                                  g.nodes[n]["span"], notes=(("the first layer", g.nodes[parent]["span"]),),
                                  hint="rename one of them with 'as'")
