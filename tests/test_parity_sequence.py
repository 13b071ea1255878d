"""Sequence ops inside specs: an LSTM classifier reading its final state, attention with a
key-padding mask; ONNX Runtime against PyTorch at opsets 17, 18 and 21."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import netspec
from netspec.errors import NetspecError
from tests.parity import ort_session


def _load(tmp_path, text: str) -> netspec.Spec:
    path = tmp_path / "seq.net"
    path.write_text(text, encoding="utf-8")
    return netspec.load(path)


def _agree(s: netspec.Spec, feeds: dict, opset: int) -> list[np.ndarray]:
    torch.manual_seed(0)
    module = s.to_torch().eval()
    with torch.no_grad():
        expected = module(*[torch.from_numpy(v) for v in feeds.values()])
    expected = [e.numpy() for e in (expected if isinstance(expected, tuple) else (expected,))]
    model = s.to_onnx(module, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    got = ort_session(model).run([n for n, _ in s.outputs], feeds)
    for (name, _), ours, ref in zip(s.outputs, got, expected, strict=True):
        assert ours.shape == ref.shape, name
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5, err_msg=name)
    return expected


LSTM_CLASSIFIER = """
network Classifier {
    input tokens: int64[N, L]
    seq, h, c = tokens -> Embedding(50, 8) -> LSTM(6, layers=2, return_state=true)
    output top = h -> Select(0, -1)
    output logits = top -> Linear(3)
    output last = seq -> Select(1, -1)
    output cell = c
}
"""


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_lstm_classifier_reads_the_last_layers_final_state(tmp_path, opset):
    s = _load(tmp_path, LSTM_CLASSIFIER)
    assert [t.shape for _, t in s.outputs] == [("N", 6), ("N", 3), ("N", 6), (2, "N", 6)]
    tokens = np.random.default_rng(0).integers(0, 50, size=(3, 7)).astype(np.int64)
    top, logits, last, cell = _agree(s, {"tokens": tokens}, opset)
    assert logits.shape == (3, 3) and cell.shape == (2, 3, 6)
    # A one-way LSTM's last output step is its top layer's final hidden state.
    np.testing.assert_allclose(last, top, rtol=1e-5, atol=1e-6)


def test_gru_state_shape_follows_torch(tmp_path):
    s = _load(tmp_path, """
network G {
    input x: float32[N, 5, 4]
    y, h = x -> GRU(3, bidirectional=true, return_state=true)
    output y
    output h
}
""")
    assert [t.shape for _, t in s.outputs] == [("N", 5, 6), (2, "N", 3)]
    x = np.random.default_rng(1).standard_normal((2, 5, 4), dtype=np.float32)
    y, h = _agree(s, {"x": x}, 17)
    # The forward direction's final state is the forward half of the last output step.
    np.testing.assert_allclose(h[0], y[:, -1, :3], rtol=1e-5, atol=1e-6)


MASKED_ATTENTION = """
network Encoder {
    input x: float32[N, L, 8]
    input padding: bool[N, L]
    output y = MultiHeadAttention(x, padding, heads=2, causal=true)
}
"""


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_attention_ignores_padded_keys(tmp_path, opset):
    s = _load(tmp_path, MASKED_ATTENTION)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 8), dtype=np.float32)
    padding = np.array([[False] * 5, [False, False, False, True, True]])
    (y,) = _agree(s, {"x": x, "padding": padding}, opset)
    # Changing what sits at padded positions changes nothing at the unpadded ones.
    x2 = x.copy()
    x2[1, 3:] = rng.standard_normal((2, 8), dtype=np.float32)
    (y2,) = _agree(s, {"x": x2, "padding": padding}, opset)
    np.testing.assert_allclose(y2[1, :3], y[1, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y2[0], y[0])


def test_fully_padded_query_gets_zero_attention(tmp_path):
    """Where every key a query may see is padding: the output projection's bias, not NaN."""
    s = _load(tmp_path, MASKED_ATTENTION)
    module = s.to_torch().eval()
    x = np.random.default_rng(3).standard_normal((1, 3, 8), dtype=np.float32)
    padding = np.array([[True, False, False]])  # causal: query 0 sees key 0 only, which is padding
    with torch.no_grad():
        y = module(torch.from_numpy(x), torch.from_numpy(padding)).numpy()
    bias = module.state_dict()["y.out_proj.bias"].numpy()
    np.testing.assert_allclose(y[0, 0], bias, atol=1e-6)
    got = ort_session(s.to_onnx(module)).run(["y"], {"x": x, "padding": padding})[0]
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-5)


def test_mask_of_the_wrong_shape_is_refused(tmp_path):
    with pytest.raises(NetspecError, match=r"key-padding mask must be bool\[N,L\]"):
        _load(tmp_path, MASKED_ATTENTION.replace("bool[N, L]", "bool[N, 4]"))
