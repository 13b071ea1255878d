"""Folded inference graphs: weights stored as the graph consumes them, same outputs as PyTorch."""

import tracemalloc
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from netspec import lower_onnx
from netspec.cli import main
from netspec.spec import load
from netspec.weights import init_weights
from tests.parity import ort_session

SPECS = """
block Encoder(dim, heads) {
    attn = in -> LayerNorm -> MultiHeadAttention(heads) -> Dropout(0.1)
    x    = Add(in, attn)
    ff   = x -> LayerNorm -> Linear(dim * 2) -> GELU -> Linear(dim)
    out  = Add(x, ff)
}
network Tokens {
    input x: float32[N, 6, 16]
    output y = x -> Linear(24) -> Encoder(24, 4) * 2 -> Select(1, 0) -> Linear(5)
}
network Cross {
    input q: float32[N, 3, 8]
    input kv: float32[N, 5, 8]
    output y = MultiHeadAttention(q, kv, kv, heads=2, causal=false)
}
network Convs {
    input image: float32[N, 3, 12, 12]
    a = image -> Conv2d(8, 3, padding=1, bias=false) -> BatchNorm2d -> ReLU
    b = a -> Conv2d(8, 3, padding=1) -> BatchNorm2d
    output logits = Add(a, b) -> GlobalAvgPool -> Flatten -> Linear(16) -> BatchNorm1d -> ReLU -> Linear(4)
}
network Recurrent {
    input x: float32[N, 7, 6]
    output y = x -> LSTM(5, layers=2, bidirectional=true) -> GRU(4, bidirectional=true) -> LSTM(3)
}
network Grouped {
    input image: float32[N, 4, 6, 6]
    output y = image -> GroupNorm(2) -> ConvTranspose2d(3, 3, stride=1, output_padding=1, dilation=2)
}
network Shared {
    input image: float32[N, 3, 8, 8]
    c = image -> Conv2d(4, 3, padding=1)
    output bn = c -> BatchNorm2d
    output raw = c
}
"""


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    path = tmp_path_factory.mktemp("fold") / "f.net"
    path.write_text(SPECS, encoding="utf-8")
    return path


def _module(s):
    """The torch module in eval mode, with batch-norm statistics that make folding matter."""
    torch.manual_seed(0)
    m = s.to_torch()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m.eval()


def _agree(s, module, model, feeds, rtol=1e-4, atol=1e-5):
    onnx.checker.check_model(model, full_check=True)
    with torch.no_grad():
        ref = module(*[torch.from_numpy(v) for v in feeds.values()])
    refs = list(ref) if isinstance(ref, tuple) else [ref]
    got = ort_session(model).run(None, feeds)
    for r, o in zip(refs, got, strict=True):
        np.testing.assert_allclose(o, r.numpy(), rtol=rtol, atol=atol)


def _weight_transposes(model):
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in ("Transpose", "Split") and n.input[0] in inits]


def _ops(model):
    return Counter(n.op_type for n in model.graph.node)


def _feeds(s, batch=3):
    rng = np.random.default_rng(1)
    return {name: rng.standard_normal((batch, *t.shape[1:])).astype(np.float32) for name, t in s.inputs}


@pytest.mark.parametrize("fold", [True, False])
def test_attention_and_linear(specs, fold):
    s = load(f"{specs}:Tokens")
    module = _module(s)
    model = s.to_onnx(module, fold=fold)
    _agree(s, module, model, _feeds(s))
    ops = _ops(model)
    if fold:
        # Weights are stored transposed and packed; one MatMul per in-projection, no Dropout.
        assert _weight_transposes(model) == []
        # the first Linear, then per block: in-projection, scores, values, out-projection, two Linear
        assert ops["MatMul"] == 1 + 2 * (1 + 1 + 1 + 1 + 2)
        assert "Identity" not in ops
        # The attention scale is in q's projection, not a Mul of the scores.
        assert ops["Mul"] == _ops(s.to_onnx(module, fold=False))["Mul"] - 2
        packed = next(t for t in model.graph.initializer if t.name.endswith("in_proj_weight/packed_T"))
        assert list(packed.dims) == [24, 72]
    else:
        # The initializers are the state dict, one for one.
        assert {t.name for t in model.graph.initializer} >= set(module.state_dict()) - {
            k for k in module.state_dict() if k.endswith("num_batches_tracked")}
        # A Transpose node per Linear and attention projection; the in-projection is packed even so.
        assert [n.op_type for n in _weight_transposes(model)] == ["Transpose"] * (1 + 2 * 4)


@pytest.mark.parametrize("fold", [True, False])
def test_cross_attention(specs, fold):
    s = load(f"{specs}:Cross")
    module = _module(s)
    model = s.to_onnx(module, fold=fold)
    feeds = _feeds(s)
    _agree(s, module, model, {"q": feeds["q"], "kv": feeds["kv"]})
    assert (_weight_transposes(model) == []) is fold


@pytest.mark.parametrize("fold", [True, False])
def test_batchnorm_folds_into_conv_and_linear(specs, fold):
    s = load(f"{specs}:Convs")
    module = _module(s)
    model = s.to_onnx(module, fold=fold)
    _agree(s, module, model, _feeds(s))
    ops = _ops(model)
    assert ops["BatchNormalization"] == (0 if fold else 3)
    if fold:
        names = {t.name for t in model.graph.initializer}
        assert not any("running_mean" in n or "running_var" in n for n in names)
        # The bias-less convolution gained one: the batch norm's shift.
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        assert len(conv.input) == 3


@pytest.mark.parametrize("network", ["Recurrent", "Grouped"])
def test_gates_and_per_channel_weights(specs, network):
    """RNN gates reordered and stacked, GroupNorm's and ConvTranspose's per-channel reshapes, stored."""
    s = load(f"{specs}:{network}")
    module = _module(s)
    folded, plain = s.to_onnx(module), s.to_onnx(module, fold=False)
    for model in (folded, plain):
        _agree(s, module, model, _feeds(s))
    inits = {t.name for t in folded.graph.initializer}
    # No node rearranges a weight at run time.
    assert not [n for n in folded.graph.node if n.input[0] in inits
                and n.op_type in ("Split", "Concat", "Unsqueeze", "Reshape", "Transpose")]
    assert len(folded.graph.node) < len(plain.graph.node)


def test_batchnorm_stays_where_its_input_is_also_an_output(specs):
    s = load(f"{specs}:Shared")
    module = _module(s)
    model = s.to_onnx(module)
    _agree(s, module, model, _feeds(s))
    assert _ops(model)["BatchNormalization"] == 1


def test_compile_no_fold_keeps_batchnorm(specs, tmp_path):
    runner = CliRunner()
    for flags, expected in (((), 0), (("--no-fold",), 3)):
        out = tmp_path / f"m{len(flags)}.onnx"
        result = runner.invoke(main, ["compile", f"{specs}:Convs", "-o", str(out), *flags])
        assert result.exit_code == 0, result.output
        model = onnx.load(str(out))
        onnx.checker.check_model(model, full_check=True)
        assert _ops(model)["BatchNormalization"] == expected


def test_lowered_model_saves_as_its_proto(specs, tmp_path):
    s = load(f"{specs}:Tokens")
    lowered = lower_onnx.lower(s.graph, init_weights(s.graph, seed=2))
    lower_onnx.save(lowered, tmp_path / "a.onnx", check=True)
    lower_onnx.save(lowered.to_proto(), tmp_path / "b.onnx", check=True)
    a, b = (onnx.load(str(tmp_path / n)) for n in ("a.onnx", "b.onnx"))
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    lower_onnx.save(lowered, tmp_path / "c.onnx", external_data=True, check=True)
    c = onnx.load(str(tmp_path / "c.onnx"))
    for x, y in zip(a.graph.initializer, c.graph.initializer, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(x), numpy_helper.to_array(y))


def test_a_damaged_file_fails_the_read_back(specs, tmp_path, monkeypatch):
    s = load(f"{specs}:Tokens")
    lowered = lower_onnx.lower(s.graph, init_weights(s.graph))
    path = tmp_path / "m.onnx"
    lower_onnx.save(lowered, path)
    before = path.read_bytes()
    real = lower_onnx._save_streamed

    def truncating(header, tensors, p):
        real(header, tensors, p)
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size - 10)

    monkeypatch.setattr(lower_onnx, "_save_streamed", truncating)
    with pytest.raises(onnx.checker.ValidationError, match="middle of a field"):
        lower_onnx.save(lowered, path, check=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_save_holds_about_one_tensor_at_a_time(tmp_path):
    """Writing and checking a model allocates a fraction of its weights, not another copy."""
    import netspec.graph as G
    from netspec.infer import infer
    from netspec.ops import get_op
    from netspec.types import TensorType
    g = G.new_graph("Wide", "wide.net")
    x = G.add_input(g, "x", TensorType("float32", ("N", 5, 512)))
    for i in range(8):
        x = G.Ref(G.add_op(g, f"fc{i}", "Linear", get_op("Linear").Params(out_features=512), [x]), 0)
    G.add_output(g, "y", x)
    infer(g)
    weights = init_weights(g)
    total = sum(a.nbytes for a in weights.values())
    lowered = lower_onnx.lower(g, weights)  # transposes to compute as each tensor is written
    tracemalloc.start()
    try:
        lower_onnx.save(lowered, tmp_path / "w.onnx", check=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * total, f"save peaked at {peak / total:.2f}x the weights"
    model = onnx.load(str(tmp_path / "w.onnx"))
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), weights["fc0.weight"].T)


def test_compile_external_data_runs_the_same(specs, tmp_path):
    runner = CliRunner()
    one, two = tmp_path / "one.onnx", tmp_path / "two" / "m.onnx"
    two.parent.mkdir()
    for out, flags in ((one, ()), (two, ("--external-data",))):
        result = runner.invoke(main, ["compile", f"{specs}:Tokens", "-o", str(out), *flags])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in two.parent.iterdir()) == ["m.onnx", "m.onnx.data"]
    bare = onnx.load(str(two), load_external_data=False)
    assert [t.name for t in bare.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    onnx.checker.check_model(str(two), full_check=True)
    s = load(f"{specs}:Tokens")
    feeds = _feeds(s)
    np.testing.assert_array_equal(ort_session(onnx.load(str(one))).run(None, feeds)[0],
                                  ort_session(onnx.load(str(two))).run(None, feeds)[0])


def test_external_data_aligns_large_tensors_only(tmp_path):
    import netspec.graph as G
    from netspec.infer import infer
    from netspec.ops import get_op
    from netspec.types import TensorType
    g = G.new_graph("Two", "two.net")
    x = G.add_input(g, "x", TensorType("float32", ("N", 700)))
    for i, n in enumerate((30, 700, 20)):  # weights of 84, 84 and 56 KB
        x = G.Ref(G.add_op(g, f"fc{i}", "Linear", get_op("Linear").Params(out_features=n), [x]), 0)
    x = G.Ref(G.add_op(g, "big", "Linear", get_op("Linear").Params(out_features=25_000), [x]), 0)  # 2 MB
    G.add_output(g, "y", x)
    infer(g)
    path = tmp_path / "m.onnx"
    lower_onnx.save(lower_onnx.lower(g, init_weights(g)), path, external_data=True, check=True)
    bare = onnx.load(str(path), load_external_data=False)
    placed = {t.name: {e.key: e.value for e in t.external_data} for t in bare.graph.initializer
              if t.data_location == onnx.TensorProto.EXTERNAL}
    big = int(placed["big.weight"]["offset"])
    assert big % 65536 == 0 and int(placed["big.weight"]["length"]) == 25_000 * 20 * 4
    # Every other tensor follows the one before it without padding.
    spans = sorted((int(p["offset"]), int(p["length"])) for p in placed.values())
    assert spans[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]) if b != big)


def test_a_short_side_file_fails_the_check(specs, tmp_path, monkeypatch):
    s = load(f"{specs}:Tokens")
    lowered = lower_onnx.lower(s.graph, init_weights(s.graph))
    real = lower_onnx._save_external

    def short(header, tensors, path, data_name):
        real(header, tensors, path, data_name)
        data = path.parent / data_name
        with open(data, "r+b") as f:
            f.truncate(data.stat().st_size - 4)

    monkeypatch.setattr(lower_onnx, "_save_external", short)
    with pytest.raises(onnx.checker.ValidationError, match="does not hold tensor"):
        lower_onnx.save(lowered, tmp_path / "m.onnx", external_data=True, check=True)
    assert list(tmp_path.iterdir()) == []
