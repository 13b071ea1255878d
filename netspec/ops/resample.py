"""Spatial resampling of [N, C, H, W] images."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator
from typing_extensions import Annotated

from ..errors import OpError
from ..types import is_float
from .registry import Call, Float, IntOrPair, Op, Params, check_rank, pair, register, static_dim

PosFloat = Annotated[Float, Field(gt=0)]


@register
class Upsample(Op):
    doc = ("Resize H and W by `scale_factor` or to `size`: nearest (torch's floor rule) or bilinear. "
           "The output size is floor(input * scale).")
    positional = ("scale_factor",)

    class Params(Params):
        scale_factor: PosFloat | tuple[PosFloat, PosFloat] | None = None
        size: IntOrPair | None = None
        mode: Literal["nearest", "bilinear"] = "nearest"
        align_corners: bool | None = None  # bilinear only; torch's default is false

        @model_validator(mode="after")
        def _one_target(self):
            if (self.scale_factor is None) == (self.size is None):
                raise ValueError("give exactly one of scale_factor and size")
            if self.align_corners is not None and self.mode == "nearest":
                raise ValueError("align_corners applies to mode='bilinear' only")
            return self

    @staticmethod
    def _scales(p) -> tuple[float, float]:
        s = p.scale_factor
        return (float(s), float(s)) if isinstance(s, (int, float)) else (float(s[0]), float(s[1]))

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        check_rank(x, 4, "[N, C, H, W] input")
        if not is_float(x):
            raise OpError(f"expects a float input, got {x.full()}")
        if p.size is not None:
            h, w = pair(p.size)
        else:
            sh, sw = Upsample._scales(p)
            h = math.floor(static_dim(x, 2, "height") * sh)
            w = math.floor(static_dim(x, 3, "width") * sw)
            if h < 1 or w < 1:
                raise OpError(f"scale_factor={p.scale_factor} shrinks {x} to nothing ({h}x{w})",
                              param="scale_factor")
        return [x.with_shape(x.shape[:2] + (h, w))]

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.interpolate, {"size": pair(p.size) if p.size is not None else None,
                                    "scale_factor": Upsample._scales(p) if p.size is None else None,
                                    "mode": p.mode, "align_corners": p.align_corners})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p, x = ctx.params, ctx.inputs[0]
        if p.size is not None:
            (lead,) = ctx.node("Shape", [x], end=2)  # N and C, which may be symbolic
            (sizes,) = ctx.node("Concat", [lead, ctx.const(np.array(pair(p.size), dtype=np.int64), "size")], axis=0)
            inputs = [x, "", "", sizes]
        else:
            scales = np.array((1.0, 1.0) + Upsample._scales(p), dtype=np.float32)
            inputs = [x, "", ctx.const(scales, "scales")]
        if p.mode == "nearest":
            # torch's nearest takes source index floor(dst / scale).
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs = dict(mode="linear",
                         coordinate_transformation_mode="align_corners" if p.align_corners else "half_pixel")
        ctx.node("Resize", inputs, ctx.outputs, **attrs)

    @staticmethod
    def elementwise(p, ins, outs):
        return outs[0].per_item_numel() * (4 if p.mode == "bilinear" else 0)

