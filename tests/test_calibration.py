"""Static int8 calibration methods: min/max follows every value, the percentile ignores rare extremes."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from netspec import lower_onnx
from netspec.cli import main
from netspec.spec import load
from netspec.static_int8 import METHODS, Calibration, quantize_static_int8

pytest.importorskip("onnxruntime")

SPEC = """
network Probe {
    input x: float32[N, 512]
    output y = x -> Linear(16) -> ReLU -> Linear(4)
}
"""


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calib")
    (tmp / "probe.net").write_text(SPEC)
    path = tmp / "probe.onnx"
    lower_onnx.save(load(f"{tmp / 'probe.net'}:Probe").lower(), path, check=True)
    return path


def input_scale(path) -> float:
    """The scale that quantizes the network's input."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    return float(inits[q.input[1]])


def test_histogram_methods_ignore_a_rare_outlier(fp32, tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (255, 512)).astype(np.float32)  # not a multiple of 16
    x[7, 3] = 1000.0  # one value in 130,560: past the 99.999th percentile
    scales = {}
    for method in METHODS:
        out = tmp_path / f"{method}.onnx"
        quantize_static_int8(fp32, out, Calibration(x, method))
        onnx.checker.check_model(str(out), full_check=True)
        scales[method] = input_scale(out)
    # uint8 over [min, max]: min/max spends its 255 steps on the outlier's range.
    assert scales["minmax"] == pytest.approx(1001 / 255, rel=0.01)
    assert scales["percentile"] < scales["minmax"] / 50
    # Values within the bulk are kept: [-1, 1] over 255 steps.
    assert scales["percentile"] == pytest.approx(2 / 255, rel=0.05)


def test_the_cli_offers_exactly_the_methods(tmp_path):
    # The CLI lists them itself (importing static_int8 would cost every command numpy and onnx).
    (tmp_path / "p.net").write_text(SPEC)
    option = next(p for p in main.commands["compile"].params if p.name == "calibration_method")
    assert list(option.type.choices) == list(METHODS)
    r = CliRunner().invoke(main, ["compile", f"{tmp_path / 'p.net'}:Probe", "-o", str(tmp_path / "m.onnx"),
                                  "--calibration-method", "percentile"])
    assert r.exit_code == 2 and "give --int8 --calibrate DATA" in r.output
