"""Convolutions."""

from __future__ import annotations

import math
from typing import Literal

from ..errors import OpError
from ..types import TensorType
from .registry import (IntOrPair, NonNegIntOrPair, Op, Params, PosInt, WeightSpec, check_rank, pair,
                       register, static_dim)


def conv_out(size, k: int, s: int, pad_total: int, d: int):
    """Output length of a convolution or pooling window along one axis."""
    if isinstance(size, str):
        return size
    return (size + pad_total - d * (k - 1) - 1) // s + 1


@register
class Conv2d(Op):
    doc = "2-d convolution over [N, C, H, W]; in-channels are inferred."
    positional = ("out_channels", "kernel")

    class Params(Params):
        out_channels: PosInt
        kernel: IntOrPair = 3
        stride: IntOrPair = 1
        padding: NonNegIntOrPair | Literal["same", "valid"] = 0
        dilation: IntOrPair = 1
        groups: PosInt = 1
        bias: bool = True
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"

    @staticmethod
    def _pads(p) -> tuple[tuple[int, int], tuple[int, int]]:
        """(begin, end) padding per spatial axis, as ONNX wants it."""
        kh, kw = pair(p.kernel)
        dh, dw = pair(p.dilation)
        if p.padding == "valid":
            return (0, 0), (0, 0)
        if p.padding == "same":
            # torch puts the extra pixel of an odd total at the end.
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return (th // 2, th - th // 2), (tw // 2, tw - tw // 2)
        ph, pw = pair(p.padding)
        return (ph, ph), (pw, pw)

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        check_rank(x, 4)
        c = static_dim(x, 1, "channel count")
        if c % p.groups:
            raise OpError(f"in-channels {c} are not divisible by groups={p.groups}", param="groups")
        if p.out_channels % p.groups:
            raise OpError(f"out_channels {p.out_channels} is not divisible by groups={p.groups}",
                          param="out_channels")
        if p.padding == "same" and pair(p.stride) != (1, 1):
            raise OpError("padding='same' needs stride 1", param="padding")
        (kh, kw), (sh, sw), (dh, dw) = pair(p.kernel), pair(p.stride), pair(p.dilation)
        (pt, pb), (pl, pr) = Conv2d._pads(p)
        h = conv_out(x.shape[2], kh, sh, pt + pb, dh)
        w = conv_out(x.shape[3], kw, sw, pl + pr, dw)
        if (isinstance(h, int) and h < 1) or (isinstance(w, int) and w < 1):
            raise OpError(f"kernel {kh}x{kw} (dilation {dh}x{dw}) does not fit the padded input {x}",
                          param="kernel")
        return [x.with_shape((x.shape[0], p.out_channels, h, w))]

    @staticmethod
    def weights(p, ins):
        c = ins[0].shape[1]
        kh, kw = pair(p.kernel)
        fan_in = c // p.groups * kh * kw
        bound = 1 / math.sqrt(fan_in)
        w = {"weight": WeightSpec((p.out_channels, c // p.groups, kh, kw), ("uniform", bound))}
        if p.bias:
            w["bias"] = WeightSpec((p.out_channels,), ("uniform", bound))
        return w

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.Conv2d(ins[0].shape[1], p.out_channels, pair(p.kernel), stride=pair(p.stride),
                         padding=p.padding if isinstance(p.padding, str) else pair(p.padding),
                         dilation=pair(p.dilation), groups=p.groups, bias=p.bias,
                         padding_mode=p.padding_mode)

    @staticmethod
    def onnx(ctx):
        p = ctx.params
        (pt, pb), (pl, pr) = Conv2d._pads(p)
        x = ctx.inputs[0]
        if p.padding_mode != "zeros" and (pt or pb or pl or pr):
            mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[p.padding_mode]
            pads = ctx.const(__import__("numpy").array([0, 0, pt, pl, 0, 0, pb, pr], dtype="int64"), "pads")
            (x,) = ctx.node("Pad", [x, pads], mode=mode)
            pt = pb = pl = pr = 0
        inputs = [x, ctx.weight("weight")] + ([ctx.weight("bias")] if p.bias else [])
        ctx.node("Conv", inputs, ctx.outputs, kernel_shape=list(pair(p.kernel)), strides=list(pair(p.stride)),
                 pads=[pt, pl, pb, pr], dilations=list(pair(p.dilation)), group=p.groups)

    @staticmethod
    def flops(p, ins, outs):
        n = outs[0].numel()
        if n is None:
            n = math.prod(d for d in outs[0].shape if isinstance(d, int))
        kh, kw = pair(p.kernel)
        return n * (ins[0].shape[1] // p.groups) * kh * kw
