"""Normalization layers; ONNX lowerings are inference mode (running statistics)."""

from __future__ import annotations

import math

from pydantic import Field
from typing_extensions import Annotated

from ..errors import OpError
from .registry import Op, Params, PosInt, WeightSpec, check_rank, register, static_dim
from .weight_forms import reshaped

Eps = Annotated[float, Field(gt=0)]
Momentum = Annotated[float, Field(ge=0, le=1)]


class _BatchNorm(Op):
    ranks: tuple[int, ...] = ()

    class Params(Params):
        eps: Eps = 1e-5
        momentum: Momentum = 0.1
        affine: bool = True

    @classmethod
    def shape(cls, p, ins):
        (x,) = ins
        check_rank(x, cls.ranks)
        static_dim(x, 1, "channel count")
        return [x]

    @staticmethod
    def weights(p, ins):
        c = ins[0].shape[1]
        w = {}
        if p.affine:
            w["weight"] = WeightSpec((c,), ("ones",))
            w["bias"] = WeightSpec((c,), ("zeros",))
        w["running_mean"] = WeightSpec((c,), ("zeros",), trainable=False)
        w["running_var"] = WeightSpec((c,), ("ones",), trainable=False)
        w["num_batches_tracked"] = WeightSpec((), ("zeros",), trainable=False, dtype="int64")
        return w

    @classmethod
    def torch(cls, p, ins):
        from torch import nn
        mod = nn.BatchNorm2d if 4 in cls.ranks else nn.BatchNorm1d
        return mod(ins[0].shape[1], eps=p.eps, momentum=p.momentum, affine=p.affine)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p = ctx.params
        if p.affine:
            scale, bias = ctx.weight("weight"), ctx.weight("bias")
        else:
            c = ctx.in_types[0].shape[1]
            scale = ctx.const(np.ones(c, dtype=np.float32), "scale")
            bias = ctx.const(np.zeros(c, dtype=np.float32), "bias")
        ctx.node("BatchNormalization",
                 [ctx.inputs[0], scale, bias, ctx.weight("running_mean"), ctx.weight("running_var")],
                 ctx.outputs, epsilon=p.eps, momentum=1 - p.momentum)

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()


@register
class BatchNorm1d(_BatchNorm):
    doc = "Batch normalization over the channels of [N, C] or [N, C, L]."
    ranks = (2, 3)


@register
class BatchNorm2d(_BatchNorm):
    doc = "Batch normalization over the channels of [N, C, H, W]."
    ranks = (4,)


@register
class LayerNorm(Op):
    doc = "Layer normalization over the last `dims` dims, whose sizes are inferred."

    class Params(Params):
        dims: PosInt = 1
        eps: Eps = 1e-5
        elementwise_affine: bool = True
        bias: bool = True

    @staticmethod
    def _normalized(p, x) -> tuple[int, ...]:
        return tuple(x.shape[x.rank - p.dims:])

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if p.dims > x.rank:
            raise OpError(f"dims={p.dims} is more than the input's rank {x.rank} ({x})", param="dims")
        for axis in range(x.rank - p.dims, x.rank):
            static_dim(x, axis, "normalized size")
        return [x]

    @staticmethod
    def weights(p, ins):
        shape = LayerNorm._normalized(p, ins[0])
        w = {}
        if p.elementwise_affine:
            w["weight"] = WeightSpec(shape, ("ones",))
            if p.bias:
                w["bias"] = WeightSpec(shape, ("zeros",))
        return w

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.LayerNorm(LayerNorm._normalized(p, ins[0]), eps=p.eps,
                            elementwise_affine=p.elementwise_affine, bias=p.bias)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p = ctx.params
        inputs = [ctx.inputs[0]]
        if p.elementwise_affine:
            inputs.append(ctx.weight("weight"))
            if p.bias:
                inputs.append(ctx.weight("bias"))
        else:
            inputs.append(ctx.const(np.ones(LayerNorm._normalized(p, ctx.in_types[0]), np.float32), "scale"))
        ctx.node("LayerNormalization", inputs, ctx.outputs, axis=-p.dims, epsilon=p.eps)

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()


@register
class GroupNorm(Op):
    doc = "Group normalization of [N, C, *] over channel groups; the channel count is inferred."
    positional = ("groups",)

    class Params(Params):
        groups: PosInt
        eps: Eps = 1e-5
        affine: bool = True

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if x.rank < 2:
            raise OpError(f"expects an input of rank 2 or more, [N, C, *], got {x.rank}-d {x}")
        c = static_dim(x, 1, "channel count")
        if c % p.groups:
            raise OpError(f"channels {c} are not divisible by groups={p.groups}", param="groups")
        per_group = c // p.groups * math.prod(d for d in x.shape[2:] if isinstance(d, int))
        if per_group == 1 and all(isinstance(d, int) for d in x.shape[2:]):
            raise OpError(f"each of the {p.groups} groups of {x} holds one value, which normalizes to 0",
                          param="groups", hint="use fewer groups")
        return [x]

    @staticmethod
    def weights(p, ins):
        c = ins[0].shape[1]
        if not p.affine:
            return {}
        return {"weight": WeightSpec((c,), ("ones",)), "bias": WeightSpec((c,), ("zeros",))}

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.GroupNorm(p.groups, ins[0].shape[1], eps=p.eps, affine=p.affine)

    @staticmethod
    def onnx(ctx):
        # Opset 17 has no GroupNormalization (and opset 18's scales per group, not per channel):
        # normalize [N, G, C/G * spatial] with InstanceNormalization, then apply the channel affine.
        import numpy as np
        p = ctx.params
        x, t = ctx.inputs[0], ctx.in_types[0]
        g = p.groups
        (shape,) = ctx.node("Shape", [x])
        (grouped,) = ctx.node("Reshape", [x, ctx.const(np.array([0, g, -1], np.int64), "grouped")])
        ones = ctx.const(np.ones(g, np.float32), "ones")
        zeros = ctx.const(np.zeros(g, np.float32), "zeros")
        (normed,) = ctx.node("InstanceNormalization", [grouped, ones, zeros], epsilon=p.eps)
        if not p.affine:
            ctx.node("Reshape", [normed, shape], ctx.outputs)
            return
        (y,) = ctx.node("Reshape", [normed, shape])
        per_channel = (t.shape[1],) + (1,) * (t.rank - 2)
        w, b = reshaped(ctx, "weight", per_channel), reshaped(ctx, "bias", per_channel)
        (yw,) = ctx.node("Mul", [y, w])
        ctx.node("Add", [yw, b], ctx.outputs)

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()
