"""MobileNetV3, EfficientNet, ConvNeXt and DenseNet: torchvision's exact parameter counts, and ONNX
Runtime agreeing with PyTorch on each whole network."""

from __future__ import annotations

from pathlib import Path

import pytest

import netspec
from tests.test_zoo_more import _onnx_matches_torch, _variant

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


@pytest.mark.parametrize("spec, call", [
    ("mobilenetv3.net", "MobileNetV3_Large(size=64)"),
    ("efficientnet.net", "EfficientNet_B0(size=64)"),
    ("convnext.net", "ConvNeXt_Tiny(size=64)"),
    ("densenet.net", "DenseNet(size=64)"),
])
def test_onnx_matches_torch(tmp_path, spec, call):
    _onnx_matches_torch(_variant(tmp_path, spec, call))


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
