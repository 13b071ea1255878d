"""MACs are counted as torchvision and the papers count them; element-wise work is reported apart."""

import json

import pytest
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.ops import REGISTRY

# torchvision's published GFLOPS (its `_ops` field, which counts multiply-accumulates).
PUBLISHED = [
    ("models/resnet.net:ResNet50", 4.09),
    ("models/mobilenet.net", 0.30),
    ("models/transformer.net:ViT_B_16", 17.56),
]


@pytest.mark.parametrize("target, gmacs", PUBLISHED)
def test_macs_match_torchvision(target, gmacs):
    s = netspec.load(target)
    assert round(sum(r["macs"] for r in s.rows) / 1e9, 2) == gmacs


def test_check_json_names_macs_and_elementwise_apart():
    r = CliRunner().invoke(main, ["check", "models/lenet5.net", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert "flops" not in out and all("flops" not in row for row in out["layers"])
    assert out["macs"] == sum(row["macs"] for row in out["layers"])
    assert out["elementwise"] == sum(row["elementwise"] for row in out["layers"])
    by_op = {}
    for row in out["layers"]:
        by_op.setdefault(row["op"], row)
    # LeNet-5: the first conv maps 1x32x32 to 6x28x28 with 5x5 kernels; pooling is not a MAC.
    assert by_op["Conv2d"]["macs"] == 6 * 28 * 28 * 25
    assert by_op["MaxPool2d"]["macs"] == 0 and by_op["MaxPool2d"]["elementwise"] > 0


def test_every_op_states_macs_and_elementwise():
    for name, op in REGISTRY.items():
        assert callable(getattr(op, "macs", None)) and callable(getattr(op, "elementwise", None)), name
        assert not hasattr(op, "flops"), f"{name} still has flops"
