"""The syntax tree of a .net file; every node carries the span it was written at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Span


@dataclass
class Node:
    span: Span = field(repr=False, compare=False)


# Expressions ---------------------------------------------------------------------------------

@dataclass
class Num(Node):
    value: int | float


@dataclass
class Str(Node):
    value: str


@dataclass
class Bool(Node):
    value: bool


@dataclass
class Name(Node):
    id: str


@dataclass
class ListE(Node):
    items: list[Any]


@dataclass
class Arg(Node):
    name: str | None  # None for a positional argument
    value: Any
    name_span: Span | None = None


@dataclass
class Call(Node):
    func: Any
    args: list[Arg]


@dataclass
class Index(Node):
    """`v[i]`, `v[a:b]`, `x[:, :, 4:-4]`: one item per subscript, each an expression or a Slice."""

    value: Any
    items: list[Any]


@dataclass
class Slice(Node):
    start: Any | None
    stop: Any | None
    step: Any | None


@dataclass
class Attr(Node):
    """`x.shape`: a compile-time property of a value."""

    value: Any
    name: str
    name_span: Span | None = None


@dataclass
class Comprehension(Node):
    """`[Block(c) for c in widths if c > 8]`: a list built at compile time."""

    item: Any
    names: list[str]
    iter: Any
    cond: Any | None


@dataclass
class Named(Node):
    """`layer as name`: the layer takes this name instead of a numbered one."""

    value: Any
    name: str


@dataclass
class BinOp(Node):
    op: str
    left: Any
    right: Any


@dataclass
class Neg(Node):
    value: Any


@dataclass
class Not(Node):
    value: Any


@dataclass
class BoolOp(Node):
    op: str  # "and" | "or"
    left: Any
    right: Any


@dataclass
class Ternary(Node):
    cond: Any
    then: Any
    other: Any
    # `c ? a : b -> Y` once meant `(c ? a : b) -> Y`; kept so the elaborator can refuse it.
    ambiguous: bool = False


@dataclass
class Chain(Node):
    items: list[Any]


# Statements ----------------------------------------------------------------------------------

@dataclass
class TensorTypeE(Node):
    dtype: str
    dims: list[Any]


@dataclass
class InputItem(Node):
    name: str
    type: TensorTypeE | None


@dataclass
class InputDecl(Node):
    items: list[InputItem]


@dataclass
class TargetDecl(Node):
    name: str
    type: TensorTypeE


@dataclass
class OutputDecl(Node):
    name: str
    value: Any | None
    name_span: Span | None = None


@dataclass
class Assign(Node):
    names: list[str]
    value: Any
    name_spans: list[Span] = field(default_factory=list)


@dataclass
class IfStmt(Node):
    cond: Any
    then: list[Any]
    other: list[Any]


@dataclass
class ParamDecl(Node):
    """`param cls: float32[1, 1, 768] = zeros`: a learnable tensor."""

    name: str
    type: TensorTypeE
    init: Any | None
    name_span: Span | None = None


@dataclass
class AssertStmt(Node):
    cond: Any
    message: Any | None


@dataclass
class LossStmt(Node):
    op: str
    args: list[Arg]


@dataclass
class Setting(Node):
    name: str
    value: Any


@dataclass
class TrainDef(Node):
    settings: list[Setting]


# Top level -----------------------------------------------------------------------------------

@dataclass
class Param(Node):
    name: str
    default: Any | None


@dataclass
class BlockDef(Node):
    name: str
    params: list[Param]
    body: list[Any]
    path: str = ""
    # The file scope it was written in (set by the loader): its names resolve there.
    scope: Any = field(default=None, repr=False, compare=False)


@dataclass
class NetworkDef(Node):
    name: str
    params: list[Param]
    body: list[Any]
    path: str = ""
    scope: Any = field(default=None, repr=False, compare=False)


@dataclass
class NetworkAlias(Node):
    """`network ResNet50 = ResNet(depths=[3, 4, 6, 3])`."""

    name: str
    target: str
    args: list[Arg]
    path: str = ""
    scope: Any = field(default=None, repr=False, compare=False)


@dataclass
class Import(Node):
    path: str
    names: list[tuple[str, Span]] | None  # None imports every block and network


@dataclass
class Module(Node):
    path: str
    items: list[Any]
