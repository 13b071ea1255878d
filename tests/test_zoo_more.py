"""VGG, MobileNetV2, GoogLeNet and ViT: torchvision's exact parameter counts, and ONNX Runtime
agreeing with PyTorch on each whole network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netspec

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.mark.parametrize("spec, network, parameters", [
    # torchvision.models.<name>(num_classes=1000), summed over model.parameters().
    ("vgg.net", "VGG11", 132_863_336),
    ("vgg.net", "VGG13", 133_047_848),
    ("vgg.net", "VGG16", 138_357_544),
    ("vgg.net", "VGG19", 143_667_240),
    ("vgg.net", "VGG16_BN", 138_365_992),
    ("mobilenet.net", "MobileNetV2", 3_504_872),
    ("googlenet.net", "GoogLeNet", 13_004_888),  # googlenet(aux_logits=True)
    ("googlenet.net", "GoogLeNetNoAux", 6_624_904),
    ("transformer.net", "ViT_B_16", 86_567_656),
    ("transformer.net", "ViT_L_16", 304_326_632),
])
def test_parameter_counts_match_torchvision(spec, network, parameters):
    assert netspec.load(MODELS / spec, network).parameters == parameters


def test_vit_tiny_is_small():
    s = netspec.load(MODELS / "transformer.net", "ViT_Tiny")
    assert s.inputs[0][1].shape == ("N", 3, 32, 32)
    assert s.outputs[0][1].shape == ("N", 10)
    assert s.parameters < 6_000_000


def _variant(tmp_path: Path, spec: str, call: str) -> netspec.Spec:
    """The zoo's network `call`, e.g. `VGG(size=32)`, instantiated from a spec that imports it."""
    path = tmp_path / "variant.net"
    path.write_text(f'import "{MODELS / spec}"\nnetwork Variant = {call}\n', encoding="utf-8")
    return netspec.load(path)


def _onnx_matches_torch(s: netspec.Spec) -> None:
    """ONNX Runtime within 1e-3 * max(1, max|y|) of PyTorch on a batch of 2, for every output."""
    torch.manual_seed(0)
    module = s.to_torch().eval()
    # Random state where torch starts from constants, so that a lowering ignoring it would show.
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for key, t in module.state_dict().items():
            if key.endswith(".token"):
                t.normal_()
            elif key.endswith("layer_scale.weight"):  # ConvNeXt's 1e-6 would hide its blocks
                t.uniform_(0.2, 0.5)
    model = s.to_onnx(module)
    onnx.checker.check_model(model, full_check=True)
    (name, t), = s.inputs
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(0).standard_normal((2, *t.shape[1:]), dtype=np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x))
    expected = [e.numpy() for e in (expected if isinstance(expected, tuple) else (expected,))]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = sess.run([n for n, _ in s.outputs], {name: x})
    assert len(got) == len(expected) == len(s.outputs)
    for (out_name, out_type), ours, ref in zip(s.outputs, got, expected):
        assert ours.shape == ref.shape == (2, *out_type.shape[1:]), out_name
        bound = 1e-3 * max(1.0, float(np.abs(ref).max()))
        assert float(np.abs(ours - ref).max()) <= bound, out_name
        assert float(np.abs(ref).max()) > 1e-3, out_name  # the network computes something, not zeros


# Smaller inputs where the spec has a `size`, and VGG's 4096-wide classifier narrowed, which
# leaves every layer in place: the full-size weights would make this file take minutes.
@pytest.mark.parametrize("spec, call", [
    ("vgg.net", "VGG(convs=[1, 1, 2, 2, 2], size=32, hidden=256)"),
    ("vgg.net", "VGG(convs=[2, 2, 4, 4, 4], size=32, hidden=256)"),
    ("vgg.net", "VGG(convs=[2, 2, 3, 3, 3], bn=true, size=32, hidden=256)"),
    ("mobilenet.net", "MobileNetV2(size=64)"),
    # At 96 pixels the auxiliary heads pool 6x6 to 4x4 with overlapping windows.
    ("googlenet.net", "GoogLeNet(size=96)"),
    ("transformer.net", "ViT(size=64)"),
])
def test_onnx_matches_torch(tmp_path, spec, call):
    _onnx_matches_torch(_variant(tmp_path, spec, call))


def test_vit_tiny_onnx_matches_torch():
    _onnx_matches_torch(netspec.load(MODELS / "transformer.net", "ViT_Tiny"))


def test_googlenet_losses_add_up_with_the_auxiliary_weights():
    s = netspec.load(MODELS / "googlenet.net", "GoogLeNet")
    g = s.graph
    terms = [(g.nodes[n]["args"][0].node, g.nodes[n]["weight"]) for n in g.graph["losses"]]
    assert [w for _, w in terms] == [1.0, 0.3, 0.3]
    assert [n for n, _ in s.outputs] == ["logits", "aux1", "aux2"]
    assert [n for n, _ in s.targets] == ["label"]

    rng = np.random.default_rng(1)
    outputs = {n: torch.from_numpy(rng.standard_normal((4, 1000), dtype=np.float32)) for n, _ in s.outputs}
    label = torch.from_numpy(rng.integers(0, 1000, size=4))
    total, values = s.loss_module()(outputs, {"label": label})
    ce = torch.nn.functional.cross_entropy
    expected = ce(outputs["logits"], label) + 0.3 * ce(outputs["aux1"], label) + 0.3 * ce(outputs["aux2"], label)
    torch.testing.assert_close(total, expected)
    assert len(values) == 3


def test_googlenet_without_aux_has_one_loss():
    s = netspec.load(MODELS / "googlenet.net", "GoogLeNetNoAux")
    assert [n for n, _ in s.outputs] == ["logits"]
    assert len(s.graph.graph["losses"]) == 1
