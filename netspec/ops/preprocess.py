"""Preprocessing inside the network, so that the exported model takes raw [0, 1] pixels."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from typing_extensions import Annotated

from ..errors import OpError
from ..types import is_float
from .registry import Float, Op, Params, check_rank, register, static_dim


@lru_cache(maxsize=1)
def _normalize_module():
    import torch
    from torch import nn

    class Normalize(nn.Module):
        def __init__(self, mean, std, rank: int):
            super().__init__()
            shape = (1, -1) + (1,) * (rank - 2)
            # Constants of the op, not weights: kept out of the state dict.
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape), persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape), persistent=False)

        def forward(self, x):
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    return Normalize


@register
class Normalize(Op):
    doc = "(x - mean[c]) / std[c] over the channel dim 1, e.g. ImageNet's statistics on [0, 1] pixels."
    positional = ("mean", "std")

    class Params(Params):
        mean: Annotated[list[Float], Field(min_length=1)]
        std: Annotated[list[Annotated[Float, Field(gt=0)]], Field(min_length=1)]

        @model_validator(mode="after")
        def _same_length(self):
            if len(self.mean) != len(self.std):
                raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
            return self

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        check_rank(x, (2, 3, 4, 5))
        if not is_float(x):
            raise OpError(f"expects a float input, got {x.full()}")
        c = static_dim(x, 1, "channel count")
        if len(p.mean) not in (1, c):
            raise OpError(f"has {len(p.mean)} means and stds for {c} channels", param="mean")
        return [x]

    @staticmethod
    def torch(p, ins):
        return _normalize_module()(p.mean, p.std, ins[0].rank)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p, x = ctx.params, ctx.in_types[0]
        shape = (1, len(p.mean)) + (1,) * (x.rank - 2)
        dtype = {"float16": np.float16, "float64": np.float64}.get(x.dtype, np.float32)
        mean = ctx.const(np.array(p.mean, dtype=dtype).reshape(shape), "mean")
        std = ctx.const(np.array(p.std, dtype=dtype).reshape(shape), "std")
        (centred,) = ctx.node("Sub", [ctx.inputs[0], mean])
        ctx.node("Div", [centred, std], ctx.outputs)

    @staticmethod
    def elementwise(p, ins, outs):
        return outs[0].per_item_numel()
