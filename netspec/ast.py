"""The syntax tree of a .net file; every node carries the span it was written at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Span


@dataclass(slots=True)
class Node:
    span: Span = field(repr=False, compare=False)


# Expressions ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Num(Node):
    value: int | float


@dataclass(slots=True)
class Str(Node):
    value: str


@dataclass(slots=True)
class Bool(Node):
    value: bool


@dataclass(slots=True)
class Name(Node):
    id: str


@dataclass(slots=True)
class ListE(Node):
    items: list[Any]


@dataclass(slots=True)
class Arg(Node):
    name: str | None  # None for a positional argument
    value: Any
    name_span: Span | None = None


@dataclass(slots=True)
class Call(Node):
    func: Any
    args: list[Arg]


@dataclass(slots=True)
class Index(Node):
    """`v[i]`, `v[a:b]`, `x[:, :, 4:-4]`: one item per subscript, each an expression or a Slice."""

    value: Any
    items: list[Any]


@dataclass(slots=True)
class Slice(Node):
    start: Any | None
    stop: Any | None
    step: Any | None


@dataclass(slots=True)
class Attr(Node):
    """`x.shape`: a compile-time property of a value."""

    value: Any
    name: str
    name_span: Span | None = None


@dataclass(slots=True)
class Comprehension(Node):
    """`[Block(c) for c in widths if c > 8]`: a list built at compile time."""

    item: Any
    names: list[str]
    iter: Any
    cond: Any | None


@dataclass(slots=True)
class Named(Node):
    """`layer as name`: the layer takes this name instead of a numbered one."""

    value: Any
    name: str


@dataclass(slots=True)
class BinOp(Node):
    op: str
    left: Any
    right: Any


@dataclass(slots=True)
class Neg(Node):
    value: Any


@dataclass(slots=True)
class Not(Node):
    value: Any


@dataclass(slots=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    left: Any
    right: Any


@dataclass(slots=True)
class Ternary(Node):
    cond: Any
    then: Any
    other: Any
    # `c ? a : b -> Y` once meant `(c ? a : b) -> Y`; kept so the elaborator can refuse it.
    ambiguous: bool = False


@dataclass(slots=True)
class Chain(Node):
    items: list[Any]


# Statements ----------------------------------------------------------------------------------

@dataclass(slots=True)
class TensorTypeE(Node):
    dtype: str
    dims: list[Any]


@dataclass(slots=True)
class InputItem(Node):
    name: str
    type: TensorTypeE | None


@dataclass(slots=True)
class InputDecl(Node):
    items: list[InputItem]


@dataclass(slots=True)
class TargetDecl(Node):
    name: str
    type: TensorTypeE


@dataclass(slots=True)
class OutputDecl(Node):
    name: str
    value: Any | None
    name_span: Span | None = None


@dataclass(slots=True)
class Assign(Node):
    names: list[str]
    value: Any
    name_spans: list[Span] = field(default_factory=list)


@dataclass(slots=True)
class IfStmt(Node):
    cond: Any
    then: list[Any]
    other: list[Any]


@dataclass(slots=True)
class ParamDecl(Node):
    """`param cls: float32[1, 1, 768] = zeros`: a learnable tensor."""

    name: str
    type: TensorTypeE
    init: Any | None
    name_span: Span | None = None


@dataclass(slots=True)
class AssertStmt(Node):
    cond: Any
    message: Any | None


@dataclass(slots=True)
class LossStmt(Node):
    op: str
    args: list[Arg]


@dataclass(slots=True)
class Setting(Node):
    name: str
    value: Any


@dataclass(slots=True)
class TrainDef(Node):
    settings: list[Setting]


# Top level -----------------------------------------------------------------------------------

@dataclass(slots=True)
class Param(Node):
    name: str
    default: Any | None


@dataclass(slots=True)
class BlockDef(Node):
    name: str
    params: list[Param]
    body: list[Any]
    path: str = ""
    # The file scope it was written in (set by the loader): its names resolve there.
    scope: Any = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class NetworkDef(Node):
    name: str
    params: list[Param]
    body: list[Any]
    path: str = ""
    scope: Any = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class NetworkAlias(Node):
    """`network ResNet50 = ResNet(depths=[3, 4, 6, 3])`."""

    name: str
    target: str
    args: list[Arg]
    path: str = ""
    scope: Any = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class Import(Node):
    path: str
    names: list[tuple[str, Span]] | None  # None imports every block and network


@dataclass(slots=True)
class Module(Node):
    path: str
    items: list[Any]
