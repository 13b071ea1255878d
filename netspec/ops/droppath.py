"""DropPath: stochastic depth (Huang et al. 2016), which drops a residual branch per sample."""

from __future__ import annotations

import functools

from pydantic import Field
from typing_extensions import Annotated

from ..errors import OpError
from .registry import Float, Op, Params, register


@functools.cache
def _drop_path_module():
    import torch
    from torch import nn

    class DropPath(nn.Module):
        """torchvision's StochasticDepth(p, "row"): zero whole samples, rescale the survivors."""

        def __init__(self, p: float):
            super().__init__()
            self.p = p

        def forward(self, x):
            if not self.training or self.p == 0.0:
                return x
            survival = 1.0 - self.p
            noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
            noise.bernoulli_(survival)
            if survival > 0.0:
                noise.div_(survival)
            return x * noise

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return DropPath


@register
class DropPath(Op):
    doc = ("Stochastic depth: while training, zero each sample of the batch with probability p and scale "
           "the rest by 1/(1-p), as torchvision's StochasticDepth(p, \"row\"); the identity in eval. Put it "
           "on a residual branch, before the Add.")
    positional = ("p",)

    class Params(Params):
        p: Annotated[Float, Field(ge=0, le=1)] = 0.0

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if x.rank == 0:
            raise OpError(f"drops whole samples of a batch, but {x.full()} is a scalar")
        return [x]

    @staticmethod
    def torch(p, ins):
        return _drop_path_module()(p.p)

    @staticmethod
    def onnx(ctx):
        # The ONNX model is for inference, where every path is kept.
        ctx.node("Identity", ctx.inputs, ctx.outputs)
