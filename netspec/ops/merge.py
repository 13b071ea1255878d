"""Ops over several tensors: elementwise arithmetic with broadcasting, Concat, Stack, Split, MatMul."""

from __future__ import annotations

import functools

from pydantic import Field, field_validator
from typing_extensions import Annotated

from ..errors import OpError
from ..types import Dim, TensorType, norm_axis
from .registry import Call, Int, Op, Params, PosInt, register


def _same_dtype(ins: list[TensorType]) -> str:
    dtypes = {t.dtype for t in ins}
    if len(dtypes) > 1:
        raise OpError("expects inputs of one dtype, got " + ", ".join(t.full() for t in ins))
    return ins[0].dtype


def broadcast(shapes: list[tuple[Dim, ...]]) -> tuple[Dim, ...]:
    """Numpy broadcasting with symbolic dims: N with N or 1 gives N; N with any other size fails."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(-rank, 0):
        dims = [s[i] for s in shapes if len(s) >= -i]
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            shown = ", ".join("[" + ",".join(map(str, s)) + "]" for s in shapes)
            raise OpError(f"shapes {shown} do not broadcast: dim {i} is {' vs '.join(str(d) for d in dims)}, "
                          "and each must be equal or 1")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


@functools.cache
def _fold_module():
    from torch import nn

    class Fold(nn.Module):
        """Apply a binary function left to right over any number of inputs."""

        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, *xs):
            return functools.reduce(self.fn, xs)

    return Fold


class _Elementwise(Op):
    """A broadcasting arithmetic op: `torch.<torch_name>` and ONNX `onnx_type` combine two inputs."""

    arity = (2, None)
    torch_name = ""
    onnx_type = ""

    @staticmethod
    def shape(p, ins):
        dtype = _same_dtype(ins)
        return [TensorType(dtype, broadcast([t.shape for t in ins]))]

    @classmethod
    def torch(cls, p, ins):
        import torch
        fn = getattr(torch, cls.torch_name)
        return Call(fn) if len(ins) == 2 else _fold_module()(fn)

    @classmethod
    def onnx(cls, ctx):
        acc = ctx.inputs[0]
        for i, x in enumerate(ctx.inputs[1:], start=2):
            (acc,) = ctx.node(cls.onnx_type, [acc, x], ctx.outputs if i == len(ctx.inputs) else None)

    @staticmethod
    def elementwise(p, ins, outs):
        return outs[0].per_item_numel() * (len(ins) - 1)


@register
class Add(_Elementwise):
    doc = "The elementwise sum of two or more inputs, with numpy broadcasting (residual connections)."
    torch_name = "add"
    onnx_type = "Add"


@register
class Mul(_Elementwise):
    doc = "The elementwise product of two or more inputs, with numpy broadcasting (gates)."
    torch_name = "mul"
    onnx_type = "Mul"


@register
class Sub(_Elementwise):
    doc = "The first input minus the second, with numpy broadcasting."
    arity = (2, 2)
    torch_name = "sub"
    onnx_type = "Sub"


def _fixed_others(ins: list[TensorType], axis: int, what: str) -> None:
    """Raise unless the inputs agree on every dim but `axis` (None: on every dim)."""
    def others(t):
        return tuple(d for i, d in enumerate(t.shape) if i != axis)
    if len({t.rank for t in ins}) > 1 or len({others(t) for t in ins}) > 1:
        shown = ", ".join(str(t) for t in ins)
        raise OpError(f"{what}, got {shown}", param="dim")


@register
class Concat(Op):
    doc = "Join two or more tensors along `dim` (channels by default); the other dims must match."
    positional = ("dim",)
    arity = (2, None)

    class Params(Params):
        dim: Int = 1

    @staticmethod
    def shape(p, ins):
        dtype = _same_dtype(ins)
        first = ins[0]
        axis = norm_axis(p.dim, first.rank)
        if axis is None:
            raise OpError(f"dim={p.dim} is out of range for the {first.rank}-d input {first}", param="dim")
        _fixed_others(ins, axis, f"expects equal shapes except along dim {axis}")
        sizes = [t.shape[axis] for t in ins]
        sym = [d for d in sizes if isinstance(d, str)]
        if sym:
            raise OpError(f"cannot concatenate along dim {axis}, which is symbolic ({sym[0]}) in "
                          + ", ".join(str(t) for t in ins), param="dim")
        return [TensorType(dtype, first.shape[:axis] + (sum(sizes),) + first.shape[axis + 1:])]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.cat, {"dim": p.dim}, pack=True)

    @staticmethod
    def onnx(ctx):
        ctx.node("Concat", ctx.inputs, ctx.outputs, axis=ctx.params.dim)


@register
class Stack(Op):
    doc = "Stack two or more tensors of one shape along a new dim `dim`."
    positional = ("dim",)
    arity = (2, None)

    class Params(Params):
        dim: Int = 1

    @staticmethod
    def shape(p, ins):
        dtype = _same_dtype(ins)
        first = ins[0]
        _fixed_others(ins, None, "expects inputs of one shape")
        axis = norm_axis(p.dim, first.rank + 1)
        if axis is None:
            raise OpError(f"dim={p.dim} is out of range for stacking {first.rank}-d inputs {first}", param="dim")
        return [TensorType(dtype, first.shape[:axis] + (len(ins),) + first.shape[axis:])]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.stack, {"dim": p.dim}, pack=True)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        axes = ctx.const(np.array([ctx.params.dim], dtype=np.int64), "axes")
        parts = [ctx.node("Unsqueeze", [x, axes])[0] for x in ctx.inputs]
        ctx.node("Concat", parts, ctx.outputs, axis=ctx.params.dim)


@register
class Split(Op):
    doc = ("Cut a tensor along `dim` into parts, one output each: `sizes` is a list of part sizes, "
           "or a count of equal parts.")
    positional = ("sizes", "dim")

    class Params(Params):
        sizes: Annotated[list[PosInt], Field(min_length=2)] | PosInt
        dim: Int = 1

        @field_validator("sizes")
        @classmethod
        def _parts(cls, v):
            if isinstance(v, int) and v < 2:
                raise ValueError(f"a split needs at least 2 parts, got {v}")
            return v

    @staticmethod
    def outputs(p) -> int:
        return p.sizes if isinstance(p.sizes, int) else len(p.sizes)

    @staticmethod
    def _sizes(p, x: TensorType) -> tuple[int, list[int]]:
        axis = norm_axis(p.dim, x.rank)
        if axis is None:
            raise OpError(f"dim={p.dim} is out of range for the {x.rank}-d input {x}", param="dim")
        n = x.shape[axis]
        if isinstance(n, str):
            raise OpError(f"cannot split along dim {axis} of {x}: it is symbolic ({n})", param="dim")
        if isinstance(p.sizes, int):
            if n % p.sizes:
                raise OpError(f"cannot split dim {axis} of size {n} into {p.sizes} equal parts", param="sizes")
            return axis, [n // p.sizes] * p.sizes
        if sum(p.sizes) != n:
            raise OpError(f"sizes {list(p.sizes)} sum to {sum(p.sizes)}, but dim {axis} of {x} has size {n}",
                          param="sizes")
        return axis, list(p.sizes)

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        axis, sizes = Split._sizes(p, x)
        return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]

    @staticmethod
    def torch(p, ins):
        import torch
        axis, sizes = Split._sizes(p, ins[0])
        return Call(torch.split, {"split_size_or_sections": sizes, "dim": axis})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        axis, sizes = Split._sizes(ctx.params, ctx.in_types[0])
        ctx.node("Split", [ctx.inputs[0], ctx.const(np.array(sizes, dtype=np.int64), "split")], ctx.outputs,
                 axis=axis)


@register
class MatMul(Op):
    doc = "Matrix product over the last two dims, broadcasting the leading ones: [.., n, k] @ [.., k, m]."
    arity = (2, 2)

    @staticmethod
    def shape(p, ins):
        a, b = ins
        dtype = _same_dtype(ins)
        if a.rank < 2 or b.rank < 2:
            raise OpError(f"expects inputs of rank 2 or more, got {a} and {b}")
        if a.shape[-1] != b.shape[-2]:
            raise OpError(f"inner dims differ: {a} @ {b} multiplies {a.shape[-1]} columns by {b.shape[-2]} rows")
        lead = broadcast([a.shape[:-2], b.shape[:-2]])
        return [TensorType(dtype, lead + (a.shape[-2], b.shape[-1]))]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.matmul)

    @staticmethod
    def onnx(ctx):
        ctx.node("MatMul", ctx.inputs, ctx.outputs)

    @staticmethod
    def macs(p, ins, outs):
        k = ins[0].shape[-1]
        return outs[0].per_item_numel() * (k if isinstance(k, int) else 1)

