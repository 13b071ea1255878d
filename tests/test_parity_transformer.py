"""ONNX Runtime against PyTorch for the vision-transformer ops, over random parameters and shapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.errors import OpError
from netspec.ops import get_op
from netspec.types import TensorType
from tests.parity import assert_parity

F = "float32"
small = st.integers


def f32(*shape) -> TensorType:
    return TensorType(F, ("N", *shape))


@st.composite
def sequence_case(draw, params=None):
    p = draw(params) if params is not None else {}
    return p, [f32(draw(small(1, 6)), draw(small(1, 8)))]


@st.composite
def select_case(draw):
    rank = draw(small(2, 4))
    shape = [draw(small(1, 5)) for _ in range(rank - 1)]
    axis = draw(small(0, rank - 1))
    dim = axis - rank if draw(st.booleans()) else axis
    if axis == 0:
        # The symbolic batch: only the first and the last are sure to exist.
        return {"dim": dim, "index": draw(st.sampled_from([0, -1]))}, [f32(*shape)]
    n = shape[axis - 1]
    return {"dim": dim, "index": draw(small(-n, n - 1))}, [f32(*shape)]


CASES = {
    "ClassToken": sequence_case(st.fixed_dictionaries({"tokens": small(1, 3)})),
    "PositionEmbedding": sequence_case(),
    "Select": select_case(),
}


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=20, deadline=None, derandomize=True)
@given(data=st.data())
def test_parity(case, data):
    params, in_types = data.draw(CASES[case])
    batch = data.draw(small(1, 3), label="batch")
    assert_parity(case, params, in_types, seed=data.draw(small(0, 2**16), label="seed"), batch=batch)


# AdaptiveAvgPool2d to a grid that does not divide the input: overlapping windows (GoogLeNet's
# auxiliary heads pool 14x14 to 4x4) and replicated ones (VGG pools a 1x1 map to 7x7).
EDGES = [
    ("AdaptiveAvgPool2d", {"output_size": 4}, [f32(3, 14, 14)]),
    ("AdaptiveAvgPool2d", {"output_size": 7}, [f32(2, 1, 1)]),
    ("AdaptiveAvgPool2d", {"output_size": (3, 5)}, [f32(2, 7, 6)]),
    ("Select", {"dim": 0, "index": -1}, [TensorType(F, (3, "N", 2))]),
    # The first and the last of a symbolic dim: an RNN's last step over a sequence of any length.
    ("Select", {"dim": 1, "index": -1}, [TensorType(F, ("N", "L", 2))]),
    ("Select", {"dim": 0, "index": 0}, [f32(3)]),
]


@pytest.mark.parametrize("op_name,params,in_types", EDGES)
def test_edge(op_name, params, in_types):
    assert_parity(op_name, params, in_types, seed=5, batch=2)


@pytest.mark.parametrize("op_name,params,in_type,message", [
    ("ClassToken", {}, f32(4), "rank-3"),
    ("ClassToken", {}, TensorType(F, ("N", "L", 4)), "symbolic"),
    ("PositionEmbedding", {}, TensorType("int64", ("N", 3, 4)), "float"),
    ("Select", {"dim": 1, "index": 3}, f32(3, 2), "out of range"),
    ("Select", {"dim": 3, "index": 0}, f32(3, 2), "dim=3"),
    ("Select", {"dim": 0, "index": 1}, f32(3), "only known at run time"),
    ("Select", {"dim": 1, "index": -2}, TensorType(F, ("N", "L", 3)), "index -2 may not exist"),
])
def test_shape_errors(op_name, params, in_type, message):
    op = get_op(op_name)
    with pytest.raises(OpError, match=message):
        op.shape(op.Params(**params), [in_type])
