"""Fully connected layers."""

from __future__ import annotations

import math

from ..errors import OpError
from .registry import Op, Params, PosInt, WeightSpec, register, static_dim
from .weight_forms import transposed


@register
class Linear(Op):
    doc = "y = x W^T + b over the last dim of a rank >= 2 input; in-features are inferred."
    positional = ("out_features",)

    class Params(Params):
        out_features: PosInt
        bias: bool = True

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if x.rank < 2:
            raise OpError(f"expects an input of rank 2 or more, got {x.rank}-d {x}",
                          hint="add a batch dim, or Flatten first")
        static_dim(x, x.rank - 1, "in-feature count")
        return [x.with_shape((*x.shape[:-1], p.out_features))]

    @staticmethod
    def weights(p, ins):
        n_in = ins[0].shape[-1]
        bound = 1 / math.sqrt(n_in)
        w = {"weight": WeightSpec((p.out_features, n_in), ("uniform", bound))}
        if p.bias:
            w["bias"] = WeightSpec((p.out_features,), ("uniform", bound))
        return w

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.Linear(ins[0].shape[-1], p.out_features, bias=p.bias)

    @staticmethod
    def onnx(ctx):
        p = ctx.params
        x = ctx.inputs[0]
        if ctx.in_types[0].rank == 2:
            inputs = [x, ctx.weight("weight")] + ([ctx.weight("bias")] if p.bias else [])
            ctx.node("Gemm", inputs, ctx.outputs, transB=1)
            return
        # Gemm is rank 2 only: MatMul takes the weight as [in, out].
        wt = transposed(ctx, "weight")
        if not p.bias:
            ctx.node("MatMul", [x, wt], ctx.outputs)
            return
        (xw,) = ctx.node("MatMul", [x, wt])
        ctx.node("Add", [xw, ctx.weight("bias")], ctx.outputs)

    @staticmethod
    def macs(p, ins, outs):
        rows = math.prod(d for d in ins[0].shape[:-1] if isinstance(d, int))
        return rows * ins[0].shape[-1] * p.out_features
