"""ONNX Runtime against PyTorch for every layer op, over random parameters and shapes."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netspec.errors import OpError
from netspec.ops import get_op
from netspec.types import TensorType
from tests.parity import assert_parity

F = "float32"
small = st.integers


def f32(*shape) -> TensorType:
    return TensorType(F, ("N", *shape))


def one_or_tuple(draw, values: list[int]):
    """A scalar when all values agree and the draw says so, else the tuple: both spellings get tested."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return tuple(values)


@st.composite
def conv_case(draw, nd: int, depthwise: bool = False):
    if depthwise:
        c_in = draw(small(1, 6))
        groups, c_out = c_in, c_in * draw(small(1, 2))
    else:
        groups = draw(small(1, 3))
        c_in, c_out = groups * draw(small(1, 3)), groups * draw(small(1, 3))
    max_size = 12 if nd < 3 else 6
    k = [draw(small(1, 3)) for _ in range(nd)]
    d = [draw(small(1, 2)) for _ in range(nd)]
    stride = [draw(small(1, 2)) for _ in range(nd)]
    padding_choice = draw(st.sampled_from(["int", "same", "valid"]))
    if padding_choice == "same":
        stride = [1] * nd
        padding = "same"
        pads = [0] * nd
    elif padding_choice == "valid":
        padding, pads = "valid", [0] * nd
    else:
        pads = [draw(small(0, 2)) for _ in range(nd)]
        padding = one_or_tuple(draw, pads)
    sizes = [draw(small(max(3, di * (ki - 1) + 1 - 2 * pi), max_size)) for ki, di, pi in zip(k, d, pads)]
    params = {"out_channels": c_out, "kernel": one_or_tuple(draw, k), "stride": one_or_tuple(draw, stride),
              "padding": padding, "dilation": one_or_tuple(draw, d), "groups": groups,
              "bias": draw(st.booleans()),
              "padding_mode": draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))}
    return params, [f32(c_in, *sizes)]


@st.composite
def conv_transpose_case(draw):
    groups = draw(small(1, 2))
    c_in, c_out = groups * draw(small(1, 3)), groups * draw(small(1, 3))
    k = [draw(small(1, 3)) for _ in range(2)]
    s = [draw(small(1, 3)) for _ in range(2)]
    d = [draw(small(1, 2)) for _ in range(2)]
    op = [draw(small(0, max(si, di) - 1)) for si, di in zip(s, d)]
    sizes = [draw(small(2, 6)) for _ in range(2)]
    # Keep every output length positive: (n-1)s - 2p + d(k-1) + op + 1 >= 1.
    pad = [draw(small(0, min(2, ((n - 1) * si + di * (ki - 1) + oi) // 2)))
           for n, si, di, ki, oi in zip(sizes, s, d, k, op)]
    params = {"out_channels": c_out, "kernel": tuple(k), "stride": tuple(s), "padding": tuple(pad),
              "output_padding": tuple(op), "dilation": tuple(d), "groups": groups, "bias": draw(st.booleans())}
    return params, [f32(c_in, *sizes)]


@st.composite
def linear_case(draw):
    rank = draw(small(2, 4))
    middle = [draw(small(1, 4)) for _ in range(rank - 2)]
    return ({"out_features": draw(small(1, 8)), "bias": draw(st.booleans())},
            [f32(*middle, draw(small(1, 8)))])


@st.composite
def batchnorm_case(draw, ranks):
    rank = draw(st.sampled_from(ranks))
    shape = [draw(small(1, 8))] + [draw(small(1, 6)) for _ in range(rank - 2)]
    params = {"eps": draw(st.sampled_from([1e-5, 1e-3])), "momentum": draw(st.sampled_from([0.1, 0.5])),
              "affine": draw(st.booleans())}
    return params, [f32(*shape)]


@st.composite
def layernorm_case(draw):
    rank = draw(small(2, 4))
    shape = [draw(small(1, 6)) for _ in range(rank - 1)]
    params = {"dims": draw(small(1, rank - 1)), "eps": draw(st.sampled_from([1e-5, 1e-3])),
              "elementwise_affine": draw(st.booleans()), "bias": draw(st.booleans())}
    return params, [f32(*shape)]


@st.composite
def groupnorm_case(draw):
    groups = draw(small(1, 4))
    rank = draw(small(2, 4))
    shape = [groups * draw(small(1, 2))] + [draw(small(1, 5)) for _ in range(rank - 2)]
    if math.prod(shape) == groups:
        shape[0] *= 2  # one value per group is refused by the shape rule
    return ({"groups": groups, "eps": draw(st.sampled_from([1e-5, 1e-3])), "affine": draw(st.booleans())},
            [f32(*shape)])


@st.composite
def pool_case(draw, nd: int, kind: str):
    k = [draw(small(1, 4)) for _ in range(nd)]
    pads = [draw(small(0, ki // 2)) for ki in k]
    d = [draw(small(1, 2)) for _ in range(nd)] if kind == "max" else [1] * nd
    sizes = [draw(small(max(1, di * (ki - 1) + 1 - 2 * pi), 12)) for ki, di, pi in zip(k, d, pads)]
    params = {"kernel": one_or_tuple(draw, k), "padding": one_or_tuple(draw, pads),
              "ceil_mode": draw(st.booleans())}
    if draw(st.booleans()):
        params["stride"] = one_or_tuple(draw, [draw(small(1, 3)) for _ in range(nd)])
    if kind == "max":
        params["dilation"] = one_or_tuple(draw, d)
    else:
        params["count_include_pad"] = draw(st.booleans())
    in_types = [f32(draw(small(1, 4)), *sizes)]
    op = get_op(f"{'Max' if kind == 'max' else 'Avg'}Pool{nd}d")
    try:  # a dilated window that sees only padding is refused; draw again
        op.shape(op.Params(**params), in_types)
    except OpError:
        assume(False)
    return params, in_types


@st.composite
def adaptive_case(draw):
    out = [draw(small(1, 3)) for _ in range(2)]
    sizes = [o * draw(small(1, 4)) for o in out]
    return {"output_size": one_or_tuple(draw, out)}, [f32(draw(small(1, 4)), *sizes)]


@st.composite
def any_case(draw, min_rank: int = 1, params=None):
    rank = draw(small(min_rank, 4))
    return dict(params or {}), [f32(*[draw(small(1, 6)) for _ in range(rank - 1)])]


CASES = {
    "ReLU": any_case(),
    "Conv1d": conv_case(1),
    "Conv2d": conv_case(2),
    "Conv3d": conv_case(3),
    "ConvTranspose2d": conv_transpose_case(),
    "Linear": linear_case(),
    "BatchNorm1d": batchnorm_case((2, 3)),
    "BatchNorm2d": batchnorm_case((4,)),
    "LayerNorm": layernorm_case(),
    "GroupNorm": groupnorm_case(),
    "MaxPool1d": pool_case(1, "max"),
    "MaxPool2d": pool_case(2, "max"),
    "AvgPool1d": pool_case(1, "avg"),
    "AvgPool2d": pool_case(2, "avg"),
    "AdaptiveAvgPool2d": adaptive_case(),
    "GlobalAvgPool": any_case(min_rank=3),
}
# Cases beyond one per op, keyed "Op:variant"; test_registry reads the op name before the colon.
EXTRA_CASES = {
    "Conv2d:depthwise": conv_case(2, depthwise=True),
}


@pytest.mark.parametrize("case", sorted(CASES) + sorted(EXTRA_CASES))
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_parity(case, data):
    strategy = CASES[case] if case in CASES else EXTRA_CASES[case]
    params, in_types, *options = data.draw(strategy)
    batch = data.draw(small(1, 3), label="batch")
    assert_parity(case.split(":")[0], params, in_types, seed=data.draw(small(0, 2**16), label="seed"),
               batch=batch, **(options[0] if options else {}))


# The last window of a ceil_mode pool that would start in the right padding: torch drops it,
# and ONNX runtimes have not always agreed.
CEIL_EDGES = [
    ("MaxPool1d", {"kernel": 2, "padding": 1, "ceil_mode": True}, [f32(2, 5)]),
    ("MaxPool2d", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, [f32(2, 5, 7)]),
    ("MaxPool2d", {"kernel": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}, [f32(2, 6, 6)]),
    ("AvgPool1d", {"kernel": 2, "padding": 1, "ceil_mode": True}, [f32(2, 5)]),
    ("AvgPool2d", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, [f32(2, 5, 7)]),
    ("AvgPool2d", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
     [f32(2, 5, 7)]),
    ("AvgPool2d", {"kernel": 3, "stride": 2, "ceil_mode": True}, [f32(2, 6, 8)]),
]


@pytest.mark.parametrize("op_name,params,in_types", CEIL_EDGES)
def test_ceil_mode_edge(op_name, params, in_types):
    assert_parity(op_name, params, in_types, seed=1, batch=2)
