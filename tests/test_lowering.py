"""A small multi-layer network lowered both ways; weights files and ONNX saving."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from netspec import graph as G
from netspec.errors import DataProblem, ShapeProblem
from netspec.infer import infer
from netspec.lower_onnx import save, to_onnx
from netspec.lower_torch import loss_module, to_module
from netspec.ops import get_op
from netspec.types import TensorType
from netspec.weights import (init_weights, load_safetensors, save_safetensors, state_dict_arrays,
                             weight_specs)
from tests.parity import ort_session


def _op(g, name, op, args, **params):
    return G.Ref(G.add_op(g, name, op, get_op(op).Params(**params), args), 0)


def small_net(with_loss: bool = False):
    g = G.new_graph("Small", "small.net")
    x = G.add_input(g, "image", TensorType("float32", ("N", 3, 8, 8)))
    x = _op(g, "stem.conv", "Conv2d", [x], out_channels=4, kernel=3, padding=1, bias=False)
    x = _op(g, "stem.bn", "BatchNorm2d", [x])
    x = _op(g, "stem.relu", "ReLU", [x])
    x = _op(g, "pool", "MaxPool2d", [x], kernel=2)
    if get_op("Flatten"):
        x = _op(g, "flatten", "Flatten", [x])
    else:
        x = _op(g, "gap", "GlobalAvgPool", [x])  # keeps the graph valid if Flatten is missing
    logits = _op(g, "fc", "Linear", [x], out_features=5)
    G.add_output(g, "logits", logits)
    if with_loss:
        G.add_op(g, "ce", "CrossEntropy", get_op("CrossEntropy").Params(),
                 [logits, G.add_target(g, "label", None)], kind="loss", weight=0.5)
        G.add_op(g, "aux", "MSE", get_op("MSE").Params(),
                 [logits, G.add_target(g, "soft", None)], kind="loss", weight=2.0)
    return infer(g)


def trained_module(g):
    """The torch module with non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    m = to_module(g)
    with torch.no_grad():
        m.stem.bn.running_mean.uniform_(-0.5, 0.5)
        m.stem.bn.running_var.uniform_(0.5, 1.5)
        m.stem.bn.weight.uniform_(0.5, 1.5)
    return m.eval()


def test_fx_code_is_straight_line_and_names_follow_layers():
    g = small_net()
    m = to_module(g)
    code = m.code
    assert "for " not in code and "if " not in code and "while " not in code
    assert "def forward(self, image)" in code
    assert "self.stem.conv(image)" in code
    assert list(m.state_dict()) == list(weight_specs(g))
    assert "stem.bn.running_var" in m.state_dict() and "fc.weight" in m.state_dict()


@pytest.mark.parametrize("fold", [True, False])
def test_onnx_matches_torch_with_dynamic_batch(fold):
    g = small_net()
    m = trained_module(g)
    model = to_onnx(g, state_dict_arrays(m), fold=fold)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    props = {p.key: p.value for p in model.metadata_props}
    # No path of the build machine in the file (docs/deploy.md: the metadata contract).
    assert props["netspec.network"] == "Small" and "netspec.spec_path" not in props
    assert model.producer_name == "netspec" and model.opset_import[0].version == 17
    # Folded, the convolution computes the batch norm's result; unfolded, each layer is a node.
    assert {n.name for n in model.graph.node} >= ({"stem.conv", "fc"} if fold else {"stem.conv", "stem.bn", "fc"})
    assert ("BatchNormalization" in {n.op_type for n in model.graph.node}) is not fold
    sess = ort_session(model)
    for batch in (1, 5):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 8, 8)).astype(np.float32)
        (ours,) = sess.run(["logits"], {"image": x})
        with torch.no_grad():
            ref = m(torch.from_numpy(x)).numpy()
        assert ours.shape == (batch, 5)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_two_outputs_of_one_tensor_and_an_input_passed_through():
    g = G.new_graph("Two", "two.net")
    x = G.add_input(g, "x", TensorType("float32", ("N", 4)))
    y = _op(g, "relu", "ReLU", [x])
    G.add_output(g, "a", y)
    G.add_output(g, "b", y)
    G.add_output(g, "raw", x)
    infer(g)
    m = to_module(g)
    model = to_onnx(g, {})
    onnx.checker.check_model(model, full_check=True)
    xv = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    a, b, raw = ort_session(model).run(None, {"x": xv})
    ta, tb, traw = m(torch.from_numpy(xv))
    np.testing.assert_array_equal(a, ta.numpy())
    np.testing.assert_array_equal(b, tb.numpy())
    np.testing.assert_array_equal(raw, xv)


def test_losses_weighted_sum_in_torch_and_onnx():
    if not (get_op("CrossEntropy") and get_op("MSE")):
        pytest.skip("loss ops are not registered yet")
    g = small_net(with_loss=True)
    m = trained_module(g)
    x = torch.randn(3, 3, 8, 8)
    label = torch.tensor([0, 4, 2])
    soft = torch.randn(3, 5)
    with torch.no_grad():
        logits = m(x)
        total, parts = loss_module(g)({"logits": logits}, {"label": label, "soft": soft})
    ce = torch.nn.functional.cross_entropy(logits, label)
    mse = torch.nn.functional.mse_loss(logits, soft)
    assert set(parts) == {"ce", "aux"}
    torch.testing.assert_close(total, 0.5 * ce + 2.0 * mse)
    model = to_onnx(g, state_dict_arrays(m), include_losses=True)
    onnx.checker.check_model(model, full_check=True)
    (loss,) = ort_session(model).run(["loss"], {"image": x.numpy(), "label": label.numpy(),
                                                "soft": soft.numpy()})
    np.testing.assert_allclose(loss, total.numpy(), rtol=1e-4)


def test_onnx_lacking_a_weight_is_a_data_problem():
    g = small_net()
    weights = init_weights(g)
    del weights["fc.bias"]
    with pytest.raises(DataProblem, match="fc.bias"):
        to_onnx(g, weights)


def test_adaptive_pool_with_symbolic_sizes_is_a_located_error():
    g = G.new_graph("Ad", "ad.net")
    x = G.add_input(g, "x", TensorType("float32", ("N", 2, "H", "W")))
    G.add_output(g, "y", _op(g, "ap", "AdaptiveAvgPool2d", [x], output_size=3))
    infer(g)
    to_module(g)  # torch handles any size; only the ONNX lowering is limited
    with pytest.raises(ShapeProblem, match="fixed spatial size"):
        to_onnx(g, {})


def test_init_weights_follow_specs_and_load_into_torch():
    g = small_net()
    w = init_weights(g, seed=3)
    specs = weight_specs(g)
    assert list(w) == list(specs)
    for k, s in specs.items():
        assert w[k].shape == s.shape and w[k].dtype == np.dtype(s.dtype)
    assert w["stem.bn.num_batches_tracked"].dtype == np.int64 and w["stem.bn.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(w["stem.bn.running_var"], 1.0)
    bound = specs["fc.weight"].init[1]
    assert np.abs(w["fc.weight"]).max() <= bound and w["fc.weight"].std() > bound / 4
    assert not np.array_equal(init_weights(g, seed=4)["fc.weight"], w["fc.weight"])
    m = to_module(g)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})


def test_safetensors_round_trip(tmp_path):
    g = small_net()
    w = state_dict_arrays(trained_module(g))
    path = tmp_path / "weights.safetensors"
    save_safetensors(w, path)
    back = load_safetensors(path, g)
    assert back.keys() == w.keys()
    for k in w:
        np.testing.assert_array_equal(back[k], w[k])


def test_safetensors_errors_name_the_keys(tmp_path):
    g = small_net()
    w = init_weights(g)
    path = tmp_path / "weights.safetensors"

    save_safetensors({k: v for k, v in w.items() if not k.startswith("fc.")}, path)
    with pytest.raises(DataProblem, match=r"lacks 2 tensors the spec needs: fc\.bias, fc\.weight") as e:
        load_safetensors(path, g)
    assert "another spec" in e.value.render()

    save_safetensors({**w, "head.weight": np.zeros(3, np.float32)}, path)
    with pytest.raises(DataProblem, match="head.weight"):
        load_safetensors(path, g)

    save_safetensors({**w, "fc.weight": np.zeros((5, 3), np.float32)}, path)
    with pytest.raises(DataProblem, match=r"fc\.weight is \[5, 3\]"):
        load_safetensors(path, g)

    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(DataProblem, match="cannot read"):
        load_safetensors(path, g)
    with pytest.raises(DataProblem, match="does not exist"):
        load_safetensors(tmp_path / "missing.safetensors", g)


def test_save_is_atomic(tmp_path, monkeypatch):
    g = small_net()
    model = to_onnx(g, init_weights(g))
    path = tmp_path / "model.onnx"
    save(model, path)
    before = path.read_bytes()
    assert onnx.load(str(path)).graph.name == "Small"

    def broken(proto, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a mod")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", broken)
    with pytest.raises(OSError, match="disk full"):
        save(to_onnx(g, init_weights(g, seed=1)), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp files left


def test_save_with_external_data(tmp_path):
    g = small_net()
    model = to_onnx(g, init_weights(g))
    size = model.ByteSize()
    path = tmp_path / "model.onnx"
    save(model, path, external_data=True)
    assert (tmp_path / "model.onnx.data").stat().st_size >= 5 * 64 * 4
    bare = onnx.load(str(path), load_external_data=False)
    fc = next(t for t in bare.graph.initializer if t.name == "fc.weight")
    assert fc.data_location == onnx.TensorProto.EXTERNAL
    assert model.ByteSize() == size  # the caller's model keeps its tensors
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    x = np.ones((2, 3, 8, 8), np.float32)
    np.testing.assert_allclose(ort_session(loaded).run(None, {"image": x})[0],
                               ort_session(model).run(None, {"image": x})[0], rtol=1e-6)


def test_streamed_save_reads_back_as_the_same_model(tmp_path):
    g = small_net()
    model = to_onnx(g, init_weights(g))
    path = tmp_path / "model.onnx"
    save(model, path, check=True)
    # Tensors appended one graph field at a time must merge back into the one model.
    assert onnx.load(str(path)).SerializeToString(deterministic=True) == \
        model.SerializeToString(deterministic=True)


def test_a_model_failing_the_checker_replaces_nothing(tmp_path):
    g = small_net()
    path = tmp_path / "model.onnx"
    save(to_onnx(g, init_weights(g)), path, check=True)
    before = path.read_bytes()
    bad = to_onnx(g, init_weights(g, seed=1))
    bad.graph.node[0].input[0] = "no_such_value"
    with pytest.raises(onnx.checker.ValidationError):
        save(bad, path, check=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
