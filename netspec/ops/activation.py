"""Elementwise activations, and the softmaxes."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from typing_extensions import Annotated

from ..errors import OpError
from ..types import TensorType, is_float, norm_axis
from .registry import Call, Float, Int, Op, Params, WeightSpec, register


def scalar(ctx, value: float, like: str, like_type: TensorType) -> str:
    """A scalar constant in `like`'s float dtype (CastLike covers float16 and bfloat16)."""
    import numpy as np
    c = ctx.const(np.array(value, dtype=np.float32), "k")
    if like_type.dtype == "float32":
        return c
    return ctx.node("CastLike", [c, like])[0]


class Elementwise(Op):
    """A float -> float op applied to each element: the output type is the input's."""

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if not is_float(x):
            raise OpError(f"expects a float input, got {x.full()}")
        return [x]


@register
class ReLU(Elementwise):
    doc = "max(x, 0), elementwise."

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.ReLU()

    @staticmethod
    def onnx(ctx):
        ctx.node("Relu", ctx.inputs, ctx.outputs)


@register
class LeakyReLU(Elementwise):
    doc = "x if x > 0 else negative_slope * x."
    positional = ("negative_slope",)

    class Params(Params):
        negative_slope: Float = 0.01

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.leaky_relu, {"negative_slope": p.negative_slope})

    @staticmethod
    def onnx(ctx):
        ctx.node("LeakyRelu", ctx.inputs, ctx.outputs, alpha=ctx.params.negative_slope)


@register
class GELU(Elementwise):
    doc = "x * Phi(x), exact (erf) or with torch's tanh approximation."
    positional = ("approximate",)

    class Params(Params):
        approximate: Literal["none", "tanh"] = "none"

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.gelu, {"approximate": p.approximate})

    @staticmethod
    def onnx(ctx):
        # Opset 17 has no Gelu (it arrives in 20), so spell out the formula.
        (x,), t = ctx.inputs, ctx.in_types[0]
        if ctx.params.approximate == "none":
            (s,) = ctx.node("Div", [x, scalar(ctx, math.sqrt(2.0), x, t)])
            (phi,) = ctx.node("Erf", [s])
        else:
            (x3,) = ctx.node("Pow", [x, scalar(ctx, 3.0, x, t)])
            (inner,) = ctx.node("Mul", [x3, scalar(ctx, 0.044715, x, t)])
            (inner,) = ctx.node("Add", [x, inner])
            (inner,) = ctx.node("Mul", [inner, scalar(ctx, math.sqrt(2.0 / math.pi), x, t)])
            (phi,) = ctx.node("Tanh", [inner])
        (phi,) = ctx.node("Add", [phi, scalar(ctx, 1.0, x, t)])
        (half,) = ctx.node("Mul", [x, scalar(ctx, 0.5, x, t)])
        ctx.node("Mul", [half, phi], ctx.outputs)


@register
class SiLU(Elementwise):
    doc = "x * sigmoid(x) (a.k.a. swish)."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.silu)

    @staticmethod
    def onnx(ctx):
        (s,) = ctx.node("Sigmoid", ctx.inputs)
        ctx.node("Mul", [ctx.inputs[0], s], ctx.outputs)


@register
class Sigmoid(Elementwise):
    doc = "1 / (1 + exp(-x))."

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.sigmoid)

    @staticmethod
    def onnx(ctx):
        ctx.node("Sigmoid", ctx.inputs, ctx.outputs)


@register
class Tanh(Elementwise):
    doc = "tanh(x)."

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.tanh)

    @staticmethod
    def onnx(ctx):
        ctx.node("Tanh", ctx.inputs, ctx.outputs)


class _AlongDim(Op):
    """A float op normalising along one dim."""

    positional = ("dim",)

    class Params(Params):
        dim: Int = -1

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if not is_float(x):
            raise OpError(f"expects a float input, got {x.full()}")
        if norm_axis(p.dim, x.rank) is None:
            raise OpError(f"dim={p.dim} is out of range for the {x.rank}-d input {x}", param="dim")
        return [x]


@register
class Softmax(_AlongDim):
    doc = "exp(x) / sum(exp(x)) along `dim`."

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.softmax, {"dim": p.dim})

    @staticmethod
    def onnx(ctx):
        # Since opset 13 Softmax normalises along one axis, as torch does.
        ctx.node("Softmax", ctx.inputs, ctx.outputs, axis=ctx.params.dim)


@register
class LogSoftmax(_AlongDim):
    doc = "log(softmax(x)) along `dim`, computed stably."

    @staticmethod
    def torch(p, ins):
        import torch
        return Call(torch.log_softmax, {"dim": p.dim})

    @staticmethod
    def onnx(ctx):
        ctx.node("LogSoftmax", ctx.inputs, ctx.outputs, axis=ctx.params.dim)


@register
class ReLU6(Elementwise):
    doc = "min(max(x, 0), 6)."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.relu6)

    @staticmethod
    def onnx(ctx):
        x, t = ctx.inputs[0], ctx.in_types[0]
        ctx.node("Clip", [x, scalar(ctx, 0.0, x, t), scalar(ctx, 6.0, x, t)], ctx.outputs)


@register
class Hardswish(Elementwise):
    doc = "x * relu6(x + 3) / 6."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.hardswish)

    @staticmethod
    def onnx(ctx):
        ctx.node("HardSwish", ctx.inputs, ctx.outputs)


@register
class Hardsigmoid(Elementwise):
    doc = "relu6(x + 3) / 6."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.hardsigmoid)

    @staticmethod
    def onnx(ctx):
        # ONNX's default alpha is 0.2; torch's slope is 1/6.
        ctx.node("HardSigmoid", ctx.inputs, ctx.outputs, alpha=1.0 / 6.0, beta=0.5)


@register
class ELU(Elementwise):
    doc = "x if x > 0 else alpha * (exp(x) - 1)."
    positional = ("alpha",)

    class Params(Params):
        alpha: Float = 1.0

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.elu, {"alpha": p.alpha})

    @staticmethod
    def onnx(ctx):
        ctx.node("Elu", ctx.inputs, ctx.outputs, alpha=ctx.params.alpha)


@register
class Softplus(Elementwise):
    doc = "log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold."
    positional = ("beta",)

    class Params(Params):
        beta: Annotated[Float, Field(gt=0)] = 1.0
        threshold: Annotated[Float, Field(gt=0)] = 20.0

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.softplus, {"beta": p.beta, "threshold": p.threshold})

    @staticmethod
    def onnx(ctx):
        p, (x,), t = ctx.params, ctx.inputs, ctx.in_types[0]
        (bx,) = ctx.node("Mul", [x, scalar(ctx, p.beta, x, t)])
        (sp,) = ctx.node("Softplus", [bx])
        (sp,) = ctx.node("Div", [sp, scalar(ctx, p.beta, x, t)])
        (linear,) = ctx.node("Greater", [bx, scalar(ctx, p.threshold, x, t)])
        ctx.node("Where", [linear, x, sp], ctx.outputs)


@register
class PReLU(Elementwise):
    doc = "x if x > 0 else a * x, with a learnt slope a (one, or one per channel of dim 1)."

    class Params(Params):
        per_channel: bool = False
        init: Float = 0.25

    @staticmethod
    def shape(p, ins):
        (x,) = Elementwise.shape(p, ins)
        if p.per_channel:
            if x.rank < 2:
                raise OpError(f"per_channel needs a channel dim 1, got the {x.rank}-d input {x}",
                              param="per_channel")
            if isinstance(x.shape[1], str):
                raise OpError(f"per_channel needs a fixed channel count, but dim 1 of {x} is symbolic",
                              param="per_channel")
        return [x]

    @staticmethod
    def weights(p, ins):
        n = ins[0].shape[1] if p.per_channel else 1
        return {"weight": WeightSpec((n,), ("constant", p.init))}

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.PReLU(ins[0].shape[1] if p.per_channel else 1, init=p.init)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        slope = ctx.weight("weight")
        x = ctx.in_types[0]
        if ctx.params.per_channel:
            # ONNX broadcasts the slope from the right: give it shape [C, 1, ..., 1].
            shape = np.array([x.shape[1]] + [1] * (x.rank - 2), dtype=np.int64)
            (slope,) = ctx.node("Reshape", [slope, ctx.const(shape, "shape")])
        ctx.node("PRelu", [ctx.inputs[0], slope], ctx.outputs)
