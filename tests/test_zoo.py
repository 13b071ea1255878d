"""The model zoo end to end: every spec checks, and deep ResNets agree across PyTorch and ONNX."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netspec

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.mark.parametrize("spec, network, parameters", [
    ("mlp.net", None, 26_122),
    ("lenet5.net", None, 61_706),
])
def test_small_models_check(spec, network, parameters):
    s = netspec.load(MODELS / spec, network)
    assert s.parameters == parameters
    assert [n for n, _ in s.targets] == ["label"]


@pytest.mark.parametrize("network", ["ResNet18", "ResNet152"])
def test_resnet_onnx_matches_torch(network):
    """The whole network, not one op: ONNX Runtime must match PyTorch on a batch of 2.

    Through 150 layers float32 rounding adds up, so the bound is relative to the output's
    scale: 1e-3 * max(1, max |y|), as for torch.onnx.export's own ResNet-152.
    """
    s = netspec.load(f"{MODELS / 'resnet.net'}:{network}")
    torch.manual_seed(0)
    module = s.to_torch().eval()
    # Non-trivial batch-norm statistics, so that the folded inference arithmetic is exercised.
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model = s.to_onnx(module)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x)).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"image": x})[0]
    assert got.shape == (2, 1000)
    bound = 1e-3 * max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(got - expected).max()) <= bound


def test_readme_zoo_table_counts_spec_lines():
    """README's "spec lines" column: the lines of each zoo file that are neither blank nor comments."""
    import re
    root = Path(__file__).resolve().parent.parent
    rows = re.findall(r"^\| `(models/[\w.]+)` \| .* \| (\d+) \|$", (root / "README.md").read_text(), re.M)
    assert len(rows) == len(list((root / "models").glob("*.net")))
    for path, count in rows:
        lines = (root / path).read_text().splitlines()
        assert sum(1 for line in lines if line.strip() and not line.strip().startswith("#")) == int(count), path
