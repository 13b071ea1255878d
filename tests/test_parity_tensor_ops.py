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
    init = draw(st.sampled_from(["zeros", "ones", "normal", "uniform", "trunc_normal"]))
    return {"shape": shape, "init": init, "std": draw(st.sampled_from([0.02, 1.0]))}, []


CASES = {
    "Param": param_case(),
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
])
def test_param_refuses_bad_params(params, message):
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=message):
        get_op("Param").Params(**params)


def test_param_takes_no_tensor(tmp_path):
    with pytest.raises(NetspecError, match="Param takes 0 input tensors, got 1"):
        _spec(tmp_path, "    output y = x -> Param(shape=[3])")
