"""Compile-time values and the arithmetic on them, each result bounded in size.

Besides ints, floats, bools, strings and tuples (a spec's lists), an expression can be a
`Tensor` (a graph edge), a `Layer` (an op or block waiting for its inputs) or a `Symbolic`
dim read from a shape (`x.shape[0]` when the batch is `N`), which no arithmetic accepts.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import LimitProblem, ParamProblem, ShapeProblem, Span, clip
from .graph import Ref

MAX_ITEMS = 100_000  # items of one list (a stage table has tens)
MAX_STRING = 10_000  # characters of one string
MAX_INT_BITS = 256  # an int past 2**256 is a runaway expression, not a size
MAX_TOTAL = 10_000_000  # list items and characters made while elaborating one network

# Items made so far, so that nested lists ([[0] * 100000 for i in range(100000)]) stay bounded
# too; `elaborate_file` starts each network at zero.
_made = contextvars.ContextVar("netspec_values_made", default=0)


def reset_budget() -> None:
    _made.set(0)


# Slotted: a network written line by line makes several of these per statement.
@dataclass(frozen=True, slots=True)
class Tensor:
    ref: Ref
    span: Span


@dataclass(slots=True)
class Binding:
    """What a name in a scope holds, and whether it was used."""

    value: Any
    span: Span | None
    used: bool = False
    is_output: bool = False
    origin: str | None = None  # "--set NAME=VALUE" when the value came from the command line


@dataclass(frozen=True, slots=True)
class Symbolic:
    """A dim known only at run time, such as the batch size N."""

    name: str


@dataclass(slots=True)
class Layer:
    """An op or block with its parameters bound, waiting for its input tensors."""

    callee: Any  # an Op class or an ast.BlockDef
    pos: list = field(default_factory=list)  # (value, span, origin) of positional parameters
    kw: dict = field(default_factory=dict)  # name -> (value, span, name span, origin)
    tensors: list = field(default_factory=list)  # tensor arguments written in the call
    span: Span | None = None
    name: str | None = None  # from `as NAME`
    repeat: int = 1

    @property
    def title(self) -> str:
        return self.callee.name


def is_tensorish(v) -> bool:
    return isinstance(v, Tensor) or (isinstance(v, tuple) and len(v) > 0 and all(isinstance(x, Tensor) for x in v))


def tensors_of(v) -> list[Tensor]:
    return [v] if isinstance(v, Tensor) else list(v)


def kind(v) -> str:
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, tuple):
        if is_tensorish(v):
            return "several tensors"
        return "a list of layers" if v and all(isinstance(x, Layer) for x in v) else "a list"
    if isinstance(v, Layer):
        return f"the layer {v.title}"
    if isinstance(v, Symbolic):
        return f"the symbolic dim {v.name}"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return type(v).__name__


def show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return clip("[" + ", ".join(show(x) for x in v) + "]")
    if isinstance(v, str):
        return clip(f'"{v}"')
    if isinstance(v, Symbolic):
        return v.name
    return clip(repr(v))


def check_size(v, span: Span):
    """Refuse a value too large to be a spec's: the bound every operation's result passes."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
        raise LimitProblem(f"a number past 2**{MAX_INT_BITS} ({v.bit_length()} bits)", span,
                           hint="numbers in a spec are sizes and counts; check the arithmetic")
    if isinstance(v, float) and not math.isfinite(v):
        raise LimitProblem(f"the result is {v} (past float range)", span)
    if isinstance(v, str) and len(v) > MAX_STRING:
        raise LimitProblem(f"a string of {len(v):,} characters (at most {MAX_STRING:,})", span)
    if isinstance(v, tuple) and len(v) > MAX_ITEMS:
        raise LimitProblem(f"a list of {len(v):,} items (at most {MAX_ITEMS:,})", span)
    if isinstance(v, (tuple, str)) and len(v) > 1:
        made = _made.get() + len(v)
        _made.set(made)
        if made > MAX_TOTAL:
            raise LimitProblem(f"the spec's compile-time values grow past {MAX_TOTAL:,} items in all", span,
                               hint="a list or string is built over and over here")
    return v


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _planned_size(op: str, a, b) -> int:
    """The length a `+` or `*` of strings or lists would have, computed before building it."""
    if op == "+" and isinstance(a, (str, tuple)) and isinstance(b, type(a)):
        return len(a) + len(b)
    if op == "*":
        seq, n = (a, b) if isinstance(a, (str, tuple)) else (b, a)
        if isinstance(seq, (str, tuple)) and isinstance(n, int) and not isinstance(n, bool):
            return len(seq) * max(n, 0)
    return 0


def arithmetic(op: str, a, b, span: Span, left_span: Span, right_span: Span):
    """`a op b` on compile-time values, with a located error for what does not apply."""
    for side, v in ((left_span, a), (right_span, b)):
        if isinstance(v, Symbolic):
            raise ShapeProblem(f"'{op}' does not apply to {kind(v)}: its size is known only at run time", side,
                               hint="read a fixed dim, or declare the input with a fixed size")
        if isinstance(v, bool) and op not in ("==", "!=") or not isinstance(v, (int, float, str, bool, tuple)):
            raise ParamProblem(f"'{op}' does not apply to {kind(v)}", side)
    if op == "%" and isinstance(a, str):
        raise ParamProblem("'%' does not apply to a string (a spec has no string formatting)", left_span)
    size = _planned_size(op, a, b)
    limit = MAX_STRING if isinstance(a, str) or isinstance(b, str) else MAX_ITEMS
    if size > limit:
        raise LimitProblem(f"'{op}' would build {'a string' if limit == MAX_STRING else 'a list'} of "
                           f"{size:,} items (at most {limit:,})", span)
    try:
        if op == "**":
            if not (_numeric(a) and _numeric(b)):
                raise TypeError
            if abs(b) > 64 or (isinstance(a, (int, float)) and abs(a) > 2**32):
                raise LimitProblem("exponent out of the sane range", span,
                                   hint="a power in a spec has a base up to 2**32 and an exponent up to 64")
        result = _apply(op, a, b)
    except ZeroDivisionError:
        raise ParamProblem("division by zero", span) from None
    except OverflowError:
        raise LimitProblem(f"'{op}' overflows: the result is past float range", span) from None
    except TypeError:
        raise ParamProblem(f"'{op}' does not apply to {kind(a)} and {kind(b)}", span) from None
    return check_size(result, span)


def _apply(op: str, a, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if op == "//":
        return a // b
    if op == "%":
        return a % b
    if op == "**":
        return a ** b
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


# Value functions: pure, total, and bounded like every other value.

def _numbers(name: str, args: list, spans: list[Span]):
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], tuple) else list(args)
    if not items:
        raise ParamProblem(f"{name}() needs at least one number", spans[0] if spans else None)
    for v, sp in zip(items, spans if len(args) > 1 else spans * len(items)):
        if not _numeric(v):
            raise ParamProblem(f"{name}() takes numbers, got {kind(v)}", sp)
    return items


def _len(args, spans, span):
    if len(args) != 1 or not isinstance(args[0], (tuple, str)):
        raise ParamProblem(f"len() takes one list or string, got {kind(args[0]) if len(args) == 1 else f'{len(args)} values'}",
                           spans[0] if args else span)
    return len(args[0])


def _round(args, spans, span):
    if len(args) != 1 or not _numeric(args[0]):
        raise ParamProblem("round() takes one number", spans[0] if args else span)
    return int(round(args[0]))


def _range(args, spans, span):
    if not 1 <= len(args) <= 3 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise ParamProblem("range() takes 1 to 3 integers: range(stop), range(start, stop[, step])",
                           spans[0] if args else span)
    if len(args) == 3 and args[2] == 0:
        raise ParamProblem("range() step must not be zero", spans[2])
    r = range(*args)
    if len(r) > MAX_ITEMS:
        raise LimitProblem(f"range() of {len(r):,} items (at most {MAX_ITEMS:,})", span)
    return tuple(r)


FUNCTIONS = {
    "min": lambda args, spans, span: min(_numbers("min", args, spans)),
    "max": lambda args, spans, span: max(_numbers("max", args, spans)),
    "len": _len,
    "round": _round,
    "range": _range,
}


def call_function(name: str, args: list, spans: list[Span], span: Span):
    return check_size(FUNCTIONS[name](args, spans, span), span)
