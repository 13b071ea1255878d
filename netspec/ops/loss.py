"""Losses: (prediction, target) -> a scalar, averaged over the batch ("mean" reduction).

A loss's weight in the total is not one of its params: it lives on the graph node.
"""

from __future__ import annotations

import functools

from pydantic import Field
from typing_extensions import Annotated

from ..errors import OpError
from ..types import TensorType, is_float
from .activation import scalar
from .registry import Call, Float, Int, Op, Params, register

PosFloat = Annotated[Float, Field(gt=0)]
INDEX_DTYPES = ("int64", "int32")


def _float_pred(pred: TensorType) -> None:
    if not is_float(pred):
        raise OpError(f"expects a float prediction, got {pred.full()}")


class _Loss(Op):
    kind = "loss"
    arity = (2, 2)

    @staticmethod
    def _scalar(pred: TensorType) -> list[TensorType]:
        return [TensorType(pred.dtype, ())]


class _SameShape(_Loss):
    """A loss comparing a float prediction with a target of its own type, element by element."""

    @staticmethod
    def target(p, pred):
        _float_pred(pred)
        return pred

    @staticmethod
    def shape(p, ins):
        pred, target = ins
        _float_pred(pred)
        if target != pred:
            raise OpError(f"expects a target of the prediction's type {pred.full()}, got {target.full()}")
        return _Loss._scalar(pred)


class _ClassIndex(_Loss):
    """A loss over class scores [N, C] or [N, C, d...] against class indices [N] or [N, d...]."""

    class Params(Params):
        ignore_index: Int | None = None  # targets with this class count for nothing

    @staticmethod
    def target(p, pred):
        _float_pred(pred)
        if pred.rank < 2:
            raise OpError(f"expects a prediction [N, C] or [N, C, d...] of rank 2 or more, got {pred.rank}-d {pred}")
        return TensorType("int64", pred.shape[:1] + pred.shape[2:])

    @classmethod
    def shape(cls, p, ins):
        pred, target = ins
        want = cls.target(p, pred)
        if target.dtype not in INDEX_DTYPES or target.shape != want.shape:
            raise OpError(f"expects class indices {want.full()} as target for the prediction {pred}, "
                          f"got {target.full()}", hint="the target holds one class index per item, not scores")
        return _Loss._scalar(pred)

    @staticmethod
    def _nll(ctx, logp: str, output: str | None) -> tuple[str, str]:
        """Emit the mean negative log-likelihood; return it and the int64 target."""
        target = ctx.inputs[1]
        if ctx.in_types[1].dtype != "int64":
            (target,) = ctx.node("Cast", [target], to=7)  # ONNX NLL wants int64 indices
        attrs = {} if ctx.params.ignore_index is None else {"ignore_index": ctx.params.ignore_index}
        out = ctx.node("NegativeLogLikelihoodLoss", [logp, target], [output] if output else None,
                       reduction="mean", **attrs)[0]
        return out, target


@register
class CrossEntropy(_ClassIndex):
    doc = "Softmax cross-entropy of class scores against class indices, with optional label smoothing."

    class Params(_ClassIndex.Params):
        label_smoothing: Annotated[Float, Field(ge=0, lt=1)] = 0.0

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.cross_entropy, {"label_smoothing": p.label_smoothing,
                                      "ignore_index": -100 if p.ignore_index is None else p.ignore_index})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p, pred_type = ctx.params, ctx.in_types[0]
        (logp,) = ctx.node("LogSoftmax", [ctx.inputs[0]], axis=1)
        eps = p.label_smoothing
        nll, target = _ClassIndex._nll(ctx, logp, None if eps else ctx.outputs[0])
        if not eps:
            return
        # torch: (1 - eps) * nll + eps * mean over kept items of (-mean over classes of log p).
        (smooth,) = ctx.node("ReduceMean", [logp], axes=[1], keepdims=0)
        (smooth,) = ctx.node("Neg", [smooth])
        if p.ignore_index is None:
            (smooth,) = ctx.node("ReduceMean", [smooth], keepdims=0)
        else:
            (ignored,) = ctx.node("Equal", [target, ctx.const(np.array(p.ignore_index, dtype=np.int64), "ignore")])
            (kept,) = ctx.node("Not", [ignored])
            (kept,) = ctx.node("CastLike", [kept, smooth])
            (smooth,) = ctx.node("Mul", [smooth, kept])
            (total,) = ctx.node("ReduceSum", [smooth], keepdims=0)
            (count,) = ctx.node("ReduceSum", [kept], keepdims=0)
            (smooth,) = ctx.node("Div", [total, count])
        x = ctx.inputs[0]
        (nll,) = ctx.node("Mul", [nll, scalar(ctx, 1 - eps, x, pred_type)])
        (smooth,) = ctx.node("Mul", [smooth, scalar(ctx, eps, x, pred_type)])
        ctx.node("Add", [nll, smooth], ctx.outputs)


@register
class NLL(_ClassIndex):
    doc = "Negative log-likelihood of log-probabilities (e.g. LogSoftmax's output) against class indices."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.nll_loss, {"ignore_index": -100 if p.ignore_index is None else p.ignore_index})

    @staticmethod
    def onnx(ctx):
        _ClassIndex._nll(ctx, ctx.inputs[0], ctx.outputs[0])


@register
class MSE(_SameShape):
    doc = "Mean squared error."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.mse_loss)

    @staticmethod
    def onnx(ctx):
        (d,) = ctx.node("Sub", ctx.inputs)
        (sq,) = ctx.node("Mul", [d, d])
        ctx.node("ReduceMean", [sq], ctx.outputs, keepdims=0)


@register
class L1(_SameShape):
    doc = "Mean absolute error."

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        return Call(F.l1_loss)

    @staticmethod
    def onnx(ctx):
        (d,) = ctx.node("Sub", ctx.inputs)
        (a,) = ctx.node("Abs", [d])
        ctx.node("ReduceMean", [a], ctx.outputs, keepdims=0)


@functools.cache
def _bce_module():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BCEWithLogits(nn.Module):
        """binary_cross_entropy_with_logits with a constant pos_weight kept out of the state dict."""

        def __init__(self, pos_weight):
            super().__init__()
            self.pos_weight = pos_weight

        def forward(self, pred, target):
            pw = torch.tensor(self.pos_weight, dtype=pred.dtype, device=pred.device)
            return F.binary_cross_entropy_with_logits(pred, target, pos_weight=pw)

    return BCEWithLogits


@register
class BCEWithLogits(_SameShape):
    doc = ("Binary cross-entropy of logits against targets in [0, 1]; `pos_weight` (one value, or one "
           "per class of the last dim) scales the positive term.")

    class Params(Params):
        pos_weight: PosFloat | list[PosFloat] | None = None

    @staticmethod
    def shape(p, ins):
        out = _SameShape.shape(p, ins)
        pred = ins[0]
        if isinstance(p.pos_weight, list):
            last = pred.shape[-1] if pred.rank else None
            if last != len(p.pos_weight):
                raise OpError(f"pos_weight has {len(p.pos_weight)} values, one per class, but the last dim "
                              f"of the prediction {pred} is {last}", param="pos_weight")
        return out

    @staticmethod
    def torch(p, ins):
        import torch.nn.functional as F
        if p.pos_weight is None:
            return Call(F.binary_cross_entropy_with_logits)
        return _bce_module()(p.pos_weight)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        p, (x, y), t = ctx.params, ctx.inputs, ctx.in_types[0]
        one = scalar(ctx, 1.0, x, t)
        # softplus(-x) = log(1 + exp(-x)), in the form that never overflows: max(-x, 0) + log(1 + exp(-|x|)).
        (neg,) = ctx.node("Neg", [x])
        (abs_x,) = ctx.node("Abs", [x])
        (e,) = ctx.node("Exp", [ctx.node("Neg", [abs_x])[0]])
        (log1p,) = ctx.node("Log", [ctx.node("Add", [one, e])[0]])
        (sp,) = ctx.node("Add", [ctx.node("Relu", [neg])[0], log1p])
        if p.pos_weight is not None:
            # torch: (1 - y) * x + (1 + (pos_weight - 1) * y) * softplus(-x)
            pw = np.asarray(p.pos_weight, dtype=np.float32) - 1
            pw_minus_one = ctx.const(pw, "pos_weight")
            if t.dtype != "float32":
                (pw_minus_one,) = ctx.node("CastLike", [pw_minus_one, x])
            (scale,) = ctx.node("Mul", [pw_minus_one, y])
            (scale,) = ctx.node("Add", [one, scale])
            (sp,) = ctx.node("Mul", [scale, sp])
        (one_minus_y,) = ctx.node("Sub", [one, y])
        (lin,) = ctx.node("Mul", [one_minus_y, x])
        (loss,) = ctx.node("Add", [lin, sp])
        ctx.node("ReduceMean", [loss], ctx.outputs, keepdims=0)
