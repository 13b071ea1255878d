"""Convolutions."""

from __future__ import annotations

import math
from typing import Literal

from ..errors import OpError
from .registry import (IntOrPair, NonNegInt, NonNegIntOrPair, Op, Params, PosInt, WeightSpec, check_rank, pair,
                       register, static_dim)
from .weight_forms import reshaped


def conv_out(size, k: int, s: int, pad_total: int, d: int):
    """Output length of a convolution or pooling window along one axis."""
    if isinstance(size, str):
        return size
    return (size + pad_total - d * (k - 1) - 1) // s + 1


def ntuple(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _check_len(p, n: int, names) -> None:
    for name in names:
        v = getattr(p, name)
        if not isinstance(v, (int, str)) and len(v) != n:
            raise OpError(f"{name} has {len(v)} values, this op has {n} spatial dims", param=name)


def _check_groups(p, c: int) -> None:
    if c % p.groups:
        raise OpError(f"in-channels {c} are not divisible by groups={p.groups}", param="groups")
    if p.out_channels % p.groups:
        raise OpError(f"out_channels {p.out_channels} is not divisible by groups={p.groups}",
                      param="out_channels")


class _ConvNd(Op):
    """A convolution over n spatial dims; Conv1d, Conv2d and Conv3d differ only in `nd`."""

    nd = 0
    positional = ("out_channels", "kernel")

    @classmethod
    def _pads(cls, p) -> list[tuple[int, int]]:
        k, d = ntuple(p.kernel, cls.nd), ntuple(p.dilation, cls.nd)
        if p.padding == "valid":
            return [(0, 0)] * cls.nd
        if p.padding == "same":
            # torch puts the extra pixel of an odd total at the end.
            return [(di * (ki - 1) // 2, di * (ki - 1) - di * (ki - 1) // 2) for ki, di in zip(k, d)]
        return [(q, q) for q in ntuple(p.padding, cls.nd)]

    @classmethod
    def shape(cls, p, ins):
        (x,) = ins
        check_rank(x, cls.nd + 2)
        _check_len(p, cls.nd, ("kernel", "stride", "padding", "dilation"))
        _check_groups(p, static_dim(x, 1, "channel count"))
        s = ntuple(p.stride, cls.nd)
        if p.padding == "same" and any(v != 1 for v in s):
            raise OpError("padding='same' needs stride 1", param="padding")
        k, d = ntuple(p.kernel, cls.nd), ntuple(p.dilation, cls.nd)
        spatial = [conv_out(x.shape[2 + i], k[i], s[i], sum(pad), d[i]) for i, pad in enumerate(cls._pads(p))]
        if any(isinstance(v, int) and v < 1 for v in spatial):
            raise OpError(f"kernel {'x'.join(map(str, k))} (dilation {'x'.join(map(str, d))}) does not fit "
                          f"the padded input {x}", param="kernel")
        return [x.with_shape((x.shape[0], p.out_channels, *spatial))]

    @classmethod
    def weights(cls, p, ins):
        c = ins[0].shape[1]
        k = ntuple(p.kernel, cls.nd)
        bound = 1 / math.sqrt(c // p.groups * math.prod(k))
        w = {"weight": WeightSpec((p.out_channels, c // p.groups, *k), ("uniform", bound))}
        if p.bias:
            w["bias"] = WeightSpec((p.out_channels,), ("uniform", bound))
        return w

    @classmethod
    def torch(cls, p, ins):
        from torch import nn
        mod = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[cls.nd]
        return mod(ins[0].shape[1], p.out_channels, ntuple(p.kernel, cls.nd), stride=ntuple(p.stride, cls.nd),
                   padding=p.padding if isinstance(p.padding, str) else ntuple(p.padding, cls.nd),
                   dilation=ntuple(p.dilation, cls.nd), groups=p.groups, bias=p.bias,
                   padding_mode=p.padding_mode)

    @classmethod
    def onnx(cls, ctx):
        import numpy as np
        p = ctx.params
        pads = cls._pads(p)
        x = ctx.inputs[0]
        if p.padding_mode != "zeros" and any(a or b for a, b in pads):
            mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[p.padding_mode]
            amounts = [0, 0] + [a for a, _ in pads] + [0, 0] + [b for _, b in pads]
            (x,) = ctx.node("Pad", [x, ctx.const(np.array(amounts, dtype=np.int64), "pads")], mode=mode)
            pads = [(0, 0)] * cls.nd
        inputs = [x, ctx.weight("weight")] + ([ctx.weight("bias")] if p.bias else [])
        ctx.node("Conv", inputs, ctx.outputs, kernel_shape=list(ntuple(p.kernel, cls.nd)),
                 strides=list(ntuple(p.stride, cls.nd)), pads=[a for a, _ in pads] + [b for _, b in pads],
                 dilations=list(ntuple(p.dilation, cls.nd)), group=p.groups)

    @classmethod
    def macs(cls, p, ins, outs):
        return outs[0].per_item_numel() * (ins[0].shape[1] // p.groups * math.prod(ntuple(p.kernel, cls.nd)))


PosInt3 = tuple[PosInt, PosInt, PosInt]
NonNegInt3 = tuple[NonNegInt, NonNegInt, NonNegInt]


@register
class Conv1d(_ConvNd):
    doc = "1-d convolution over [N, C, L]; in-channels are inferred."
    nd = 1

    class Params(Params):
        out_channels: PosInt
        kernel: PosInt | tuple[PosInt] = 3
        stride: PosInt | tuple[PosInt] = 1
        padding: NonNegInt | tuple[NonNegInt] | Literal["same", "valid"] = 0
        dilation: PosInt | tuple[PosInt] = 1
        groups: PosInt = 1
        bias: bool = True
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


@register
class Conv2d(_ConvNd):
    doc = "2-d convolution over [N, C, H, W]; in-channels are inferred."
    nd = 2

    class Params(Params):
        out_channels: PosInt
        kernel: IntOrPair = 3
        stride: IntOrPair = 1
        padding: NonNegIntOrPair | Literal["same", "valid"] = 0
        dilation: IntOrPair = 1
        groups: PosInt = 1
        bias: bool = True
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


@register
class Conv3d(_ConvNd):
    doc = "3-d convolution over [N, C, D, H, W]; in-channels are inferred."
    nd = 3

    class Params(Params):
        out_channels: PosInt
        kernel: PosInt | PosInt3 = 3
        stride: PosInt | PosInt3 = 1
        padding: NonNegInt | NonNegInt3 | Literal["same", "valid"] = 0
        dilation: PosInt | PosInt3 = 1
        groups: PosInt = 1
        bias: bool = True
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


@register
class ConvTranspose2d(Op):
    doc = "2-d transposed convolution over [N, C, H, W]; in-channels are inferred."
    positional = ("out_channels", "kernel")

    class Params(Params):
        out_channels: PosInt
        kernel: IntOrPair = 3
        stride: IntOrPair = 1
        padding: NonNegIntOrPair = 0
        output_padding: NonNegIntOrPair = 0
        dilation: IntOrPair = 1
        groups: PosInt = 1
        bias: bool = True

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        check_rank(x, 4)
        _check_groups(p, static_dim(x, 1, "channel count"))
        k, s, pad = pair(p.kernel), pair(p.stride), pair(p.padding)
        op, d = pair(p.output_padding), pair(p.dilation)
        for i in range(2):
            if op[i] >= s[i] and op[i] >= d[i]:
                raise OpError(f"output_padding {op[i]} must be smaller than the stride ({s[i]}) or the "
                              f"dilation ({d[i]})", param="output_padding")
        spatial = []
        for i in range(2):
            n = x.shape[2 + i]
            spatial.append(n if isinstance(n, str) else
                           (n - 1) * s[i] - 2 * pad[i] + d[i] * (k[i] - 1) + op[i] + 1)
        if any(isinstance(v, int) and v < 1 for v in spatial):
            raise OpError(f"padding {pad} leaves no output from {x}", param="padding")
        return [x.with_shape((x.shape[0], p.out_channels, *spatial))]

    @staticmethod
    def weights(p, ins):
        c = ins[0].shape[1]
        kh, kw = pair(p.kernel)
        # torch computes fan-in from dim 1 of the weight, which here is the output side.
        bound = 1 / math.sqrt(p.out_channels // p.groups * kh * kw)
        w = {"weight": WeightSpec((c, p.out_channels // p.groups, kh, kw), ("uniform", bound))}
        if p.bias:
            w["bias"] = WeightSpec((p.out_channels,), ("uniform", bound))
        return w

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.ConvTranspose2d(ins[0].shape[1], p.out_channels, pair(p.kernel), stride=pair(p.stride),
                                  padding=pair(p.padding), output_padding=pair(p.output_padding),
                                  groups=p.groups, bias=p.bias, dilation=pair(p.dilation))

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p = ctx.params
        pad, op, s = pair(p.padding), pair(p.output_padding), pair(p.stride)
        attrs = dict(kernel_shape=list(pair(p.kernel)), strides=list(s), dilations=list(pair(p.dilation)),
                     group=p.groups)
        x, w = ctx.inputs[0], ctx.weight("weight")
        if all(o < si for o, si in zip(op, s)):
            inputs = [x, w] + ([ctx.weight("bias")] if p.bias else [])
            ctx.node("ConvTranspose", inputs, ctx.outputs, pads=[*pad, *pad], output_padding=list(op), **attrs)
            return
        # ONNX Runtime refuses output_padding >= stride, which torch allows below the dilation.
        # The extra rows are the full output's next rows (trimmed less at the end), and past the
        # full output only the bias: trim less, pad zeros, then add the bias.
        ends = [max(0, pi - oi) for pi, oi in zip(pad, op)]
        grow = [max(0, oi - pi) for pi, oi in zip(pad, op)]
        last = [] if p.bias or any(grow) else ctx.outputs
        (y,) = ctx.node("ConvTranspose", [x, w], last or None, pads=[*pad, *ends], **attrs)
        if any(grow):
            amounts = ctx.const(np.array([0, 0, 0, 0, 0, 0, *grow], np.int64), "pads")
            (y,) = ctx.node("Pad", [y, amounts], None if p.bias else ctx.outputs)
        if p.bias:
            ctx.node("Add", [y, reshaped(ctx, "bias", (p.out_channels, 1, 1))], ctx.outputs)

    @staticmethod
    def macs(p, ins, outs):
        kh, kw = pair(p.kernel)
        # Each input pixel scatters into kh*kw outputs per output channel of its group.
        return ins[0].per_item_numel() * (p.out_channels // p.groups) * kh * kw
