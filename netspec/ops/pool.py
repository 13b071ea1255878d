"""Pooling layers."""

from __future__ import annotations

import math


from ..errors import OpError
from .registry import Op, Params, PosInt, NonNegInt, check_rank, register, static_dim

IntOrPairOpt = PosInt | tuple[PosInt, PosInt] | None
NonNegIntOrPair = NonNegInt | tuple[NonNegInt, NonNegInt]


def _tup(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's output length: with ceil_mode, a last window starting in the right padding is dropped."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class _Pool(Op):
    """Max and average pooling over `nd` spatial dims, with torch's semantics."""

    nd = 0
    onnx_op = ""
    positional = ("kernel",)

    @classmethod
    def _geometry(cls, p):
        k = _tup(p.kernel, cls.nd)
        s = _tup(p.stride, cls.nd) if p.stride is not None else k
        pad = _tup(p.padding, cls.nd)
        d = _tup(getattr(p, "dilation", 1), cls.nd)
        return k, s, pad, d

    @classmethod
    def shape(cls, p, ins):
        (x,) = ins
        check_rank(x, cls.nd + 2)
        for name in ("kernel", "stride", "padding", "dilation"):
            v = getattr(p, name, None)
            if isinstance(v, tuple) and len(v) != cls.nd:
                raise OpError(f"{name} has {len(v)} values, this op has {cls.nd} spatial dims", param=name)
        k, s, pad, d = cls._geometry(p)
        if any(pi > ki // 2 for pi, ki in zip(pad, k)):
            raise OpError(f"padding {p.padding} is more than half the kernel {p.kernel}, which torch refuses",
                          param="padding")
        spatial = []
        for i in range(cls.nd):
            n = x.shape[2 + i]
            if isinstance(n, str):
                spatial.append(n)
                continue
            out = pool_out(n, k[i], s[i], pad[i], d[i], p.ceil_mode)
            if out < 1:
                raise OpError(f"kernel {p.kernel} does not fit the padded input {x}", param="kernel")
            # A dilated window can straddle the input and see only padding; torch then gives -inf.
            for j in range(out):
                taps = [j * s[i] - pad[i] + t * d[i] for t in range(k[i])]
                if not any(0 <= q < n for q in taps):
                    raise OpError(f"window {j} along dim {2 + i} of {x} covers only padding "
                                  f"(kernel {p.kernel}, dilation {d[i]}, padding {p.padding})", param="padding")
            spatial.append(out)
        return [x.with_shape((*x.shape[:2], *spatial))]

    @classmethod
    def _onnx_pads(cls, ctx, k, s, pad, d) -> tuple[list[int], int]:
        """Begin and end pads that give torch's output length with ONNX's floor rule, and ceil_mode.

        torch and ONNX runtimes disagree on ceil_mode's last window, so a static size is lowered
        to extra end padding (ignored by MaxPool, not counted by AveragePool) instead.
        """
        x = ctx.in_types[0]
        ends, ceil = [], 0
        for i in range(cls.nd):
            n = x.shape[2 + i]
            if not ctx.params.ceil_mode:
                ends.append(pad[i])
            elif isinstance(n, str):
                ends.append(pad[i])
                ceil = 1
            else:
                out = pool_out(n, k[i], s[i], pad[i], d[i], True)
                extra = max(0, (out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (n + 2 * pad[i]))
                ends.append(pad[i] + extra)
        return list(pad) + ends, ceil

    @classmethod
    def elementwise(cls, p, ins, outs):
        return outs[0].per_item_numel() * math.prod(_tup(p.kernel, cls.nd))


class _MaxPool(_Pool):
    @classmethod
    def torch(cls, p, ins):
        from torch import nn
        k, s, pad, d = cls._geometry(p)
        mod = {1: nn.MaxPool1d, 2: nn.MaxPool2d}[cls.nd]
        return mod(k, stride=s, padding=pad, dilation=d, ceil_mode=p.ceil_mode)

    @classmethod
    def onnx(cls, ctx):
        import numpy as np
        k, s, pad, d = cls._geometry(ctx.params)
        pads, ceil = cls._onnx_pads(ctx, k, s, pad, d)
        x = ctx.inputs[0]
        if any(q >= ki for q, ki in zip(pads, k + k)):
            # ONNX Runtime wants pads below the kernel; pad explicitly with -inf, which max ignores.
            amounts = np.array([0, 0, *pads[:cls.nd], 0, 0, *pads[cls.nd:]], np.int64)
            lowest = np.array(-np.inf, np.float32)
            (x,) = ctx.node("Pad", [x, ctx.const(amounts, "pads"), ctx.const(lowest, "lowest")])
            pads = [0] * (2 * cls.nd)
        ctx.node("MaxPool", [x], ctx.outputs, kernel_shape=list(k), strides=list(s), pads=pads,
                 dilations=list(d), ceil_mode=ceil)


class _AvgPool(_Pool):
    @classmethod
    def torch(cls, p, ins):
        from torch import nn
        k, s, pad, _ = cls._geometry(p)
        mod = {1: nn.AvgPool1d, 2: nn.AvgPool2d}[cls.nd]
        return mod(k, stride=s, padding=pad, ceil_mode=p.ceil_mode, count_include_pad=p.count_include_pad)

    @classmethod
    def onnx(cls, ctx):
        import numpy as np
        p = ctx.params
        k, s, pad, d = cls._geometry(p)
        pads, ceil = cls._onnx_pads(ctx, k, s, pad, d)
        x = ctx.inputs[0]
        if any(q >= ki for q, ki in zip(pads, k + k)):
            cls._onnx_divided(ctx, k, s, pad, pads)
            return
        if p.count_include_pad and any(pad):
            # torch counts the declared zero padding but never a ceil_mode overhang past it:
            # pad with real zeros, then let AveragePool count only what is inside.
            amounts = np.array([0, 0, *pad, 0, 0, *pad], np.int64)
            (x,) = ctx.node("Pad", [x, ctx.const(amounts, "pads")])
            pads = [0] * cls.nd + [e - b for b, e in zip(pads[:cls.nd], pads[cls.nd:])]
        ctx.node("AveragePool", [x], ctx.outputs, kernel_shape=list(k), strides=list(s), pads=pads,
                 ceil_mode=ceil, count_include_pad=0)


    @classmethod
    def _onnx_divided(cls, ctx, k, s, pad, pads):
        """Zero-pad explicitly, sum each window, and divide by torch's count, computed here.

        For pads of a kernel or more, which ONNX Runtime refuses; needs static spatial sizes.
        """
        import numpy as np
        sizes = [static_dim(ctx.in_types[0], 2 + i, "spatial size") for i in range(cls.nd)]
        counts = None
        for i in range(cls.nd):
            lo, hi = (-pad[i], sizes[i] + pad[i]) if ctx.params.count_include_pad else (0, sizes[i])
            starts = np.arange(ctx.out_types[0].shape[2 + i]) * s[i] - pad[i]
            n = np.minimum(starts + k[i], hi) - np.maximum(starts, lo)
            counts = n if counts is None else np.multiply.outer(counts, n)
        amounts = np.array([0, 0, *pads[:cls.nd], 0, 0, *pads[cls.nd:]], np.int64)
        (x,) = ctx.node("Pad", [ctx.inputs[0], ctx.const(amounts, "pads")])
        (mean,) = ctx.node("AveragePool", [x], kernel_shape=list(k), strides=list(s))
        scale = (math.prod(k) / counts).astype(np.float32)
        ctx.node("Mul", [mean, ctx.const(scale, "count_scale")], ctx.outputs)


@register
class MaxPool2d(_MaxPool):
    doc = "2-d max pooling over [N, C, H, W]; stride defaults to the kernel."
    nd = 2

    class Params(Params):
        kernel: PosInt | tuple[PosInt, PosInt]
        stride: IntOrPairOpt = None
        padding: NonNegIntOrPair = 0
        dilation: PosInt | tuple[PosInt, PosInt] = 1
        ceil_mode: bool = False


@register
class MaxPool1d(_MaxPool):
    doc = "1-d max pooling over [N, C, L]; stride defaults to the kernel."
    nd = 1

    class Params(Params):
        kernel: PosInt | tuple[PosInt]
        stride: PosInt | tuple[PosInt] | None = None
        padding: NonNegInt | tuple[NonNegInt] = 0
        dilation: PosInt | tuple[PosInt] = 1
        ceil_mode: bool = False


@register
class AvgPool2d(_AvgPool):
    doc = "2-d average pooling over [N, C, H, W]; stride defaults to the kernel."
    nd = 2

    class Params(Params):
        kernel: PosInt | tuple[PosInt, PosInt]
        stride: IntOrPairOpt = None
        padding: NonNegIntOrPair = 0
        ceil_mode: bool = False
        count_include_pad: bool = True


@register
class AvgPool1d(_AvgPool):
    doc = "1-d average pooling over [N, C, L]; stride defaults to the kernel."
    nd = 1

    class Params(Params):
        kernel: PosInt | tuple[PosInt]
        stride: PosInt | tuple[PosInt] | None = None
        padding: NonNegInt | tuple[NonNegInt] = 0
        ceil_mode: bool = False
        count_include_pad: bool = True


def _adaptive_weights(n: int, o: int) -> np.ndarray:
    """[o, n] averaging weights of torch's adaptive windows [floor(i*n/o), ceil((i+1)*n/o))."""
    import numpy as np
    w = np.zeros((o, n), dtype=np.float32)
    for i in range(o):
        start, end = i * n // o, -(-(i + 1) * n // o)
        w[i, start:end] = 1 / (end - start)
    return w


@register
class AdaptiveAvgPool2d(Op):
    doc = "Average pooling of [N, C, H, W] to a fixed [output_size] grid."
    positional = ("output_size",)

    class Params(Params):
        output_size: PosInt | tuple[PosInt, PosInt]

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        check_rank(x, 4)
        return [x.with_shape((*x.shape[:2], *_tup(p.output_size, 2)))]

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.AdaptiveAvgPool2d(_tup(p.output_size, 2))

    @staticmethod
    def onnx(ctx):
        import numpy as np
        out = _tup(ctx.params.output_size, 2)
        if out == (1, 1):
            ctx.node("GlobalAveragePool", ctx.inputs, ctx.outputs)
            return
        x = ctx.in_types[0]
        size = tuple(static_dim(x, 2 + i, "spatial size for an ONNX adaptive pool") for i in range(2))
        if all(n % o == 0 for n, o in zip(size, out)):
            k = [n // o for n, o in zip(size, out)]
            ctx.node("AveragePool", ctx.inputs, ctx.outputs, kernel_shape=k, strides=k)
            return
        # torch's windows overlap or repeat here (GoogLeNet pools 14x14 to 4x4), which no
        # AveragePool expresses: average with one constant matrix per axis, y = A_h @ x @ A_w^T.
        rows, cols = (_adaptive_weights(n, o) for n, o in zip(size, out))
        rows, cols = ctx.const(rows, "pool_rows"), ctx.const(np.ascontiguousarray(cols.T), "pool_cols")
        if x.dtype != "float32":
            rows, cols = (ctx.node("CastLike", [c, ctx.inputs[0]])[0] for c in (rows, cols))
        (y,) = ctx.node("MatMul", [rows, ctx.inputs[0]])
        ctx.node("MatMul", [y, cols], ctx.outputs)

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()


@register
class GlobalAvgPool(Op):
    doc = "Mean over all spatial dims of [N, C, *], keeping them as size 1: [N, C, 1, 1]."

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if x.rank < 3:
            raise OpError(f"expects [N, C, *spatial] of rank 3 or more, got {x.rank}-d {x}")
        return [x.with_shape((*x.shape[:2], *([1] * (x.rank - 2))))]

    @staticmethod
    def torch(p, ins):
        import torch
        from .registry import Call
        return Call(torch.mean, {"dim": tuple(range(2, ins[0].rank)), "keepdim": True})

    @staticmethod
    def onnx(ctx):
        ctx.node("GlobalAveragePool", ctx.inputs, ctx.outputs)

    @staticmethod
    def elementwise(p, ins, outs):
        return ins[0].per_item_numel()
