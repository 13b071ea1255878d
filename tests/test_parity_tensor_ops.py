"""ONNX Runtime against PyTorch for Param, Slice, the reductions over dims and DropPath, over
random parameters and shapes; and these ops inside small specs (a Param broadcast against a batch)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import netspec
from netspec.errors import NetspecError, OpError
from netspec.ops import get_op
from netspec.types import TensorType
from tests.parity import assert_parity, ort_session

F = "float32"
small = st.integers


def f32(*shape) -> TensorType:
    return TensorType(F, ("N", *shape))


@st.composite
def param_case(draw):
    shape = [draw(small(1, 4)) for _ in range(draw(small(0, 4)))]
    init = draw(st.sampled_from(["zeros", "ones", "normal", "uniform", "trunc_normal", "constant"]))
    params = {"shape": shape, "init": init, "std": draw(st.sampled_from([0.02, 1.0]))}
    if init == "constant":
        params["value"] = draw(st.sampled_from([1e-6, -2.5]))
    return params, []


@st.composite
def slice_case(draw):
    rank = draw(small(2, 4))
    shape = [draw(small(1, 6)) for _ in range(rank - 1)]
    axes = draw(st.lists(small(1, rank - 1), min_size=1, max_size=rank - 1, unique=True))
    starts, ends, steps = [], [], []
    for a in axes:
        n = shape[a - 1]
        # A non-empty range lo..hi-1, then written the ways Python allows: from the end, past
        # either end (clamped), or open.
        lo = draw(small(0, n - 1))
        hi = draw(small(lo + 1, n))
        step = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
        first, last = (lo, hi) if step > 0 else (hi - 1, lo - 1)
        if draw(st.booleans()):
            first -= n
        if step > 0 and lo == 0 and draw(st.booleans()):
            first = -n - 2
        if step < 0 and hi == n and draw(st.booleans()):
            first = n + 2
        if last == (n if step > 0 else -1):
            last = draw(st.sampled_from([None, n + 3 if step > 0 else -n - 3]))
        elif draw(st.booleans()):
            last -= n
        starts.append(first)
        ends.append(last)
        steps.append(step)
    axes = [a - rank if draw(st.booleans()) else a for a in axes]
    params = {"axes": axes, "starts": starts, "ends": ends}
    if steps != [1] * len(steps) or draw(st.booleans()):
        params["steps"] = steps
    return params, [f32(*shape)]


@st.composite
def reduce_case(draw):
    rank = draw(small(1, 4))
    shape = [draw(small(1, 5)) for _ in range(rank - 1)]
    dims = draw(st.lists(small(0, rank - 1), min_size=1, max_size=rank, unique=True))
    dims = [d - rank if draw(st.booleans()) else d for d in dims]
    return {"dims": dims, "keepdim": draw(st.booleans())}, [f32(*shape)]


CASES = {
    "Param": param_case(),
    "Slice": slice_case(),
    "Mean": reduce_case(),
    "Sum": reduce_case(),
    "Max": reduce_case(),
    "Min": reduce_case(),
    "DropPath": st.tuples(st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.2, 0.9])}),
                          st.just([f32(3, 4)])),
}


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_parity(case, data):
    params, in_types, *options = data.draw(CASES[case])
    batch = data.draw(small(1, 3), label="batch")
    assert_parity(case, params, in_types, seed=data.draw(small(0, 2**16), label="seed"), batch=batch,
                  **(options[0] if options else {}))


def _spec(tmp_path, body: str, inputs: str = "x: float32[N, 3, 4]") -> netspec.Spec:
    path = tmp_path / "t.net"
    path.write_text(f"network T {{\n    input {inputs}\n{body}\n}}\n", encoding="utf-8")
    return netspec.load(path)


def _spec_parity(s: netspec.Spec, feeds: dict[str, np.ndarray], opset: int, randomize: bool = True):
    """The spec's torch module and its ONNX model agree on `feeds`; returns the torch outputs."""
    torch.manual_seed(0)
    module = s.to_torch().eval()
    if randomize:
        with torch.no_grad():
            for t in module.parameters():
                t.normal_()
    with torch.no_grad():
        expected = module(*[torch.from_numpy(v) for v in feeds.values()])
    expected = [e.numpy() for e in (expected if isinstance(expected, tuple) else (expected,))]
    model = s.to_onnx(module, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    got = ort_session(model).run([n for n, _ in s.outputs], feeds)
    for ours, ref in zip(got, expected, strict=True):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    return expected


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_param_broadcasts_against_a_batch(tmp_path, opset):
    s = _spec(tmp_path, """
    bias  = Param(shape=[3, 1], init="normal")
    scale = Param(shape=[4], init="ones")
    output y = Add(x, bias) -> Mul(scale)
    """)
    assert s.parameters == 7
    assert s.outputs[0][1] == TensorType(F, ("N", 3, 4))
    module = s.to_torch()
    assert set(module.state_dict()) == {"bias.weight", "scale.weight"}
    # The generated forward reads the parameters as attributes, not through a call.
    assert "self.bias.weight" in module.code
    x = np.random.default_rng(1).standard_normal((5, 3, 4), dtype=np.float32)
    _spec_parity(s, {"x": x}, opset)


def test_param_trains(tmp_path):
    s = _spec(tmp_path, "    output y = Mul(x, Param(shape=[1, 3, 1], init=\"ones\") as gain)")
    module = s.to_torch()
    (param,) = module.parameters()
    y = module(torch.ones(2, 3, 4))
    y.sum().backward()
    assert param.grad is not None and param.grad.shape == (1, 3, 1)
    torch.testing.assert_close(param.grad, torch.full((1, 3, 1), 8.0))


def test_param_float16_is_cast_in_onnx(tmp_path):
    s = _spec(tmp_path, '    output y = Add(x, Param(shape=[4], dtype="float16", init="normal"))',
              inputs="x: float16[N, 3, 4]")
    module = s.to_torch().eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float16)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = ort_session(s.to_onnx(module)).run(["y"], {"x": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_param_init_draws_match_their_law():
    """The numpy draw (`compile` without a checkpoint) and the torch init follow the same law."""
    from netspec.weights import _draw
    rng = np.random.default_rng(0)
    op = get_op("Param")
    for init, std in (("normal", 0.5), ("uniform", 0.5), ("trunc_normal", 0.5)):
        p = op.Params(shape=[200, 100], init=init, std=std)
        a = _draw(op.weights(p, [])["weight"], rng)
        t = op.torch(p, []).module.weight.detach().numpy()
        for w in (a, t):
            assert abs(w.std() - (std if init != "trunc_normal" else 0.88 * std)) < 0.02, init
        if init == "trunc_normal":
            assert np.abs(a).max() <= 2 * std and np.abs(t).max() <= 2 * std


@pytest.mark.parametrize("params, message", [
    ({"shape": [3, 0]}, "positive"),
    ({"shape": [3], "init": "xavier"}, "init"),
    ({"shape": [3], "dtype": "int64"}, "dtype"),
    ({"shape": [3], "std": 0}, "std"),
    ({"shape": [3], "value": 1e-6}, "add init=\"constant\""),
])
def test_param_refuses_bad_params(params, message):
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=message):
        get_op("Param").Params(**params)


def test_param_constant_init():
    op = get_op("Param")
    p = op.Params(shape=[4, 1, 1], init="constant", value=1e-6)
    assert op.weights(p, [])["weight"].init == ("constant", 1e-6)
    assert bool((op.torch(p, []).module.weight == torch.full((4, 1, 1), 1e-6)).all())


def test_param_takes_no_tensor(tmp_path):
    with pytest.raises(NetspecError, match="Param takes 0 input tensors, got 1"):
        _spec(tmp_path, "    output y = x -> Param(shape=[3])")


def _slice_ref(x: np.ndarray, params: dict) -> np.ndarray:
    index = [slice(None)] * x.ndim
    for a, s, e, st_ in zip(params["axes"], params["starts"], params["ends"], params.get("steps") or [1] * 9):
        index[a] = slice(s, e, st_)
    return x[tuple(index)]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(case=slice_case())
def test_slice_is_python_slicing(case):
    """Infer's shape is numpy's, and torch's values are numpy's (ONNX's are checked against torch)."""
    params, (t,) = case
    op = get_op("Slice")
    p = op.Params(**params)
    x = np.arange(2 * np.prod(t.shape[1:]), dtype=np.float32).reshape(2, *t.shape[1:])
    ref = _slice_ref(x, params)
    assert (2, *op.shape(p, [t])[0].shape[1:]) == ref.shape
    got = op.torch(p, [t]).target(torch.from_numpy(x), **op.torch(p, [t]).kwargs).numpy()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_slice_keeps_the_batch_and_crops(tmp_path, opset):
    """The paper's U-Net crop; the symbolic batch stays symbolic."""
    s = _spec(tmp_path, "    output y = x -> Slice([2, 3], [2, -6], [-2, -2])",
              inputs="x: float32[N, 2, 8, 8]")
    assert s.outputs[0][1].shape == ("N", 2, 4, 4)
    x = np.random.default_rng(3).standard_normal((3, 2, 8, 8), dtype=np.float32)
    (y,) = _spec_parity(s, {"x": x}, opset)
    np.testing.assert_array_equal(y, x[:, :, 2:-2, -6:-2])


@pytest.mark.parametrize("params, in_type, message", [
    ({"axes": [0], "starts": [1], "ends": [None]}, f32(3), "only known at run time"),
    ({"axes": [1], "starts": [2], "ends": [2]}, f32(3), "selects nothing"),
    ({"axes": [1, -1], "starts": [0, 0], "ends": [1, 1]}, f32(3), "sliced twice"),
    ({"axes": [2], "starts": [0], "ends": [1]}, f32(3), "out of range"),
])
def test_slice_shape_errors(params, in_type, message):
    """(The whole range of a symbolic dim is allowed and keeps it: see test_slice_keeps_a_symbolic_dim.)"""
    op = get_op("Slice")
    with pytest.raises(OpError, match=message):
        op.shape(op.Params(**params), [in_type])


@pytest.mark.parametrize("opset", [17, 21])
def test_slice_keeps_a_symbolic_dim(opset):
    """Slicing the whole of the batch (start 0, end none) keeps it; another axis is cut at once."""
    assert_parity("Slice", {"axes": [0, -1], "starts": [0, -3], "ends": [None, None], "steps": [1, -1]},
                  [f32(5)], seed=1, batch=3, opset=opset)
    op = get_op("Slice")
    p = op.Params(axes=[0, 1], starts=[0, 1], ends=[None, 3])
    assert op.shape(p, [f32(5)])[0].shape == ("N", 2)


@pytest.mark.parametrize("params, message", [
    ({"axes": [1, 2], "starts": [0], "ends": [1, 1]}, "starts has 1 entries but axes has 2"),
    ({"axes": [1], "starts": [0], "ends": [1], "steps": [0]}, "step cannot be 0"),
    ({"axes": [], "starts": [], "ends": []}, "axes is empty"),
])
def test_slice_refuses_bad_params(params, message):
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=message):
        get_op("Slice").Params(**params)


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_reductions_in_a_spec(tmp_path, opset):
    s = _spec(tmp_path, """
    output mean = x -> Mean([2, 3])
    output top  = x -> Max(dims=[-1], keepdim=true)
    output low  = x -> Min(1)
    output sum  = x -> Sum([0, 1, 2, 3])
    """, inputs="x: float32[N, 3, 4, 5]")
    assert [t.shape for _, t in s.outputs] == [("N", 3), ("N", 3, 4, 1), ("N", 4, 5), ()]
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5), dtype=np.float32)
    mean, top, low, total = _spec_parity(s, {"x": x}, opset)
    np.testing.assert_allclose(mean, x.mean(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_allclose(top, x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(low, x.min(axis=1))
    np.testing.assert_allclose(total, x.sum(), rtol=1e-4)


@pytest.mark.parametrize("params, in_type, message", [
    ({"dims": [3]}, f32(3), "out of range"),
    ({"dims": [1, -1]}, f32(3), "listed twice"),
    ({"dims": [1]}, TensorType("int64", ("N", 3)), "float"),
])
def test_reduction_shape_errors(params, in_type, message):
    op = get_op("Mean")
    with pytest.raises(OpError, match=message):
        op.shape(op.Params(**params), [in_type])


def test_reduction_needs_dims():
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="dims is empty"):
        get_op("Sum").Params(dims=[])


def test_drop_path_drops_whole_samples_while_training():
    """torchvision's StochasticDepth(p, "row"): each sample is all zero or scaled by 1/(1-p)."""
    op = get_op("DropPath")
    p = op.Params(p=0.25)
    module = op.torch(p, [f32(3, 4)]).train()
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 4) + 0.5
    y = module(x)
    kept = (y != 0).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    assert abs(float(dropped.float().mean()) - 0.25) < 0.03
    module.eval()
    assert module(x) is x
    assert op.Params(p=1.0).p == 1.0
    assert bool((op.torch(op.Params(p=1.0), [f32(3)]).train()(x) == 0).all())


@pytest.mark.parametrize("shape, in_type, message", [
    (["B", -1], f32(3), "B in shape=.B,-1. is not a symbolic dim of .N,3."),
    (["N", -1], f32("L", 3), "does not name the symbolic dim L"),
    (["N", 5], f32(3), "3 elements per item, the new shape holds 5"),
    ([-1], f32("L", 3), "symbolic .L.; only the batch dim 0 may be"),
])
def test_named_reshape_errors(shape, in_type, message):
    op = get_op("Reshape")
    with pytest.raises(OpError, match=message):
        op.shape(op.Params(shape=shape), [in_type])


def test_reshape_of_a_fixed_batch_keeps_it():
    op = get_op("Reshape")
    assert op.shape(op.Params(shape=[-1]), [TensorType(F, (2, 3, 4))])[0].shape == (2, 12)
    assert op.shape(op.Params(shape=["N", 2, -1]), [f32(3, 4)])[0].shape == ("N", 2, 6)
