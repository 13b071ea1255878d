"""Ops that move elements around without computing: flatten, reshape, permute, squeeze; and the
pass-throughs (Identity, Dropout in eval mode)."""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from typing_extensions import Annotated

from ..errors import OpError
from ..types import Dim, TensorType, norm_axis
from .registry import Call, Float, Int, Op, Params, register


def _axis(dim: int, rank: int, param: str, x: TensorType) -> int:
    a = norm_axis(dim, rank)
    if a is None:
        raise OpError(f"{param}={dim} is out of range for the {x.rank}-d input {x}", param=param)
    return a


def onnx_reshape(ctx, x: str, in_type: TensorType, out_shape: tuple[Dim, ...], source: dict[int, int],
                 output: list[str] | None = None) -> str:
    """Emit a Reshape of `x` to `out_shape`; `source` maps each symbolic output dim to its input dim."""
    import numpy as np
    symbolic = [j for j, d in enumerate(out_shape) if isinstance(d, str)]
    if all(source[j] == j for j in symbolic):
        # ONNX Reshape's 0 copies the input dim at the same index: the common case of the batch.
        target = [0 if isinstance(d, str) else d for d in out_shape]
    elif len(symbolic) == 1:
        target = [-1 if isinstance(d, str) else d for d in out_shape]
    else:
        # Symbolic dims that move: read them from the input's shape at run time.
        (dims,) = ctx.node("Shape", [x])
        parts = []
        for j, d in enumerate(out_shape):
            if isinstance(d, str):
                (part,) = ctx.node("Gather", [dims, ctx.const(np.array([source[j]], dtype=np.int64), "i")],
                                   axis=0)
            else:
                part = ctx.const(np.array([d], dtype=np.int64), "dim")
            parts.append(part)
        (shape,) = ctx.node("Concat", parts, axis=0)
        return ctx.node("Reshape", [x, shape], output)[0]
    return ctx.node("Reshape", [x, ctx.const(np.array(target, dtype=np.int64), "shape")], output)[0]


@register
class Flatten(Op):
    doc = "Merge dims start_dim..end_dim into one: [N, C, H, W] -> [N, C*H*W] by default."
    positional = ("start_dim",)

    class Params(Params):
        start_dim: Int = 1
        end_dim: Int = -1

    @staticmethod
    def _span(p, x: TensorType) -> tuple[int, int]:
        if x.rank == 0:
            raise OpError("cannot flatten a scalar")
        s = _axis(p.start_dim, x.rank, "start_dim", x)
        e = _axis(p.end_dim, x.rank, "end_dim", x)
        if s > e:
            raise OpError(f"start_dim={p.start_dim} comes after end_dim={p.end_dim} in the {x.rank}-d input {x}",
                          param="start_dim")
        return s, e

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        s, e = Flatten._span(p, x)
        merged = x.shape[s:e + 1]
        sym = [d for d in merged if isinstance(d, str)]
        if sym and len(merged) > 1:
            raise OpError(f"cannot flatten the symbolic dim {sym[0]} together with others: dims {s}..{e} "
                          f"of {x} would have an unknown size", param="start_dim",
                          hint="flatten only fixed dims, e.g. start_dim=1 to keep the batch")
        size = merged[0] if sym else math.prod(merged)
        return [x.with_shape(x.shape[:s] + (size,) + x.shape[e + 1:])]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.flatten, {"start_dim": p.start_dim, "end_dim": p.end_dim})

    @staticmethod
    def onnx(ctx):
        x = ctx.in_types[0]
        s, e = Flatten._span(ctx.params, x)
        out = ctx.out_types[0].shape
        # An output dim before the merge reads the same input dim; after it, one shifted by the merge.
        source = {j: (j if j <= s else j + e - s) for j in range(len(out))}
        onnx_reshape(ctx, ctx.inputs[0], x, out, source, ctx.outputs)


def reshape_with_runtime_dims(x, shape):
    """torch.reshape to `shape`, whose entries are sizes or ("dim", i): the input's dim i at run time."""
    return x.reshape([x.shape[d[1]] if isinstance(d, tuple) else d for d in shape])


@register
class Reshape(Op):
    doc = ("Reshape every dim but the batch (dim 0, which stays as it is): `shape` lists the new dims after "
           "it, one of which may be -1. A shape that names a symbolic dim is the whole shape instead: "
           "Reshape([N, 4, -1]); each symbolic dim of the input must be named once, and keeps its size.")
    positional = ("shape",)

    class Params(Params):
        shape: list[Int | str]

        @field_validator("shape")
        @classmethod
        def _valid(cls, v):
            sizes = [d for d in v if isinstance(d, int)]
            if any(d == 0 or d < -1 for d in sizes):
                raise ValueError(f"dims must be positive or -1, got {v}")
            if sizes.count(-1) > 1:
                raise ValueError(f"at most one dim may be -1, got {v}")
            names = [d for d in v if isinstance(d, str)]
            if any(not d.isidentifier() for d in names):
                raise ValueError(f"a symbolic dim is a name such as N, got {v}")
            if len(set(names)) != len(names):
                raise ValueError(f"a symbolic dim is named twice in {v}")
            return v

    @staticmethod
    def _named(p) -> bool:
        return any(isinstance(d, str) for d in p.shape)

    @staticmethod
    def _show(shape) -> str:
        return "[" + ",".join(map(str, shape)) + "]"

    @staticmethod
    def _resolve(p, x: TensorType, have: int, want) -> list:
        """`want` (sizes, -1, names) with -1 resolved, given the input's `have` fixed elements per item."""
        known = math.prod(d for d in want if isinstance(d, int) and d != -1)
        target = Reshape._show(want)
        if -1 in want:
            if have % known:
                raise OpError(f"cannot reshape {x} to {target}: {have} elements per item are not a multiple "
                              f"of {known}", param="shape")
            return [have // known if d == -1 else d for d in want]
        if have != known:
            raise OpError(f"cannot reshape {x} to {target}: {have} elements per item, the new shape holds {known}",
                          param="shape", hint=None if Reshape._named(p) else "`shape` excludes the batch dim 0")
        return list(want)

    @staticmethod
    def _dims(p, x: TensorType) -> list:
        """The whole output shape."""
        if x.rank == 0:
            raise OpError("cannot reshape a scalar: it has no batch dim to keep")
        if Reshape._named(p):
            sym = [d for d in x.shape if isinstance(d, str)]
            names = [d for d in p.shape if isinstance(d, str)]
            for d in names:
                if d not in sym:
                    raise OpError(f"{d} in shape={Reshape._show(p.shape)} is not a symbolic dim of {x}", param="shape",
                                  hint=f"name the input's symbolic dims: {', '.join(sym)}" if sym else
                                  "the input has no symbolic dim; list fixed sizes only")
            missing = [d for d in sym if d not in names]
            if missing:
                raise OpError(f"shape={Reshape._show(p.shape)} does not name the symbolic dim {missing[0]} of {x}, "
                              "so the sizes cannot be checked", param="shape",
                              hint="each symbolic dim keeps its size: name it once in the shape")
            if len(set(sym)) != len(sym):
                raise OpError(f"cannot reshape {x}: a symbolic dim appears twice in it", param="shape")
            have = math.prod(d for d in x.shape if isinstance(d, int))
            return Reshape._resolve(p, x, have, p.shape)
        rest = x.shape[1:]
        sym = [d for d in rest if isinstance(d, str)]
        if sym:
            raise OpError(f"cannot reshape {x}: dim {x.shape.index(sym[0], 1)} is symbolic ({sym[0]}); "
                          "only the batch dim 0 may be", param="shape",
                          hint=f"name the symbolic dims to keep them, e.g. shape=[{x.shape[0]}, {sym[0]}, -1]")
        return [x.shape[0], *Reshape._resolve(p, x, math.prod(rest), p.shape)]

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        return [x.with_shape(Reshape._dims(p, x))]

    @staticmethod
    def torch(p, ins):
        import torch
        x = ins[0]
        dims = Reshape._dims(p, x)
        sym = [j for j, d in enumerate(dims) if isinstance(d, str)]
        if len(sym) <= 1:
            # Every other size is known, so the one symbolic dim is what is left: -1.
            return Call(torch.reshape, {"shape": tuple(-1 if isinstance(d, str) else d for d in dims)})
        return Call(reshape_with_runtime_dims,
                    {"shape": tuple(("dim", x.shape.index(d)) if isinstance(d, str) else d for d in dims)})

    @staticmethod
    def onnx(ctx):
        x = ctx.in_types[0]
        out = ctx.out_types[0].shape
        source = {j: x.shape.index(d) for j, d in enumerate(out) if isinstance(d, str)}
        onnx_reshape(ctx, ctx.inputs[0], x, out, source, ctx.outputs)


@register
class Permute(Op):
    doc = "Reorder all dims, the batch included: dims=[0, 2, 3, 1] takes NCHW to NHWC."
    positional = ("dims",)

    class Params(Params):
        dims: list[Int]

    @staticmethod
    def _perm(p, x: TensorType) -> list[int]:
        perm = [norm_axis(d, x.rank) for d in p.dims]
        if len(perm) != x.rank or None in perm or sorted(perm) != list(range(x.rank)):
            raise OpError(f"dims={list(p.dims)} is not a permutation of the {x.rank} dims of {x}", param="dims")
        return perm

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        return [x.with_shape(tuple(x.shape[d] for d in Permute._perm(p, x)))]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.permute, {"dims": tuple(Permute._perm(p, ins[0]))})

    @staticmethod
    def onnx(ctx):
        ctx.node("Transpose", ctx.inputs, ctx.outputs, perm=Permute._perm(ctx.params, ctx.in_types[0]))


@register
class Transpose(Op):
    doc = "Swap two dims."
    positional = ("dim0", "dim1")

    class Params(Params):
        dim0: Int
        dim1: Int

    @staticmethod
    def _perm(p, x: TensorType) -> list[int]:
        a = _axis(p.dim0, x.rank, "dim0", x)
        b = _axis(p.dim1, x.rank, "dim1", x)
        perm = list(range(x.rank))
        perm[a], perm[b] = b, a
        return perm

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        return [x.with_shape(tuple(x.shape[d] for d in Transpose._perm(p, x)))]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.transpose, {"dim0": p.dim0, "dim1": p.dim1})

    @staticmethod
    def onnx(ctx):
        ctx.node("Transpose", ctx.inputs, ctx.outputs, perm=Transpose._perm(ctx.params, ctx.in_types[0]))


@register
class Unsqueeze(Op):
    doc = "Insert a dim of size 1 at `dim`."
    positional = ("dim",)

    class Params(Params):
        dim: Int

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        a = norm_axis(p.dim, x.rank + 1)
        if a is None:
            raise OpError(f"dim={p.dim} is out of range for inserting into the {x.rank}-d input {x}", param="dim")
        return [x.with_shape(x.shape[:a] + (1,) + x.shape[a:])]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.unsqueeze, {"dim": p.dim})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        axes = ctx.const(np.array([ctx.params.dim], dtype=np.int64), "axes")
        ctx.node("Unsqueeze", [ctx.inputs[0], axes], ctx.outputs)


@register
class Squeeze(Op):
    doc = "Remove the dim `dim`, which must have size 1."
    positional = ("dim",)

    class Params(Params):
        dim: Int

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        a = _axis(p.dim, x.rank, "dim", x)
        if x.shape[a] != 1:
            raise OpError(f"dim {a} of {x} has size {x.shape[a]}, not 1", param="dim")
        return [x.with_shape(x.shape[:a] + x.shape[a + 1:])]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.squeeze, {"dim": p.dim})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        axes = ctx.const(np.array([ctx.params.dim], dtype=np.int64), "axes")
        ctx.node("Squeeze", [ctx.inputs[0], axes], ctx.outputs)


@register
class Identity(Op):
    doc = "The input, unchanged."

    @staticmethod
    def shape(p, ins):
        return [ins[0]]

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.Identity()

    @staticmethod
    def onnx(ctx):
        ctx.node("Identity", ctx.inputs, ctx.outputs)


@register
class Dropout(Op):
    doc = "Zero each element with probability p while training (scaling the rest); the identity in eval."
    positional = ("p",)

    class Params(Params):
        p: Annotated[Float, Field(ge=0, lt=1)] = 0.5

    @staticmethod
    def shape(p, ins):
        return [ins[0]]

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.Dropout(p.p)  # a module, not a Call, so that the train and eval modes switch it

    @staticmethod
    def onnx(ctx):
        # The ONNX model is for inference, where dropout does nothing.
        ctx.node("Identity", ctx.inputs, ctx.outputs)
