"""The `netspec` command: output formats, network selection, exit codes, where messages go."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from netspec.cli import main

ROOT = Path(__file__).resolve().parent.parent

TWO = """
network Tiny {
    input x: float32[N, 8]
    output y = x -> Linear(4) -> ReLU
}
network Other(classes = 3) {
    input x: float32[N, 8]
    output z = x -> Linear(classes)
    loss CrossEntropy(z, label)
}
"""


@pytest.fixture
def two(tmp_path) -> Path:
    path = tmp_path / "two.net"
    path.write_text(TWO, encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_check_table(two):
    r = run("check", f"{two}:Tiny")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["layer", "op", "output", "parameters", "inputs"]
    assert lines[2].split() == ["y.0", "Linear", "[N,4]", "36", "x"]
    assert lines[3].split() == ["y.1", "ReLU", "[N,4]", "0", "y.0"]
    assert "parameters  36 (36)" in r.stdout
    assert r.stderr == ""


def test_check_brief_has_totals_only(two):
    r = run("check", "--brief", f"{two}:Tiny")
    assert r.exit_code == 0
    assert "layer" not in r.stdout.splitlines()[0]
    assert "parameters  36" in r.stdout


def test_check_json(two):
    r = run("check", "--json", two, "--network", "Other")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["network"] == "Other"
    assert isinstance(d["parameters"], int) and d["parameters"] == 8 * 3 + 3
    assert d["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["N", 8]}]
    assert [(o["name"], o["shape"]) for o in d["outputs"]] == [("z", ["N", 3])]
    assert d["losses"][0]["op"] == "CrossEntropy" and d["losses"][0]["weight"] == 1.0
    assert [lay["name"] for lay in d["layers"]] == ["z"]
    assert "layers" not in json.loads(run("check", "--json", "--brief", f"{two}:Other").stdout)


def test_network_selection_by_suffix_and_option_agree(two):
    a = json.loads(run("check", "--json", f"{two}:Other").stdout)
    b = json.loads(run("check", "--json", two, "-n", "Other").stdout)
    assert a == b


def test_several_networks_without_a_name_is_exit_1_on_stderr(two):
    r = run("check", two)
    assert r.exit_code == 1
    assert r.stdout == ""
    assert "defines 2 networks: Tiny, Other" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_spec_error_is_exit_1_with_location(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network N {\n    input x: float32[N, 8]\n    output y = x -> Linaer(4)\n}\n", encoding="utf-8")
    r = run("check", bad)
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr.startswith(f"{bad}:3:21: error: unknown op or block 'Linaer'")
    assert "did you mean 'Linear'?" in r.stderr


def test_a_missing_file_is_exit_1(tmp_path):
    r = run("check", tmp_path / "nope.net")
    assert r.exit_code == 1
    assert "no such file" in r.stderr


@pytest.mark.parametrize("args", [["check", "--bogus", "x.net"], ["check"], ["compile", "x.net"],
                                  ["frobnicate"], ["compile", "x.net", "-o", "y.onnx", "--opset", "7"]])
def test_usage_errors_exit_2(args):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    assert "Usage:" in r.stderr


def test_compile_writes_a_checked_model_that_runs(two, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    r = run("compile", f"{two}:Tiny", "-o", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.stdout and "36 parameters" in r.stdout
    onnx.checker.check_model(str(out), full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]
    assert sess.get_inputs()[0].shape[0] == "N"  # the batch axis stays dynamic
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    assert y.shape == (5, 4) and (y >= 0).all()  # the ReLU at the end


def test_compile_into_a_missing_folder_is_a_clean_error(two, tmp_path):
    out = tmp_path / "missing" / "deeper" / "m.onnx"
    r = run("compile", f"{two}:Tiny", "-o", out)
    assert r.exit_code == 1
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert "does not exist" in r.stderr
    assert not out.parent.exists()


def test_a_failed_compile_leaves_the_existing_output_untouched(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text(textwrap.dedent("""
        network N {
            input x: float32[N, 3, 4, 4]
            output y = x -> Conv2d(8, 7)
        }
    """), encoding="utf-8")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous model")
    r = run("compile", bad, "-o", out)
    assert r.exit_code == 1
    assert "does not fit" in r.stderr
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.net", "model.onnx"]  # no temp files left


def test_version_and_help():
    assert run("--version").exit_code == 0
    r = run("--help")
    assert r.exit_code == 0
    assert all(cmd in r.stdout for cmd in ("check", "compile", "train", "evaluate"))


def test_set_overrides_network_parameters(two):
    r = run("check", f"{two}:Other", "--json", "--brief", "-D", "classes=7")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["outputs"][0]["shape"] == ["N", 7]
    assert json.loads(r.stdout)["parameters"] == 8 * 7 + 7


def test_set_unknown_parameter_is_located_with_a_suggestion(two):
    r = run("check", f"{two}:Other", "--set", "clases=7")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: --set clases=7: network Other has no parameter 'clases'")
    assert "did you mean 'classes'?" in r.stderr


def test_set_without_a_value_is_a_usage_error(two):
    r = run("check", f"{two}:Other", "--set", "classes")
    assert r.exit_code == 2
    assert "NAME=VALUE" in r.stderr


def test_an_op_missing_from_the_opset_is_a_located_error(tmp_path):
    spec = tmp_path / "ln.net"
    spec.write_text("network Net {\n    input x: float32[N, 8]\n    output y = x -> LayerNorm\n}\n")
    r = run("compile", spec, "--opset", "15", "-o", tmp_path / "ln.onnx")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"{spec}:3:21: error: LayerNorm 'y': cannot be written at opset 15: "
                               "it needs ONNX's LayerNormalization, from opset 17")
    assert "hint: compile with --opset 17 or later" in r.stderr
    assert not (tmp_path / "ln.onnx").exists()
    assert run("compile", spec, "--opset", "18", "-o", tmp_path / "ln.onnx").exit_code == 0


def test_check_table_shows_what_a_merge_joins():
    r = run("check", str(Path(__file__).resolve().parent.parent / "models" / "resnet.net:ResNet50"))
    assert r.exit_code == 0, r.output
    add = next(line for line in r.stdout.splitlines() if line.startswith("x.4.0.0 "))
    assert add.split()[1] == "Add" and add.endswith("x.4.0.main.7, x.4.0.skip.1")
