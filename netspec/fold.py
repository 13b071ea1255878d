"""Folding for inference graphs: weights stored in the form the graph consumes them.

A runtime folds a `Transpose` of a constant or a BatchNorm after a convolution when it loads a
model, every time, and only if it knows how; a file that is already folded is smaller, loads
faster and runs the same everywhere. Folded weights are `Derived`: computed from the model's
weights when the file is written, one tensor at a time, so folding never holds a second copy of
the weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import onnx
from onnx import helper

# An initializer as the emitter holds it: the array itself, or how to compute it.
Tensor = Union[np.ndarray, "Derived"]


@dataclass(frozen=True, eq=False)
class Derived:
    """An initializer computed from others (arrays or Derived) when the model is written."""

    fn: Callable[..., np.ndarray]
    sources: tuple
    shape: tuple[int, ...]
    dtype: np.dtype

    def array(self) -> np.ndarray:
        out = np.ascontiguousarray(self.fn(*(materialize(s) for s in self.sources)), dtype=self.dtype)
        if out.shape != tuple(self.shape):
            # A lowering that declared the wrong shape is a bug in netspec, not the user's input.
            raise RuntimeError(f"a folded weight came out {out.shape}, declared {tuple(self.shape)}")
        return out


def materialize(t: Tensor) -> np.ndarray:
    return t.array() if isinstance(t, Derived) else np.asarray(t)


def shape_of(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def dtype_of(t: Tensor) -> np.dtype:
    return np.dtype(t.dtype)


# --- BatchNorm into the layer before it -----------------------------------------------------------

def _scale_shift(gamma, beta, mean, var, eps):
    """BatchNorm as y = x * scale + shift, per channel, computed in float64."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return scale, np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale


def _folded_weight(w, gamma, beta, mean, var, *, eps, axis):
    scale, _ = _scale_shift(gamma, beta, mean, var, eps)
    shape = [1] * w.ndim
    shape[axis] = -1
    # In the weight's own dtype: one rounding, as a runtime folding it would, and no float64 copy
    # of a large weight.
    return w * scale.astype(w.dtype).reshape(shape)


def _folded_bias(gamma, beta, mean, var, *bias, eps, dtype):
    scale, shift = _scale_shift(gamma, beta, mean, var, eps)
    b = np.asarray(bias[0], np.float64) if bias else 0.0
    return (b * scale + shift).astype(dtype)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _channel_axis(node: onnx.NodeProto) -> int | None:
    """The weight axis holding the output channels of a Conv or Gemm whose output BatchNorm can fold into."""
    attrs = _attrs(node)
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm" and not attrs.get("transA", 0) and attrs.get("alpha", 1.0) == 1.0 \
            and attrs.get("beta", 1.0) == 1.0:
        return 0 if attrs.get("transB", 0) else 1
    return None


def fold_batchnorm(nodes: list[onnx.NodeProto], inits: dict[str, Tensor], keep: set[str],
                   fresh: Callable[[str], str]) -> set[str]:
    """Fold each inference BatchNormalization into the Conv or Gemm that alone feeds it.

    Edits `nodes` and `inits` in place: the Conv (or Gemm) takes folded weights and produces the
    BatchNorm's output, and the BatchNorm and the weights only it used go. `keep` holds value
    names that must survive (graph outputs); `fresh` makes an unused value name. Returns the names
    of the values that no longer exist.
    """
    producer = {out: node for node in nodes for out in node.output}
    uses: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    folded, gone = [], set()
    for bn in nodes:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or _attrs(bn).get("training_mode", 0):
            continue
        x = bn.input[0]
        prev = producer.get(x)
        if prev is None or uses.get(x) != 1 or x in keep:
            continue
        axis = _channel_axis(prev)
        stats = list(bn.input[1:5])
        weight = prev.input[1]
        bias = prev.input[2] if len(prev.input) > 2 and prev.input[2] else None
        consts = [weight, *stats] + ([bias] if bias else [])
        if axis is None or not all(name in inits for name in consts) \
                or uses.get(weight) != 1 or (bias and uses.get(bias) != 1):
            continue
        w = inits[weight]
        if len(shape_of(w)) < 2 or dtype_of(w) != np.float32:
            continue
        channels = shape_of(w)[axis]
        if any(shape_of(inits[s]) != (channels,) for s in stats + ([bias] if bias else [])):
            continue
        eps = _attrs(bn).get("epsilon", 1e-5)
        sources = tuple(inits[s] for s in stats)
        new_w = fresh(f"{weight}/bn_folded")
        inits[new_w] = Derived(functools.partial(_folded_weight, eps=eps, axis=axis),
                               (w, *sources), shape_of(w), dtype_of(w))
        new_b = fresh(f"{bias}/bn_folded" if bias else f"{weight.rsplit('.', 1)[0]}.bias/bn_folded")
        inits[new_b] = Derived(functools.partial(_folded_bias, eps=eps, dtype=np.float32),
                               sources + ((inits[bias],) if bias else ()), (channels,), np.dtype(np.float32))
        prev.input[1] = new_w
        if bias:
            prev.input[2] = new_b
        else:
            prev.input.append(new_b)
        prev.output[0] = bn.output[0]
        folded.append(bn)
        gone.add(x)
        for name in consts:
            uses[name] -= 1
    dropped = {id(bn) for bn in folded}
    nodes[:] = [n for n in nodes if id(n) not in dropped]
    for name, count in uses.items():
        if count == 0 and name in inits:
            del inits[name]
    return gone


# --- Identity -------------------------------------------------------------------------------------

def drop_identities(nodes: list[onnx.NodeProto], keep: set[str]) -> set[str]:
    """Remove Identity nodes (Dropout at inference, Identity layers): their readers read the source.

    An Identity producing a value in `keep` (a graph output) stays. Returns the values that no
    longer exist.
    """
    alias: dict[str, str] = {}
    kept = []
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
        if node.op_type == "Identity" and node.output[0] not in keep:
            alias[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    nodes[:] = kept
    return set(alias)
