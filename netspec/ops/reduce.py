"""Reductions over chosen dims: Mean, Sum, Max, Min (with keepdim, as torch names it)."""

from __future__ import annotations

from pydantic import field_validator

from ..errors import OpError
from ..types import TensorType, is_float
from .registry import Call, Int, Op, Params, distinct_axes, register


class _Reduce(Op):
    """Reduce [d0, d1, ...] over `dims`; ONNX `onnx_type` with `axes` (an input since opset 18,
    which the emitter legalizes), torch `torch_name`."""

    positional = ("dims",)
    torch_name = ""
    onnx_type = ""

    class Params(Params):
        dims: list[Int]
        keepdim: bool = False

        @field_validator("dims", mode="before")
        @classmethod
        def _one_or_more(cls, v):
            if isinstance(v, int) and not isinstance(v, bool):
                return [v]  # Mean(1) reads as Mean([1])
            return v

        @field_validator("dims")
        @classmethod
        def _nonempty(cls, v):
            if not v:
                raise ValueError("dims is empty: name the dims to reduce, e.g. dims=[2, 3]")
            return v

    @staticmethod
    def _axes(p, x: TensorType) -> list[int]:
        return sorted(distinct_axes(p.dims, x, "dims"))

    @classmethod
    def shape(cls, p, ins):
        (x,) = ins
        if not is_float(x):
            raise OpError(f"expects a float input, got {x.full()}", hint="Cast it to float32 first")
        axes = cls._axes(p, x)
        if p.keepdim:
            return [x.with_shape(1 if i in axes else d for i, d in enumerate(x.shape))]
        return [x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)]

    @classmethod
    def torch(cls, p, ins):
        import torch
        return Call(getattr(torch, cls.torch_name), {"dim": tuple(cls._axes(p, ins[0])), "keepdim": p.keepdim})

    @classmethod
    def onnx(cls, ctx):
        ctx.node(cls.onnx_type, ctx.inputs, ctx.outputs, axes=cls._axes(ctx.params, ctx.in_types[0]),
                 keepdims=int(ctx.params.keepdim))

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()


@register
class Mean(_Reduce):
    doc = "The mean over `dims`: Mean([2, 3]) pools [N, C, H, W] to [N, C]; keepdim=true keeps them as size 1."
    torch_name = "mean"
    onnx_type = "ReduceMean"


@register
class Sum(_Reduce):
    doc = "The sum over `dims`; keepdim=true keeps them as size 1."
    torch_name = "sum"
    onnx_type = "ReduceSum"


@register
class Max(_Reduce):
    doc = "The largest value over `dims` (values only, no indices); keepdim=true keeps them as size 1."
    torch_name = "amax"
    onnx_type = "ReduceMax"


@register
class Min(_Reduce):
    doc = "The smallest value over `dims` (values only, no indices); keepdim=true keeps them as size 1."
    torch_name = "amin"
    onnx_type = "ReduceMin"
