"""Vision-transformer pieces: a learnt class token, a learnt position embedding, and Select."""

from __future__ import annotations

import functools


from ..errors import OpError
from ..types import is_float, norm_axis
from .registry import Call, Int, Op, Params, PosInt, WeightSpec, check_rank, register, static_dim


def _sequence(x) -> int:
    """Check a float [N, L, E] input and return E."""
    check_rank(x, 3, "[N, L, E] input")
    if not is_float(x):
        raise OpError(f"expects a float input, got {x.full()}")
    return static_dim(x, 2, "embedding size")


@functools.cache
def _token_module():
    import torch
    from torch import nn

    class ClassToken(nn.Module):
        """Prepend learnt tokens to every sequence of the batch."""

        def __init__(self, tokens: int, dim: int):
            super().__init__()
            # Zeros, as torchvision's ViT starts its class token.
            self.token = nn.Parameter(torch.zeros(1, tokens, dim))

        def forward(self, x):
            return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)

    return ClassToken


@functools.cache
def _position_module():
    import torch
    from torch import nn

    class PositionEmbedding(nn.Module):
        """Add a learnt vector per position."""

        def __init__(self, length: int, dim: int):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(1, length, dim).normal_(std=0.02))

        def forward(self, x):
            return x + self.weight

    return PositionEmbedding


@register
class ClassToken(Op):
    doc = "Prepend `tokens` learnt vectors to each sequence: [N, L, E] -> [N, L + tokens, E] (ViT's [class])."
    positional = ("tokens",)

    class Params(Params):
        tokens: PosInt = 1

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        _sequence(x)
        length = static_dim(x, 1, "sequence length")
        return [x.with_shape((x.shape[0], length + p.tokens, x.shape[2]))]

    @staticmethod
    def weights(p, ins):
        return {"token": WeightSpec((1, p.tokens, ins[0].shape[2]), ("zeros",))}

    @staticmethod
    def torch(p, ins):
        return _token_module()(p.tokens, ins[0].shape[2])

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p, x = ctx.params, ctx.inputs[0]
        token = ctx.weight("token")
        if ctx.in_types[0].dtype != "float32":
            (token,) = ctx.node("CastLike", [token, x])
        # The batch size is only known at run time: expand the token to [N, tokens, E].
        (batch,) = ctx.node("Shape", [x], start=0, end=1)
        rest = ctx.const(np.array([p.tokens, ctx.in_types[0].shape[2]], dtype=np.int64), "token_shape")
        (shape,) = ctx.node("Concat", [batch, rest], axis=0)
        (tokens,) = ctx.node("Expand", [token, shape])
        ctx.node("Concat", [tokens, x], ctx.outputs, axis=1)


@register
class PositionEmbedding(Op):
    doc = "Add a learnt [1, L, E] embedding to [N, L, E], one vector per position; L and E are inferred."

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        _sequence(x)
        static_dim(x, 1, "sequence length")
        return [x]

    @staticmethod
    def weights(p, ins):
        _, length, dim = ins[0].shape
        return {"weight": WeightSpec((1, length, dim), ("normal", 0.02))}

    @staticmethod
    def torch(p, ins):
        return _position_module()(ins[0].shape[1], ins[0].shape[2])

    @staticmethod
    def onnx(ctx):
        x, w = ctx.inputs[0], ctx.weight("weight")
        if ctx.in_types[0].dtype != "float32":
            (w,) = ctx.node("CastLike", [w, x])
        ctx.node("Add", [x, w], ctx.outputs)

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()


@register
class Select(Op):
    doc = ("Take the slice at `index` along `dim`, dropping that dim: Select(1, 0) reads ViT's class token, "
           "Select(1, -1) an RNN's last step (on a symbolic dim, only 0 and -1).")
    positional = ("dim", "index")

    class Params(Params):
        dim: Int
        index: Int

    @staticmethod
    def _axis(p, x) -> int:
        axis = norm_axis(p.dim, x.rank)
        if axis is None:
            raise OpError(f"dim={p.dim} is out of range for the {x.rank}-d input {x}", param="dim")
        n = x.shape[axis]
        if isinstance(n, str):
            # Only the first and the last exist whatever the size turns out to be.
            if p.index not in (0, -1):
                raise OpError(f"index {p.index} may not exist in dim {axis} of {x}, whose size {n} is only known "
                              "at run time", param="index", hint="on a symbolic dim, select 0 (first) or -1 (last)")
            return axis
        if not -n <= p.index < n:
            raise OpError(f"index {p.index} is out of range for dim {axis} of size {n} in {x}", param="index")
        return axis

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        axis = Select._axis(p, x)
        return [x.with_shape(x.shape[:axis] + x.shape[axis + 1:])]

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.select, {"dim": Select._axis(p, ins[0]), "index": p.index})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        axis = Select._axis(ctx.params, ctx.in_types[0])
        # A 0-d index makes Gather drop the axis, as torch.select does.
        index = ctx.const(np.array(ctx.params.index, dtype=np.int64), "index")
        ctx.node("Gather", [ctx.inputs[0], index], ctx.outputs, axis=axis)
