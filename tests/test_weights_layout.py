"""Where `netspec compile` puts the weights: a side file from 1 MiB on, one file below, and the flags."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from netspec import lower_onnx
from netspec.cli import main
from netspec.errors import DataProblem
from netspec.spec import load

SPEC = """
network Big {
    input x: float32[N, 512]
    output y = x -> Linear(1024)
}

network Small {
    input x: float32[N, 16]
    output y = x -> Linear(16)
}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "layout.net"
    path.write_text(SPEC)
    return path


def compile_(spec, network, out, *flags):
    result = CliRunner().invoke(main, ["compile", f"{spec}:{network}", "-o", str(out), *flags])
    assert result.exit_code == 0, result.output
    return result.output


def external(path) -> list[str]:
    bare = onnx.load(str(path), load_external_data=False)
    return [t.name for t in bare.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def run(path, feed):
    import onnxruntime as ort
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_weights_of_a_mebibyte_or_more_go_beside_the_model(spec, tmp_path):
    (tmp_path / "big").mkdir()
    (tmp_path / "small").mkdir()
    said = compile_(spec, "Big", tmp_path / "big" / "m.onnx")
    assert "its weights are in m.onnx.data beside it: keep the two files together" in said
    said = compile_(spec, "Small", tmp_path / "small" / "m.onnx")
    assert "beside it" not in said
    assert sorted(p.name for p in (tmp_path / "big").iterdir()) == ["m.onnx", "m.onnx.data"]
    assert external(tmp_path / "big" / "m.onnx") == ["y.weight", "y.bias"]
    assert sorted(p.name for p in (tmp_path / "small").iterdir()) == ["m.onnx"]
    assert external(tmp_path / "small" / "m.onnx") == []


def test_the_flags_force_either_layout_with_the_same_outputs(spec, tmp_path):
    one, two = tmp_path / "one.onnx", tmp_path / "two.onnx"
    compile_(spec, "Big", one, "--single-file")
    compile_(spec, "Small", two, "--external-data")
    assert external(one) == [] and not (tmp_path / "one.onnx.data").exists()
    assert external(two) == ["y.weight"]  # the 64-byte bias stays inside
    default = tmp_path / "default.onnx"
    compile_(spec, "Big", default)
    feed = {"x": np.random.default_rng(0).standard_normal((2, 512), dtype=np.float32)}
    np.testing.assert_array_equal(run(one, feed), run(default, feed))


def test_a_single_file_over_a_two_file_model_removes_its_side_file(spec, tmp_path):
    out = tmp_path / "m.onnx"
    compile_(spec, "Big", out)
    assert (tmp_path / "m.onnx.data").is_file()
    compile_(spec, "Big", out, "--single-file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout.net", "m.onnx"]


def test_a_data_file_the_old_model_did_not_use_is_left_alone(spec, tmp_path):
    out, unrelated = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    compile_(spec, "Small", out, "--single-file")
    unrelated.write_bytes(b"the user's own file")
    compile_(spec, "Small", out, "--single-file")
    assert unrelated.read_bytes() == b"the user's own file"


def test_single_file_past_protobufs_limit_is_refused_before_writing(spec, tmp_path, monkeypatch):
    monkeypatch.setattr(lower_onnx, "PROTO_LIMIT", 1 << 20)
    model = load(f"{spec}:Big").lower()
    with pytest.raises(DataProblem, match="past protobuf's 2 GiB limit") as e:
        lower_onnx.save(model, tmp_path / "m.onnx", external_data=False)
    assert "leave out --single-file" in e.value.diagnostics[0].hint
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_without_its_side_file_names_the_missing_file(spec, tmp_path):
    out = tmp_path / "m.onnx"
    compile_(spec, "Big", out)
    (tmp_path / "m.onnx.data").unlink()
    result = CliRunner().invoke(main, ["predict", str(out), str(spec)])
    assert result.exit_code == 1, result.output
    assert "keeps its weights in 'm.onnx.data' beside it, which is missing" in result.output
    assert "copy the model together with its .data file" in result.output


def test_every_variant_of_a_two_file_model(spec, tmp_path):
    # The float32 model gets a side file; each variant is made from it and loads.
    x = np.random.default_rng(0).standard_normal((64, 512), dtype=np.float32)
    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(64, np.int64))  # labels are read, not used
    out = tmp_path / "m.onnx"
    compile_(spec, "Big", out, "--optimize", "--float16", "--int8", "--calibrate", tmp_path / "calib.npz",
             "--calibration-method", "percentile")
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m."))
    assert names == ["m.fp16.onnx", "m.fp16.onnx.data", "m.int8.onnx", "m.onnx", "m.onnx.data",
                     "m.opt.onnx", "m.opt.onnx.data"]
    feed = {"x": x[:2]}
    ref = run(out, feed)
    for name in ("m.opt.onnx", "m.fp16.onnx", "m.int8.onnx"):
        got = run(tmp_path / name, feed)
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 0.05 * np.abs(ref).max(), name
