"""Sequence ops: Embedding, MultiHeadAttention, LSTM and GRU (batch first by default)."""

from __future__ import annotations

import functools
import math

from pydantic import Field, model_validator
from typing_extensions import Annotated

from ..errors import OpError
from ..types import TensorType, is_float
from .activation import scalar
from .registry import Float, Int, Op, Params, PosInt, WeightSpec, check_rank, register, static_dim
from .weight_forms import stacked_gates, transposed

Probability = Annotated[Float, Field(ge=0, lt=1)]


@register
class Embedding(Op):
    doc = "Look up a learnt vector per integer index: int [N, ...] -> float32 [N, ..., embedding_dim]."
    positional = ("num_embeddings", "embedding_dim")

    class Params(Params):
        num_embeddings: PosInt
        embedding_dim: PosInt
        padding_idx: Int | None = None  # this row's vector stays zero and gets no gradient

        @model_validator(mode="after")
        def _padding_in_range(self):
            n = self.num_embeddings
            if self.padding_idx is not None and not -n <= self.padding_idx < n:
                raise ValueError(f"padding_idx={self.padding_idx} is outside [-{n}, {n})")
            return self

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        if x.dtype not in ("int64", "int32"):
            raise OpError(f"expects int64 or int32 indices, got {x.full()}",
                          hint="feed class or token ids, not features")
        return [TensorType("float32", x.shape + (p.embedding_dim,))]

    @staticmethod
    def weights(p, ins):
        # torch also zeroes the padding row at init, which a WeightSpec cannot say.
        return {"weight": WeightSpec((p.num_embeddings, p.embedding_dim), ("normal", 1.0))}

    @staticmethod
    def torch(p, ins):
        from torch import nn
        return nn.Embedding(p.num_embeddings, p.embedding_dim, padding_idx=p.padding_idx)

    @staticmethod
    def onnx(ctx):
        ctx.node("Gather", [ctx.weight("weight"), ctx.inputs[0]], ctx.outputs, axis=0)


@functools.cache
def _attention_module():
    import torch
    from torch import nn

    class Attention(nn.MultiheadAttention):
        """nn.MultiheadAttention (its state-dict keys unchanged) returning only the output.

        It is called with (x) or (query, key, value), then a key-padding mask when it has one.
        """

        def __init__(self, embed_dim, heads, dropout, bias, causal, masked=False):
            super().__init__(embed_dim, heads, dropout=dropout, bias=bias, batch_first=True)
            self.causal = causal
            self.masked = masked

        def forward(self, *xs):
            padding = xs[-1] if self.masked else None
            xs = xs[:-1] if self.masked else xs
            query, key, value = xs if len(xs) == 3 else xs * 3
            mask = None
            if self.causal:
                mask = torch.ones(query.shape[1], key.shape[1], dtype=torch.bool, device=query.device).triu(1)
            if padding is None:
                return super().forward(query, key, value, need_weights=False, attn_mask=mask)[0]
            # Past the module's inference fast path, which gives NaN for a query whose keys are
            # all padding where training (and ONNX) give the zero vector.
            y, _ = nn.functional.multi_head_attention_forward(
                query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), self.embed_dim,
                self.num_heads, self.in_proj_weight, self.in_proj_bias, None, None, False, self.dropout,
                self.out_proj.weight, self.out_proj.bias, training=self.training, key_padding_mask=padding,
                need_weights=False, attn_mask=mask)
            return y.transpose(0, 1)

    return Attention


def _attention_inputs(ins: list) -> tuple[list, TensorType | None]:
    """The (query[, key, value]) inputs and the key-padding mask, if the last input is one."""
    if ins and ins[-1].dtype == "bool":
        return ins[:-1], ins[-1]
    return ins, None


@register
class MultiHeadAttention(Op):
    doc = ("Scaled dot-product attention with `heads` heads over [N, L, E]: one input attends to itself, "
           "three are (query, key, value); a last bool [N, S] input masks keys out where true (padding), "
           "as torch's key_padding_mask (a query whose keys are all masked gets zero attention). E is "
           "inferred; causal=true lets position i see positions <= i only.")
    positional = ("heads",)
    arity = (1, 4)

    class Params(Params):
        heads: PosInt
        dropout: Probability = 0.0  # on the attention weights, while training
        bias: bool = True
        causal: bool = False  # position i attends only to positions <= i

    @staticmethod
    def shape(p, ins):
        ins, mask = _attention_inputs(ins)
        if len(ins) not in (1, 3):
            raise OpError(f"expects 1 input (self-attention) or 3 (query, key, value), then an optional bool "
                          f"key-padding mask, got {len(ins)} float input{'s' if len(ins) != 1 else ''}")
        for t in ins:
            check_rank(t, 3, "[N, L, E] input")
            if not is_float(t):
                raise OpError(f"expects float inputs, got {t.full()}")
        q = ins[0]
        e = static_dim(q, 2, "embedding size")
        if e % p.heads:
            raise OpError(f"embedding size {e} of {q} is not divisible by heads={p.heads}", param="heads")
        if len(ins) == 3:
            _, k, v = ins
            if k.shape[2] != e or v.shape[2] != e:
                raise OpError(f"query, key and value need one embedding size, got {q}, {k}, {v}")
            if k.shape[1] != v.shape[1]:
                raise OpError(f"key and value need one length, got {k} and {v}")
            if not q.shape[0] == k.shape[0] == v.shape[0]:
                raise OpError(f"query, key and value need one batch size, got {q}, {k}, {v}")
        if mask is not None:
            k = ins[-2] if len(ins) == 3 else q
            want = (k.shape[0], k.shape[1])
            if mask.shape != want:
                raise OpError(f"the key-padding mask must be bool[{want[0]},{want[1]}] (batch, key length), "
                              f"got {mask.full()}", hint="true marks a key to ignore, as torch's key_padding_mask")
        return [q]

    @staticmethod
    def weights(p, ins):
        e = ins[0].shape[2]
        w = {"in_proj_weight": WeightSpec((3 * e, e), ("uniform", math.sqrt(6 / (4 * e)))),
             "out_proj.weight": WeightSpec((e, e), ("uniform", 1 / math.sqrt(e)))}
        if p.bias:
            w["in_proj_bias"] = WeightSpec((3 * e,), ("zeros",))
            w["out_proj.bias"] = WeightSpec((e,), ("zeros",))
        return w

    @staticmethod
    def torch(p, ins):
        masked = _attention_inputs(ins)[1] is not None
        return _attention_module()(ins[0].shape[2], p.heads, p.dropout, p.bias, p.causal, masked)

    @staticmethod
    def onnx(ctx):
        import numpy as np
        from onnx import numpy_helper
        p, q_type = ctx.params, ctx.in_types[0]
        e = q_type.shape[2]
        h, d = p.heads, e // p.heads
        masked = _attention_inputs(ctx.in_types)[1] is not None
        xs = ctx.inputs[:-1] if masked else ctx.inputs
        scale = 1 / math.sqrt(d)
        if len(set(xs)) == 1:
            projected = _packed_projection(ctx, xs[0], e, scale)
        else:
            heads_shape = ctx.const(np.array([0, 0, h, d], dtype=np.int64), "heads_shape")
            projected = _separate_projections(ctx, xs, e, scale, heads_shape)
        # [N, L, h, d] each, to q [N, h, L, d], k_t [N, h, d, S] and v [N, h, S, d]
        q, k_t, v = (ctx.node("Transpose", [y], perm=perm)[0]
                     for y, perm in zip(projected, ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3])))
        (scores,) = ctx.node("MatMul", [q, k_t])
        if not ctx.fold:  # folded, the scale is in q's projection
            (scores,) = ctx.node("Mul", [scores, scalar(ctx, scale, xs[0], q_type)])
        if p.causal:
            # -inf strictly above the diagonal, built at run time since L and S may be symbolic.
            (dims,) = ctx.node("Shape", [scores], start=2)
            (fill,) = ctx.node("ConstantOfShape", [dims],
                               value=numpy_helper.from_array(np.array([-np.inf], np.float32)))
            (mask,) = ctx.node("Trilu", [fill, ctx.const(np.array(1, dtype=np.int64), "k")], upper=1)
            if q_type.dtype != "float32":
                (mask,) = ctx.node("CastLike", [mask, scores])
            (scores,) = ctx.node("Add", [scores, mask])
        if masked:
            # -inf where a key is padding, broadcast over heads and queries: [N, 1, 1, S].
            zero, minus_inf = (scalar(ctx, v, xs[0], q_type) for v in (0.0, -np.inf))
            (bias,) = ctx.node("Where", [ctx.inputs[-1], minus_inf, zero])
            (bias,) = ctx.node("Unsqueeze", [bias, ctx.const(np.array([1, 2], dtype=np.int64), "axes")])
            (scores,) = ctx.node("Add", [scores, bias])
        (attn,) = ctx.node("Softmax", [scores], axis=-1)
        if masked:
            # A query whose keys are all padding attends to nothing (torch's safe softmax): 0, not NaN.
            (nan,) = ctx.node("IsNaN", [attn])
            (attn,) = ctx.node("Where", [nan, scalar(ctx, 0.0, xs[0], q_type), attn])
        (y,) = ctx.node("MatMul", [attn, v])
        (y,) = ctx.node("Transpose", [y], perm=[0, 2, 1, 3])
        (y,) = ctx.node("Reshape", [y, ctx.const(np.array([0, 0, e], dtype=np.int64), "merged_shape")])
        wt = transposed(ctx, "out_proj.weight")
        if p.bias:
            (y,) = ctx.node("MatMul", [y, wt])
            ctx.node("Add", [y, ctx.weight("out_proj.bias")], ctx.outputs)
        else:
            ctx.node("MatMul", [y, wt], ctx.outputs)

    @staticmethod
    def macs(p, ins, outs):
        ins = _attention_inputs(ins)[0]
        q, k = ins[0], ins[1] if len(ins) == 3 else ins[0]
        e = q.shape[2]
        lq, lk = q.per_item_numel() // e, k.per_item_numel() // e
        return 2 * lq * e * e + 2 * lk * e * e + 2 * lq * lk * e


def _scaled_rows(w, *, rows: slice, e: int, scale: float):
    """Rows `rows` of torch's packed [3E, ...] in-projection (weight or bias), q's rows times `scale`.

    A 2-d weight comes out transposed, [E, rows], as MatMul takes it. Scaling q's projection
    instead of the scores (Q K^T / sqrt(d) = (Q / sqrt(d)) K^T) saves a node per attention.
    """
    import numpy as np
    out = np.array(w[rows], dtype=w.dtype)
    if rows.start < e:
        out[:e - rows.start] *= np.asarray(scale, dtype=w.dtype)
    return np.ascontiguousarray(out.T) if out.ndim == 2 else out


def _packed_projection(ctx, x: str, e: int, scale: float) -> list[str]:
    """Self-attention's q, k, v as [N, L, h, d] each, from one MatMul with the packed [E, 3E] weight.

    One [N, L, 3E] product, reshaped to [N, L, 3h, d] and split into three along the heads: the
    form ONNX Runtime's own optimizer ends with, written directly.
    """
    import numpy as np
    p = ctx.params
    if ctx.fold:
        fn = functools.partial(_scaled_rows, rows=slice(0, 3 * e), e=e, scale=scale)
        w = ctx.derived("in_proj_weight/packed_T", fn, ["in_proj_weight"], (e, 3 * e))
        b = ctx.derived("in_proj_bias/packed", fn, ["in_proj_bias"], (3 * e,)) if p.bias else None
    else:
        (w,) = ctx.node("Transpose", [ctx.weight("in_proj_weight")], perm=[1, 0])
        b = ctx.weight("in_proj_bias") if p.bias else None
    (y,) = ctx.node("MatMul", [x, w])
    if b:
        (y,) = ctx.node("Add", [y, b])
    h = ctx.params.heads
    (y,) = ctx.node("Reshape", [y, ctx.const(np.array([0, 0, 3 * h, e // h], dtype=np.int64), "packed_shape")])
    return ctx.node("Split", [y], n_out=3, axis=2)


def _separate_projections(ctx, xs: list[str], e: int, scale: float, heads_shape: str) -> list[str]:
    """Cross-attention's q, k and v, [N, L or S, h, d] each, from three MatMuls."""
    p = ctx.params
    if ctx.fold:
        ws, bs = [], []
        for i, part in enumerate("qkv"):
            fn = functools.partial(_scaled_rows, rows=slice(i * e, (i + 1) * e), e=e, scale=scale)
            ws.append(ctx.derived(f"in_proj_weight/{part}_T", fn, ["in_proj_weight"], (e, e)))
            bs.append(ctx.derived(f"in_proj_bias/{part}", fn, ["in_proj_bias"], (e,)) if p.bias else None)
    else:
        ws = [ctx.node("Transpose", [w], perm=[1, 0])[0]
              for w in ctx.node("Split", [ctx.weight("in_proj_weight")], n_out=3, axis=0)]
        bs = ctx.node("Split", [ctx.weight("in_proj_bias")], n_out=3, axis=0) if p.bias else [None] * 3
    out = []
    for x, w, b in zip(xs, ws, bs):
        (y,) = ctx.node("MatMul", [x, w])
        if b:
            (y,) = ctx.node("Add", [y, b])
        out.append(ctx.node("Reshape", [y, heads_shape])[0])
    return out


@functools.cache
def _recurrent_module(base: str):
    from torch import nn

    class Recurrent(getattr(nn, base)):
        """nn.LSTM / nn.GRU (state-dict keys unchanged) returning the output sequence, and with
        `return_state` the final state too: (output, h_n) for a GRU, (output, h_n, c_n) for an LSTM."""

        return_state = False

        def forward(self, x):
            y, state = super().forward(x)
            if not self.return_state:
                return y
            return (y, *state) if isinstance(state, tuple) else (y, state)

    Recurrent.__name__ = Recurrent.__qualname__ = base
    return Recurrent


class _Recurrent(Op):
    """An RNN over [N, L, features] (or [L, N, features]), returning every step's hidden state
    and, with `return_state`, the last step's state of every layer and direction."""

    positional = ("hidden",)
    gates = 0
    states: tuple[str, ...] = ()  # the final states torch returns, in its order
    # ONNX gate order as indices into torch's gate order.
    onnx_order: tuple[int, ...] = ()

    class Params(Params):
        hidden: PosInt
        layers: PosInt = 1
        bidirectional: bool = False
        batch_first: bool = True
        bias: bool = True
        dropout: Probability = 0.0  # between stacked layers, while training
        return_state: bool = False  # also output h_n (and an LSTM's c_n): [layers * directions, N, hidden]

    @classmethod
    def outputs(cls, p) -> int:
        return 1 + len(cls.states) if p.return_state else 1

    @classmethod
    def shape(cls, p, ins):
        (x,) = ins
        check_rank(x, 3, "[N, L, features] input" if p.batch_first else "[L, N, features] input")
        if not is_float(x):
            raise OpError(f"expects a float input, got {x.full()}")
        static_dim(x, 2, "feature size")
        if p.dropout and p.layers == 1:
            raise OpError("dropout acts between stacked layers, and there is only one", param="dropout",
                          hint="set layers=2 or more, or drop `dropout`")
        dirs = 2 if p.bidirectional else 1
        y = x.with_shape(x.shape[:2] + (p.hidden * dirs,))
        if not p.return_state:
            return [y]
        state = x.with_shape((p.layers * dirs, x.shape[0 if p.batch_first else 1], p.hidden))
        return [y] + [state] * len(cls.states)

    @classmethod
    def weights(cls, p, ins):
        dirs = 2 if p.bidirectional else 1
        g, h = cls.gates * p.hidden, p.hidden
        bound = 1 / math.sqrt(h)
        w = {}
        for layer in range(p.layers):
            n_in = ins[0].shape[2] if layer == 0 else h * dirs
            for sfx in ("", "_reverse")[:dirs]:
                w[f"weight_ih_l{layer}{sfx}"] = WeightSpec((g, n_in), ("uniform", bound))
                w[f"weight_hh_l{layer}{sfx}"] = WeightSpec((g, h), ("uniform", bound))
                if p.bias:
                    w[f"bias_ih_l{layer}{sfx}"] = WeightSpec((g,), ("uniform", bound))
                    w[f"bias_hh_l{layer}{sfx}"] = WeightSpec((g,), ("uniform", bound))
        return w

    @classmethod
    def torch(cls, p, ins):
        module = _recurrent_module(cls.name)(ins[0].shape[2], p.hidden, num_layers=p.layers, bias=p.bias,
                                             batch_first=p.batch_first, dropout=p.dropout,
                                             bidirectional=p.bidirectional)
        module.return_state = p.return_state
        return module

    @classmethod
    def onnx(cls, ctx):
        import numpy as np
        p = ctx.params
        dirs = ("", "_reverse")[:2 if p.bidirectional else 1]
        (x,) = ctx.inputs
        if p.batch_first:
            (x,) = ctx.node("Transpose", [x], perm=[1, 0, 2])  # ONNX RNNs read [L, N, features]
        merged = ctx.const(np.array([0, 0, len(dirs) * p.hidden], dtype=np.int64), "merged_shape")
        attrs = {"linear_before_reset": 1} if cls.name == "GRU" else {}
        finals: list[list[str]] = [[] for _ in cls.states]  # per state, each layer's [dirs, N, hidden]
        for layer in range(p.layers):
            w = stacked_gates(ctx, [[f"weight_ih_l{layer}{s}"] for s in dirs], cls.gates, cls.onnx_order,
                              f"weight_ih_l{layer}/onnx")
            r = stacked_gates(ctx, [[f"weight_hh_l{layer}{s}"] for s in dirs], cls.gates, cls.onnx_order,
                              f"weight_hh_l{layer}/onnx")
            inputs = [x, w, r]
            if p.bias:
                inputs.append(stacked_gates(ctx, [[f"bias_ih_l{layer}{s}", f"bias_hh_l{layer}{s}"] for s in dirs],
                                            cls.gates, cls.onnx_order, f"bias_l{layer}/onnx"))
            (y, *states) = ctx.node(cls.name, inputs, n_out=1 + (len(cls.states) if p.return_state else 0),
                                    hidden_size=p.hidden,
                                    direction="bidirectional" if p.bidirectional else "forward", **attrs)
            for final, state in zip(finals, states):
                final.append(state)
            # Y is [L, dirs, N, hidden]; torch gives [L, N, dirs * hidden].
            (y,) = ctx.node("Transpose", [y], perm=[0, 2, 1, 3])
            last = layer == p.layers - 1 and not p.batch_first
            (x,) = ctx.node("Reshape", [y, merged], ctx.outputs[:1] if last else None)
        if p.batch_first:
            ctx.node("Transpose", [x], ctx.outputs[:1], perm=[1, 0, 2])
        if p.return_state:
            # torch stacks the layers' states as [layers * dirs, N, hidden], layer by layer.
            for final, out in zip(finals, ctx.outputs[1:]):
                if len(final) == 1:
                    ctx.node("Identity", final, [out])
                else:
                    ctx.node("Concat", final, [out], axis=0)

    @classmethod
    def macs(cls, p, ins, outs):
        x = ins[0]
        steps = x.per_item_numel() // x.shape[2]
        dirs = 2 if p.bidirectional else 1
        total, n_in = 0, x.shape[2]
        for _ in range(p.layers):
            total += dirs * steps * cls.gates * p.hidden * (n_in + p.hidden)
            n_in = dirs * p.hidden
        return total


@register
class LSTM(_Recurrent):
    doc = ("A long short-term memory RNN, returning the output sequence [N, L, hidden * directions]; with "
           "return_state=true also h_n and c_n, each [layers * directions, N, hidden] as torch gives them.")
    gates = 4
    states = ("h_n", "c_n")
    onnx_order = (0, 3, 1, 2)  # torch: input, forget, cell, output; ONNX: input, output, forget, cell


@register
class GRU(_Recurrent):
    doc = ("A gated recurrent unit RNN, returning the output sequence [N, L, hidden * directions]; with "
           "return_state=true also h_n, [layers * directions, N, hidden] as torch gives it.")
    gates = 3
    states = ("h_n",)
    onnx_order = (1, 0, 2)  # torch: reset, update, new; ONNX: update, reset, hidden
