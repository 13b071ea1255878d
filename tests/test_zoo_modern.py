"""MobileNetV3, EfficientNet, ConvNeXt and DenseNet: torchvision's exact parameter counts, and ONNX
Runtime agreeing with PyTorch on each whole network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import netspec
from tests.parity import ort_session

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.mark.parametrize("spec, network, parameters", [
    # torchvision.models.<name>(num_classes=1000), summed over model.parameters().
    ("mobilenetv3.net", "MobileNetV3_Large", 5_483_032),
    ("efficientnet.net", "EfficientNet_B0", 5_288_548),
    ("convnext.net", "ConvNeXt_Tiny", 28_589_128),
    ("densenet.net", "DenseNet121", 7_978_856),
    ("densenet.net", "DenseNet161", 28_681_000),
    ("densenet.net", "DenseNet169", 14_149_480),
    ("densenet.net", "DenseNet201", 20_013_928),
])
def test_parameter_counts_match_torchvision(spec, network, parameters):
    s = netspec.load(MODELS / spec, network)
    assert s.parameters == parameters
    assert s.outputs[0][1].shape == ("N", 1000)


def _variant(tmp_path: Path, spec: str, call: str) -> netspec.Spec:
    path = tmp_path / "variant.net"
    path.write_text(f'import "{MODELS / spec}"\nnetwork Variant = {call}\n', encoding="utf-8")
    return netspec.load(path)


def _randomize(module) -> None:
    """Random state where torch starts from constants, so that a lowering ignoring it would show:
    batch-norm statistics, and ConvNeXt's layer scales (1e-6, which would hide its blocks)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for key, t in module.state_dict().items():
            if key.endswith("layer_scale.weight"):
                t.uniform_(0.2, 0.5)


@pytest.mark.parametrize("spec, call", [
    ("mobilenetv3.net", "MobileNetV3_Large(size=64)"),
    ("efficientnet.net", "EfficientNet_B0(size=64)"),
    ("convnext.net", "ConvNeXt_Tiny(size=64)"),
    ("densenet.net", "DenseNet(size=64)"),
])
def test_onnx_matches_torch(tmp_path, spec, call):
    """ONNX Runtime within 1e-3 * max(1, max|y|) of PyTorch on a batch of 2."""
    s = _variant(tmp_path, spec, call)
    torch.manual_seed(0)
    module = s.to_torch().eval()
    _randomize(module)
    model = s.to_onnx(module)
    onnx.checker.check_model(model, full_check=True)
    (name, t), = s.inputs
    x = np.random.default_rng(0).standard_normal((2, *t.shape[1:]), dtype=np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x)).numpy()
    (got,) = ort_session(model).run(["logits"], {name: x})
    assert got.shape == expected.shape == (2, 1000)
    bound = 1e-3 * max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(got - expected).max()) <= bound
    assert float(np.abs(expected).max()) > 1e-3  # the network computes something, not zeros


def test_stochastic_depth_follows_torchvision(tmp_path):
    """EfficientNet's block i of 16 and ConvNeXt's block i of 18 drop with p = sd * i / (16 or 17)."""
    def probs(spec, network):
        g = netspec.load(MODELS / spec, network).graph
        drops = [n for n in g if g.nodes[n].get("op") == "DropPath"]
        # Each drops a residual branch: its result goes straight into the Add with the shortcut.
        assert all([g.nodes[m]["op"] for m in g.successors(n)] == ["Add"] for n in drops)
        return [round(g.nodes[n]["params"].p, 6) for n in drops]

    # Only blocks with a residual carry one: not the first of each stage.
    residual = [2, 4, 6, 7, 9, 10, 12, 13, 14]
    assert probs("efficientnet.net", "EfficientNet_B0") == [round(0.2 * i / 16, 6) for i in residual]
    assert probs("convnext.net", "ConvNeXt_Tiny") == [round(0.1 * i / 17, 6) for i in range(18)]
