"""Param: a learnable tensor of a declared shape, with no tensor inputs (a class token, a position
embedding, ConvNeXt's layer scale, a learnt temperature)."""

from __future__ import annotations

import functools
import math
from typing import Literal

from pydantic import Field, field_validator, model_validator
from typing_extensions import Annotated

from ..types import FLOAT_DTYPES, TensorType
from .registry import Attr, Float, Int, Op, Params, WeightSpec, register

MAX_PARAM_ELEMENTS = 2**31  # one learnable tensor past this is a typo, not a model


@functools.cache
def _holder_module():
    from torch import nn

    class Param(nn.Module):
        """Holds one learnable tensor as `weight`; the network reads it as an attribute."""

        def __init__(self, shape, dtype, init, std, value):
            super().__init__()
            import torch
            w = torch.empty(tuple(shape), dtype=getattr(torch, dtype))
            with torch.no_grad():
                if init == "zeros":
                    w.zero_()
                elif init == "ones":
                    w.fill_(1.0)
                elif init == "constant":
                    w.fill_(value)
                elif init == "normal":
                    w.normal_(0.0, std)
                elif init == "uniform":
                    w.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std)
                else:
                    nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
            self.weight = nn.Parameter(w)

        def forward(self):
            return self.weight

    return Param


@register
class Param(Op):
    doc = ("A learnable tensor of exactly `shape` (no tensor inputs), e.g. Param(shape=[1, 1, 768]) for "
           "a class token; init is zeros, ones, normal, uniform or trunc_normal (cut at 2 std), the random "
           "ones with standard deviation `std`, or constant (every element `value`).")
    positional = ("shape",)
    arity = (0, 0)

    class Params(Params):
        shape: list[Int]
        dtype: Literal[FLOAT_DTYPES] = "float32"  # type: ignore[valid-type]
        init: Literal["zeros", "ones", "normal", "uniform", "trunc_normal", "constant"] = "zeros"
        std: Annotated[Float, Field(gt=0)] = 0.02
        value: Float = 0.0  # every element's start, with init="constant" (ConvNeXt's layer scale: 1e-6)

        @model_validator(mode="after")
        def _value_is_for_constant(self):
            if self.value != 0.0 and self.init != "constant":
                raise ValueError(f"value={self.value} sets a constant start, but init is {self.init!r}: "
                                 "add init=\"constant\"")
            return self

        @field_validator("shape")
        @classmethod
        def _valid(cls, v):
            if any(d < 1 for d in v):
                raise ValueError(f"dims must be positive, got {v}")
            if math.prod(v) > MAX_PARAM_ELEMENTS:
                raise ValueError(f"{math.prod(v):,} elements is past the limit of {MAX_PARAM_ELEMENTS:,}")
            return v

    @staticmethod
    def shape(p, ins):
        return [TensorType(p.dtype, tuple(p.shape))]

    @staticmethod
    def weights(p, ins):
        init = {"zeros": ("zeros",), "ones": ("ones",), "normal": ("normal", p.std),
                "uniform": ("uniform", math.sqrt(3) * p.std), "trunc_normal": ("trunc_normal", p.std),
                "constant": ("constant", p.value)}[p.init]
        # Stored as float32 whatever `dtype` is, as every checkpoint array is (`state_dict_arrays`).
        return {"weight": WeightSpec(tuple(p.shape), init)}

    @staticmethod
    def torch(p, ins):
        return Attr(_holder_module()(p.shape, p.dtype, p.init, p.std, p.value), "weight")

    @staticmethod
    def onnx(ctx):
        w = ctx.weight("weight")
        # Weights travel as float32 arrays; a Param of another float type is cast once.
        if ctx.params.dtype != "float32":
            from ..lower_onnx import ONNX_DTYPES
            ctx.node("Cast", [w], ctx.outputs, to=ONNX_DTYPES[ctx.params.dtype])
        else:
            ctx.node("Identity", [w], ctx.outputs)
