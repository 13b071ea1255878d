"""Shape rules of the activation, shape, merge, sequence, resample and loss ops: what they infer,
and the messages they give for a mistake. No torch needed."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from netspec import graph as G
from netspec.errors import NetspecError, ShapeProblem
from netspec.infer import infer
from netspec.ops import get_op
from netspec.types import TensorType

F = "float32"


def t(*shape, dtype=F) -> TensorType:
    return TensorType(dtype, tuple(shape))


def infer_one(op_name: str, params: dict, in_types: list[TensorType], target: TensorType | None = None):
    """Infer a graph of one op over inputs x0, x1, ...; return the op's output types (a loss: and its target's)."""
    op = get_op(op_name)
    g = G.new_graph("t", "<test>")
    refs = [G.add_input(g, f"x{i}", ti) for i, ti in enumerate(in_types)]
    if op.kind == "loss":
        G.add_output(g, "pred", refs[0])
        tgt = G.add_target(g, "y", target)
        G.add_op(g, "loss", op_name, op.Params(**params), [refs[0], tgt], kind="loss")
        infer(g)
        return g.nodes["loss"]["types"], g.nodes["y"]["types"][0]
    G.add_op(g, "layer", op_name, op.Params(**params), refs)
    infer(g)
    return g.nodes["layer"]["types"]


def shape_error(op_name, params, in_types, target=None) -> str:
    with pytest.raises(ShapeProblem) as e:
        infer_one(op_name, params, in_types, target)
    return str(e.value)


# --- what the rules infer ---------------------------------------------------------------------

@pytest.mark.parametrize("op_name,params,in_types,want", [
    ("Add", {}, [t("N", 1, 4), t(3, 1)], [t("N", 3, 4)]),
    ("Add", {}, [t("N", 3), t(1, 3), t(3)], [t("N", 3)]),
    ("Mul", {}, [t(1, 5), t("N", 1)], [t("N", 5)]),
    ("Concat", {}, [t("N", 2, 7), t("N", 3, 7)], [t("N", 5, 7)]),
    ("Concat", {"dim": -1}, [t("N", 2, 7), t("N", 2, 1)], [t("N", 2, 8)]),
    ("Stack", {"dim": 1}, [t("N", 4), t("N", 4), t("N", 4)], [t("N", 3, 4)]),
    ("Split", {"sizes": [1, 3]}, [t("N", 4, 2)], [t("N", 1, 2), t("N", 3, 2)]),
    ("Split", {"sizes": 2, "dim": -1}, [t("N", 4, 6)], [t("N", 4, 3), t("N", 4, 3)]),
    ("Flatten", {}, [t("N", 3, 4, 5)], [t("N", 60)]),
    ("Flatten", {"start_dim": 2}, [t("N", 3, 4, 5)], [t("N", 3, 20)]),
    ("Reshape", {"shape": [-1, 4]}, [t("N", 3, 8)], [t("N", 6, 4)]),
    ("Permute", {"dims": [0, 2, 3, 1]}, [t("N", 3, 4, 5)], [t("N", 4, 5, 3)]),
    ("Transpose", {"dim0": 1, "dim1": 2}, [t("N", 3, 4)], [t("N", 4, 3)]),
    ("Unsqueeze", {"dim": -1}, [t("N", 3)], [t("N", 3, 1)]),
    ("Squeeze", {"dim": 1}, [t("N", 1, 3)], [t("N", 3)]),
    ("MatMul", {}, [t("N", 2, 3, 4), t(4, 5)], [t("N", 2, 3, 5)]),
    ("Embedding", {"num_embeddings": 10, "embedding_dim": 4}, [t("N", "L", dtype="int64")], [t("N", "L", 4)]),
    ("MultiHeadAttention", {"heads": 2}, [t("N", "L", 8)], [t("N", "L", 8)]),
    ("MultiHeadAttention", {"heads": 2}, [t("N", 5, 8), t("N", 7, 8), t("N", 7, 8)], [t("N", 5, 8)]),
    ("LSTM", {"hidden": 6, "bidirectional": True}, [t("N", "L", 3)], [t("N", "L", 12)]),
    ("GRU", {"hidden": 6, "batch_first": False}, [t("L", "N", 3)], [t("L", "N", 6)]),
    ("Upsample", {"scale_factor": 2}, [t("N", 3, 5, 7)], [t("N", 3, 10, 14)]),
    ("Upsample", {"size": [4, 9], "mode": "bilinear"}, [t("N", 3, "H", "W")], [t("N", 3, 4, 9)]),
    ("Softmax", {"dim": 1}, [t("N", 10)], [t("N", 10)]),
])
def test_infers(op_name, params, in_types, want):
    assert infer_one(op_name, params, in_types) == want


def test_cross_entropy_infers_its_target():
    (loss,), target = infer_one("CrossEntropy", {"label_smoothing": 0.1}, [t("N", 10, 4, 4)])
    assert loss == t()
    assert target == t("N", 4, 4, dtype="int64")


def test_mse_target_is_the_prediction_type():
    (loss,), target = infer_one("MSE", {}, [t("N", 3)])
    assert (loss, target) == (t(), t("N", 3))


def test_parameter_counts():
    from netspec.ops import param_count
    mha = get_op("MultiHeadAttention")
    assert param_count(mha, mha.Params(heads=2), [t("N", 5, 8)]) == 4 * 8 * 8 + 4 * 8
    lstm = get_op("LSTM")
    # torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True) has 1,488 parameters.
    assert param_count(lstm, lstm.Params(hidden=6, layers=2, bidirectional=True), [t("N", 4, 3)]) == 1488


# --- mistakes -----------------------------------------------------------------------------------

def test_concat_names_every_shape():
    msg = shape_error("Concat", {}, [t("N", 64, 56, 56), t("N", 32, 28, 28)])
    assert "Concat 'layer'" in msg
    assert "[N,64,56,56]" in msg and "[N,32,28,28]" in msg
    assert "except along dim 1" in msg


def test_concat_along_a_symbolic_dim():
    assert "symbolic (N)" in shape_error("Concat", {"dim": 0}, [t("N", 3), t("N", 3)])


def test_add_incompatible_shapes():
    msg = shape_error("Add", {}, [t("N", 256, 56, 56), t("N", 64, 56, 56)])
    assert "do not broadcast" in msg and "256 vs 64" in msg
    assert "[N,256,56,56]" in msg and "[N,64,56,56]" in msg


def test_add_symbolic_with_fixed_size():
    assert "N vs 3" in shape_error("Add", {}, [t("N", 4), t(3, 4)])


def test_add_mixed_dtypes():
    assert "one dtype" in shape_error("Add", {}, [t("N", 4), t("N", 4, dtype="int64")])


def test_reshape_wrong_element_count():
    msg = shape_error("Reshape", {"shape": [5, 5]}, [t("N", 3, 8)])
    assert "24 elements per item" in msg and "holds 25" in msg
    assert "excludes the batch dim" in msg


def test_reshape_minus_one_that_does_not_divide():
    assert "not a multiple of 5" in shape_error("Reshape", {"shape": [-1, 5]}, [t("N", 3, 8)])


def test_reshape_symbolic_dim():
    assert "symbolic (L)" in shape_error("Reshape", {"shape": [-1]}, [t("N", "L", 8)])


def test_flatten_over_a_symbolic_dim():
    msg = shape_error("Flatten", {"start_dim": 0}, [t("N", 3, 4)])
    assert "cannot flatten the symbolic dim N" in msg
    assert "start_dim=1" in msg  # the hint


def test_flatten_start_after_end():
    assert "comes after" in shape_error("Flatten", {"start_dim": 2, "end_dim": 1}, [t("N", 3, 4)])


def test_split_sizes_not_summing():
    msg = shape_error("Split", {"sizes": [2, 3]}, [t("N", 4, 7)])
    assert "sum to 5" in msg and "has size 4" in msg


def test_split_count_not_dividing():
    assert "into 3 equal parts" in shape_error("Split", {"sizes": 3}, [t("N", 4)])


def test_permute_not_a_permutation():
    assert "not a permutation" in shape_error("Permute", {"dims": [0, 1, 1]}, [t("N", 3, 4)])


def test_squeeze_a_dim_that_is_not_one():
    assert "has size 3, not 1" in shape_error("Squeeze", {"dim": 1}, [t("N", 3)])


def test_softmax_dim_out_of_range():
    assert "dim=2 is out of range" in shape_error("Softmax", {"dim": 2}, [t("N", 10)])


def test_activation_on_integers():
    assert "expects a float input, got int64[N,3]" in shape_error("GELU", {}, [t("N", 3, dtype="int64")])


def test_matmul_inner_dims():
    assert "3 columns by 4 rows" in shape_error("MatMul", {}, [t("N", 2, 3), t(4, 5)])


def test_embedding_of_floats():
    assert "int64 or int32 indices" in shape_error("Embedding", {"num_embeddings": 3, "embedding_dim": 2},
                                                   [t("N", 5)])


def test_attention_heads_must_divide():
    assert "not divisible by heads=3" in shape_error("MultiHeadAttention", {"heads": 3}, [t("N", 5, 8)])


def test_attention_two_inputs():
    assert "got 2" in shape_error("MultiHeadAttention", {"heads": 1}, [t("N", 5, 8), t("N", 5, 8)])


def test_attention_mismatched_key():
    msg = shape_error("MultiHeadAttention", {"heads": 1}, [t("N", 5, 8), t("N", 4, 6), t("N", 4, 6)])
    assert "one embedding size" in msg and "[N,4,6]" in msg


def test_lstm_needs_a_sequence():
    assert "rank-3" in shape_error("LSTM", {"hidden": 4}, [t("N", 8)])


def test_lstm_dropout_with_one_layer():
    assert "only one" in shape_error("LSTM", {"hidden": 4, "dropout": 0.5}, [t("N", 3, 8)])


def test_upsample_scale_on_a_symbolic_size():
    assert "symbolic" in shape_error("Upsample", {"scale_factor": 2}, [t("N", 3, "H", 8)])


def test_cross_entropy_rank_one_prediction():
    msg = shape_error("CrossEntropy", {}, [t("N")])
    assert "rank 2 or more, got 1-d [N]" in msg


def test_cross_entropy_float_target():
    msg = shape_error("CrossEntropy", {}, [t("N", 10)], target=t("N", 10))
    assert "class indices int64[N]" in msg and "got float32[N,10]" in msg


def test_mse_target_of_another_shape():
    assert "got float32[N,4]" in shape_error("MSE", {}, [t("N", 3)], target=t("N", 4))


def test_bce_pos_weight_per_class():
    assert "one per class" in shape_error("BCEWithLogits", {"pos_weight": [1.0, 2.0]}, [t("N", 3)])


# --- parameter schemas ------------------------------------------------------------------------

@pytest.mark.parametrize("op_name,params,needle", [
    ("Reshape", {"shape": [-1, -1]}, "at most one dim may be -1"),
    ("Reshape", {"shape": [0, 3]}, "positive or -1"),
    ("Split", {"sizes": 1}, "at least 2 parts"),
    ("Split", {"sizes": [4]}, "at least 2"),
    ("Dropout", {"p": 1.0}, "less than 1"),
    ("Upsample", {"scale_factor": 2, "size": 4}, "exactly one of scale_factor and size"),
    ("Upsample", {}, "exactly one of scale_factor and size"),
    ("Upsample", {"scale_factor": 2, "align_corners": True}, "'bilinear' only"),
    ("CrossEntropy", {"label_smoothing": 1.0}, "less than 1"),
    ("Embedding", {"num_embeddings": 3, "embedding_dim": 2, "padding_idx": 3}, "outside [-3, 3)"),
    ("MultiHeadAttention", {"heads": 0}, "greater than or equal to 1"),
    ("LeakyReLU", {"negative_slope": True}, "boolean"),
    ("CrossEntropy", {"weight": 0.5}, "Extra inputs"),  # a loss's weight lives on the graph node
])
def test_bad_params(op_name, params, needle):
    with pytest.raises(ValidationError, match=re.escape(needle)):
        get_op(op_name).Params(**params)


def test_errors_are_netspec_errors():
    with pytest.raises(NetspecError):
        infer_one("Concat", {}, [t("N", 1), t("N", 2, 3)])


def test_normalize_needs_one_mean_per_channel():
    from netspec.errors import OpError
    from netspec.ops import get_op
    op = get_op("Normalize")
    with pytest.raises(OpError, match="has 2 means and stds for 3 channels"):
        op.shape(op.Params(mean=[0.5, 0.5], std=[0.2, 0.2]), [TensorType("float32", ("N", 3, 8, 8))])
    with pytest.raises(ValueError, match="mean has 2 values but std has 1"):
        op.Params(mean=[0.5, 0.5], std=[0.2])
