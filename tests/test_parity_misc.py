"""ONNX Runtime against PyTorch for the activations, shape ops, merges, sequence ops, resampling
and losses, over random parameters and shapes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.types import TensorType
from tests.parity import assert_parity

# A loss case lists the prediction only: the harness derives the target's type from the op.

F = "float32"
small = st.integers


def f32(*shape) -> TensorType:
    return TensorType(F, ("N", *shape))


@st.composite
def any_case(draw, params=None, min_rank: int = 1):
    rank = draw(small(min_rank, 4))
    p = draw(params) if isinstance(params, st.SearchStrategy) else dict(params or {})
    return p, [f32(*[draw(small(1, 5)) for _ in range(rank - 1)])]


@st.composite
def along_dim_case(draw):
    rank = draw(small(1, 4))
    return {"dim": draw(small(-rank, rank - 1))}, [f32(*[draw(small(1, 5)) for _ in range(rank - 1)])]


@st.composite
def prelu_case(draw):
    per_channel = draw(st.booleans())
    rank = draw(small(2 if per_channel else 1, 4))
    params = {"per_channel": per_channel, "init": draw(st.sampled_from([0.25, 0.1]))}
    return params, [f32(*[draw(small(1, 5)) for _ in range(rank - 1)])]


@st.composite
def flatten_case(draw):
    rank = draw(small(2, 5))
    start = draw(small(1, rank - 1))
    end = draw(small(start, rank - 1))
    # Both spellings of an axis: counted from the left and from the right.
    start = start - rank if draw(st.booleans()) else start
    end = end - rank if draw(st.booleans()) else end
    return {"start_dim": start, "end_dim": end}, [f32(*[draw(small(1, 4)) for _ in range(rank - 1)])]


def _group(draw, factors: list[int]) -> list[int]:
    """Multiply neighbouring factors together at random cut points."""
    dims, cur = [], 1
    for i, f in enumerate(factors):
        cur *= f
        if i == len(factors) - 1 or draw(st.booleans()):
            dims.append(cur)
            cur = 1
    return dims


@st.composite
def reshape_case(draw):
    factors = draw(st.lists(small(1, 4), min_size=1, max_size=4))
    shape = _group(draw, factors)
    if draw(st.booleans()):
        shape[draw(small(0, len(shape) - 1))] = -1
    x = f32(*_group(draw, draw(st.permutations(factors))))
    if draw(st.booleans()):
        # The whole shape, naming the symbolic batch somewhere in it (and a second symbolic dim).
        x = x.with_shape(x.shape + (("L",) if draw(st.booleans()) else ()))
        names = [d for d in x.shape if isinstance(d, str)]
        for name in names:
            shape.insert(draw(small(0, len(shape))), name)
    return {"shape": shape}, [x]


@st.composite
def permute_case(draw):
    rank = draw(small(1, 4))
    return {"dims": draw(st.permutations(range(rank)))}, [f32(*[draw(small(1, 4)) for _ in range(rank - 1)])]


@st.composite
def transpose_case(draw):
    rank = draw(small(1, 4))
    return ({"dim0": draw(small(-rank, rank - 1)), "dim1": draw(small(-rank, rank - 1))},
            [f32(*[draw(small(1, 4)) for _ in range(rank - 1)])])


@st.composite
def unsqueeze_case(draw):
    rank = draw(small(1, 3))
    return {"dim": draw(small(-rank - 1, rank))}, [f32(*[draw(small(1, 4)) for _ in range(rank - 1)])]


@st.composite
def squeeze_case(draw):
    dims = [draw(small(1, 4)) for _ in range(draw(small(0, 2)))]
    at = draw(small(0, len(dims)))
    dims.insert(at, 1)
    rank = len(dims) + 1
    dim = at + 1 if draw(st.booleans()) else at + 1 - rank
    return {"dim": dim}, [f32(*dims)]


@st.composite
def broadcast_case(draw, max_inputs: int):
    """Inputs that broadcast to one shape: some dims set to 1, some leading dims (the batch too) dropped."""
    full = ["N"] + [draw(small(2, 4)) for _ in range(draw(small(0, 3)))]
    ins = []
    for _ in range(draw(small(2, max_inputs))):
        dims = [d if isinstance(d, str) or draw(small(0, 2)) else 1 for d in full]
        dims = dims[draw(small(0, len(dims) - 1)):] if draw(st.booleans()) else dims
        ins.append(TensorType(F, tuple(dims)))
    if not any(t.rank == len(full) for t in ins):
        ins[0] = TensorType(F, tuple(full))
    return {}, ins


@st.composite
def concat_case(draw):
    rank = draw(small(2, 4))
    axis = draw(small(1, rank - 1))
    base = [draw(small(1, 4)) for _ in range(rank - 1)]
    ins = []
    for _ in range(draw(small(2, 4))):
        dims = list(base)
        dims[axis - 1] = draw(small(1, 4))
        ins.append(f32(*dims))
    dim = axis - rank if draw(st.booleans()) else axis
    return {"dim": dim}, ins


@st.composite
def stack_case(draw):
    rank = draw(small(1, 3))
    x = f32(*[draw(small(1, 4)) for _ in range(rank - 1)])
    return {"dim": draw(small(-rank - 1, rank))}, [x] * draw(small(2, 3))


@st.composite
def split_case(draw):
    rank = draw(small(2, 4))
    axis = draw(small(1, rank - 1))
    dims = [draw(small(1, 4)) for _ in range(rank - 1)]
    if draw(st.booleans()):
        count = draw(small(2, 3))
        dims[axis - 1] = count * draw(small(1, 3))
        sizes = count
    else:
        sizes = draw(st.lists(small(1, 3), min_size=2, max_size=4))
        dims[axis - 1] = sum(sizes)
    return {"sizes": sizes, "dim": axis - rank if draw(st.booleans()) else axis}, [f32(*dims)]


@st.composite
def matmul_case(draw):
    n, k, m = (draw(small(1, 4)) for _ in range(3))
    if draw(st.booleans()):
        return {}, [f32(n, k), TensorType(F, (k, m))]
    h = draw(small(1, 3))
    return {}, [f32(h, n, k), TensorType(F, (draw(st.sampled_from([1, h])), k, m))]


@st.composite
def embedding_case(draw):
    num = draw(small(1, 10))
    params = {"num_embeddings": num, "embedding_dim": draw(small(1, 5))}
    if draw(st.booleans()):
        params["padding_idx"] = draw(small(-num, num - 1))
    dtype = draw(st.sampled_from(["int64", "int32"]))
    shape = ("N", *[draw(small(1, 4)) for _ in range(draw(small(0, 2)))])
    return params, [TensorType(dtype, shape)], {"int_range": (0, num)}


@st.composite
def attention_case(draw):
    heads = draw(small(1, 3))
    e = heads * draw(small(1, 3))
    params = {"heads": heads, "bias": draw(st.booleans()), "causal": draw(st.booleans())}
    q = f32(draw(small(1, 4)), e)
    ins = [q] if draw(st.booleans()) else [q, *[f32(draw(small(1, 4)), e)] * 2]
    if draw(st.booleans()):
        # A key-padding mask over the keys (true = padding); random, so some rows are fully masked.
        ins.append(TensorType("bool", ("N", ins[-1].shape[1])))
    return params, ins


@st.composite
def recurrent_case(draw):
    layers = draw(small(1, 2))
    params = {"hidden": draw(small(1, 4)), "layers": layers, "bidirectional": draw(st.booleans()),
              "batch_first": draw(st.booleans()), "bias": draw(st.booleans()),
              "dropout": 0.25 if layers > 1 and draw(st.booleans()) else 0.0,
              "return_state": draw(st.booleans())}
    steps, features = draw(small(1, 4)), draw(small(1, 4))
    x = f32(steps, features) if params["batch_first"] else TensorType(F, (steps, "N", features))
    return params, [x]


@st.composite
def upsample_case(draw):
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    params: dict = {"mode": mode}
    # Scales that are exact in float32, so that torch and ONNX agree on the output size.
    scale = st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])
    choice = draw(st.sampled_from(["scale", "pair", "size"]))
    if choice == "scale":
        params["scale_factor"] = draw(scale)
    elif choice == "pair":
        params["scale_factor"] = [draw(scale), draw(scale)]
    else:
        params["size"] = draw(st.one_of(small(1, 8), st.tuples(small(1, 8), small(1, 8))))
    if mode == "bilinear" and draw(st.booleans()):
        params["align_corners"] = draw(st.booleans())
    return params, [f32(draw(small(1, 3)), draw(small(2, 6)), draw(small(2, 6)))]


@st.composite
def class_index_case(draw, smoothing: bool):
    classes = draw(small(2, 5))
    params = {}
    if draw(st.booleans()):
        params["ignore_index"] = draw(small(0, classes - 1))
    if smoothing and draw(st.booleans()):
        params["label_smoothing"] = draw(st.sampled_from([0.1, 0.25]))
    spatial = [draw(small(1, 3)) for _ in range(draw(small(0, 2)))]
    return params, [f32(classes, *spatial)], {"int_range": (0, classes)}


@st.composite
def bce_case(draw):
    _, (x,) = draw(any_case())
    choice = draw(st.sampled_from(["none", "scalar", "list"]))
    if choice == "scalar":
        return {"pos_weight": draw(st.sampled_from([0.5, 2.0]))}, [x]
    if choice == "list" and x.rank > 1:
        return {"pos_weight": [draw(st.sampled_from([0.5, 1.0, 3.0])) for _ in range(x.shape[-1])]}, [x]
    return {}, [x]


@st.composite
def normalize_case(draw):
    c = draw(small(1, 4))
    n = draw(st.sampled_from([1, c]))
    mean = draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n))
    std = draw(st.lists(st.floats(0.1, 2), min_size=n, max_size=n))
    spatial = [draw(small(1, 4)) for _ in range(draw(small(0, 2)))]
    return {"mean": mean, "std": std}, [f32(c, *spatial)]


CASES = {
    "Normalize": normalize_case(),
    "ReLU": any_case(),
    "LeakyReLU": any_case(st.fixed_dictionaries({"negative_slope": st.sampled_from([0.01, 0.2, 1.5])})),
    "GELU": any_case(st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])})),
    "SiLU": any_case(),
    "Sigmoid": any_case(),
    "Tanh": any_case(),
    "Softmax": along_dim_case(),
    "LogSoftmax": along_dim_case(),
    "ReLU6": any_case(),
    "Hardswish": any_case(),
    "Hardsigmoid": any_case(),
    "ELU": any_case(st.fixed_dictionaries({"alpha": st.sampled_from([1.0, 0.5, 2.0])})),
    "Softplus": any_case(st.fixed_dictionaries({"beta": st.sampled_from([1.0, 2.0, 0.5]),
                                                "threshold": st.sampled_from([20.0, 1.0])})),
    "PReLU": prelu_case(),
    "Flatten": flatten_case(),
    "Reshape": reshape_case(),
    "Permute": permute_case(),
    "Transpose": transpose_case(),
    "Unsqueeze": unsqueeze_case(),
    "Squeeze": squeeze_case(),
    "Identity": any_case(),
    "Dropout": any_case(st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.1, 0.5])})),
    "Add": broadcast_case(4),
    "Mul": broadcast_case(3),
    "Sub": broadcast_case(2),
    "Concat": concat_case(),
    "Stack": stack_case(),
    "Split": split_case(),
    "MatMul": matmul_case(),
    "Embedding": embedding_case(),
    "MultiHeadAttention": attention_case(),
    "LSTM": recurrent_case(),
    "GRU": recurrent_case(),
    "Upsample": upsample_case(),
    "CrossEntropy": class_index_case(smoothing=True),
    "NLL": class_index_case(smoothing=False),
    "MSE": any_case(),
    "L1": any_case(),
    "BCEWithLogits": bce_case(),
}


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_parity(case, data):
    params, in_types, *options = data.draw(CASES[case])
    batch = data.draw(small(1, 3), label="batch")
    assert_parity(case, params, in_types, seed=data.draw(small(0, 2**16), label="seed"), batch=batch,
               **(options[0] if options else {}))


# Fixed cases for what random draws may miss.
EDGES = [
    # Symbolic dims that move: the ONNX Reshape must read them at run time.
    ("Flatten", {"start_dim": 0, "end_dim": 1}, [TensorType(F, (3, 4, "N", "L"))], {}),
    # Sequence lengths as symbolic as the batch.
    ("MultiHeadAttention", {"heads": 2, "causal": True}, [f32("L", 4), f32("S", 4), f32("S", 4)], {}),
    ("GRU", {"hidden": 3, "layers": 3, "bidirectional": True}, [f32("L", 2)], {}),
    # The final states of every layer and direction, stacked as torch does.
    ("LSTM", {"hidden": 3, "layers": 3, "bidirectional": True, "return_state": True}, [f32("L", 2)], {}),
    ("GRU", {"hidden": 2, "layers": 2, "batch_first": False, "return_state": True},
     [TensorType(F, ("L", "N", 3))], {}),
    # Reshapes that name the symbolic dims: the batch kept, two kept, two swapped.
    ("Reshape", {"shape": ["N", 4, -1]}, [f32(2, 2, 3)], {}),
    ("Reshape", {"shape": ["N", "L", 2, -1]}, [f32("L", 6)], {}),
    ("Reshape", {"shape": ["L", "N", 6]}, [f32("L", 2, 3)], {}),
    ("Reshape", {"shape": [2, -1]}, [TensorType(F, (2, 3, 2))], {}),
    # A key-padding mask with causal masking, lengths symbolic.
    ("MultiHeadAttention", {"heads": 2, "causal": True}, [f32("L", 4), TensorType("bool", ("N", "L"))], {}),
    # Every target ignored: both sides give NaN.
    ("CrossEntropy", {"ignore_index": 1, "label_smoothing": 0.2}, [f32(3)], {"int_range": (1, 2)}),
]


@pytest.mark.parametrize("op_name,params,in_types,options", EDGES)
def test_edge(op_name, params, in_types, options):
    assert_parity(op_name, params, in_types, seed=3, batch=2, **options)


def test_bce_is_stable_for_large_logits():
    """Where a naive log(1 + exp(-x)) overflows."""
    import numpy as np
    import torch

    from netspec.lower_onnx import to_onnx
    from netspec.lower_torch import loss_module, to_module
    from netspec.weights import state_dict_arrays
    from tests.parity import one_op_graph, ort_session

    g, _, _ = one_op_graph("BCEWithLogits", {"pos_weight": 2.0}, [f32(3)])
    x = np.array([[-200.0, 0.0, 200.0], [90.0, -90.0, 1.0]], dtype=np.float32)
    y = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    model = to_onnx(g, state_dict_arrays(to_module(g)), include_losses=True)
    (ours,) = ort_session(model).run(["loss"], {"x0": x, "target": y})
    total, _ = loss_module(g)({"pred": torch.from_numpy(x)}, {"target": torch.from_numpy(y)})
    assert math.isfinite(float(ours))
    np.testing.assert_allclose(ours, total.numpy(), rtol=1e-5)
