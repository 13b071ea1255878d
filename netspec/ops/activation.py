"""Elementwise activations."""

from __future__ import annotations

from .registry import Op, register


@register
class ReLU(Op):
    doc = "max(x, 0), elementwise."

    @staticmethod
    def shape(p, ins):
        return [ins[0]]

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.ReLU()

    @staticmethod
    def onnx(ctx):
        ctx.node("Relu", ctx.inputs, ctx.outputs)
