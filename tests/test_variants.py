"""`netspec compile --optimize/--float16/--int8`: each variant loads, runs and agrees with float32."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from netspec import lower_onnx, variants
from netspec.cli import main
from netspec.spec import load
from netspec.weights import init_weights

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
network Small {
    input image: float32[N, 3, 16, 16]
    h = image -> Conv2d(32, 3, padding=1, bias=false) -> BatchNorm2d -> ReLU -> MaxPool2d(2)
              -> Conv2d(64, 3, padding=1) -> ReLU -> Upsample(scale_factor=2) -> MaxPool2d(2)
    output logits = h -> GlobalAvgPool -> Flatten -> Linear(128) -> ReLU -> Linear(10)
}
network Words {
    input tokens: int64[N, 4]
    output y = tokens -> Embedding(20, 8) -> Flatten -> Linear(5)
}
network NoWeights {
    input x: float32[N, 8]
    output y = x -> ReLU
}
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_proto(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The Small network compiled once with every variant; (folder, float32 path, batch)."""
    folder = tmp_path_factory.mktemp("variants")
    (folder / "small.net").write_text(SMALL, encoding="utf-8")
    out = folder / "small.onnx"
    r = run("compile", f"{folder / 'small.net'}:Small", "-o", out, "--optimize", "--float16", "--int8")
    assert r.exit_code == 0, r.output
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    return folder, out, x, r.output


def outputs(path, x):
    return session(path).run(["logits"], {"image": x})[0]


def test_cli_writes_each_variant_beside_out_and_says_so(compiled):
    folder, out, _, text = compiled
    for tag in ("opt", "fp16", "int8"):
        path = folder / f"small.{tag}.onnx"
        assert path.is_file()
        assert f"wrote {path}:" in text
    assert "x the float32 file" in text
    # The staging folder is gone once the variants are in place.
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_float16_is_a_drop_in_with_half_the_bytes(compiled):
    folder, out, x, _ = compiled
    path = folder / "small.fp16.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    # Float32 at the boundary, float16 inside.
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]
    weights = [t for t in model.graph.initializer if t.name.endswith(".weight")]
    assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights)
    # Resize's scales are float32 by the schema, whatever the data type.
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    scales = next(t for t in model.graph.initializer if t.name == resize.input[2])
    assert scales.data_type == TensorProto.FLOAT
    ref, got = outputs(out, x), outputs(path, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())
    assert variants.files_size(path) < 0.6 * variants.files_size(out)
    assert {p.key: p.value for p in model.metadata_props}["netspec.variant"] == "float16"


def test_int8_agrees_on_the_argmax_with_a_quarter_of_the_bytes(compiled):
    folder, out, x, _ = compiled
    path = folder / "small.int8.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    # Linear's Gemm went through MatMul, so it was quantized too.
    assert {"ConvInteger", "MatMulInteger"} <= ops and "Gemm" not in ops
    ref, got = outputs(out, x), outputs(path, x)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.8
    assert np.abs(got - ref).max() <= 0.1 * np.abs(ref).max()
    assert variants.files_size(path) < 0.4 * variants.files_size(out)


def test_optimized_model_runs_and_matches(compiled):
    folder, out, x, _ = compiled
    path = folder / "small.opt.onnx"
    # May hold com.microsoft fused ops, which onnx's checker does not know: ORT is the judge.
    np.testing.assert_allclose(outputs(path, x), outputs(out, x), rtol=1e-4, atol=1e-5)


def test_float16_leaves_integer_inputs_alone(tmp_path):
    (tmp_path / "w.net").write_text(SMALL, encoding="utf-8")
    s = load(f"{tmp_path / 'w.net'}:Words", None, {})
    model = lower_onnx.to_onnx(s.graph, init_weights(s.graph, seed=1))
    half = variants.to_float16(model)
    onnx.checker.check_model(half, full_check=True)
    tokens = np.random.default_rng(1).integers(0, 20, (6, 4))
    ref, got = run_proto(model, {"tokens": tokens}), run_proto(half, {"tokens": tokens})
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.INT64
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())


def _tiny(nodes, inits, out_type=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", out_type, [2, 4])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_float16_saturates_instead_of_overflowing():
    big = np.full((3, 4), 1e6, np.float32)
    big[0, 0] = -np.inf
    half = variants.to_float16(_tiny([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": big}))
    w = numpy_helper.to_array(half.graph.initializer[0])
    assert w.dtype == np.float16 and w[0, 0] == -np.inf and w[1, 1] == np.finfo(np.float16).max


def test_float16_turns_casts_and_constants_to_float16():
    nodes = [helper.make_node("Constant", [], ["c"], value_float=2.0),
             helper.make_node("Mul", ["x", "c"], ["xc"]),
             helper.make_node("Cast", ["xc"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["xf", "w"], ["y"])]
    model = _tiny(nodes, {"w": np.eye(3, 4, dtype=np.float32)})
    half = variants.to_float16(model)
    onnx.checker.check_model(half, full_check=True)
    cast = next(n for n in half.graph.node if n.output == ["xf"])
    assert cast.attribute[0].i == TensorProto.FLOAT16
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run_proto(half, {"x": x}), 2 * x @ np.eye(3, 4), rtol=1e-3)


def test_float16_casts_a_shared_resize_scale_back_to_float32():
    # The scales initializer also feeds a float16 Mul, so it turns float16 and Resize gets a Cast.
    scales = np.array([1, 2], np.float32)
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["r"], mode="nearest"),
             helper.make_node("Mul", ["r", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                              [numpy_helper.from_array(scales, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    half = variants.to_float16(model)
    onnx.checker.check_model(half, full_check=True)
    resize = next(n for n in half.graph.node if n.op_type == "Resize")
    assert resize.input[2] != "s"
    x = np.array([[1], [3]], np.float32)
    np.testing.assert_allclose(run_proto(half, {"x": x}), [[1, 2], [3, 6]])


def test_matmul_form_computes_the_same_as_gemm():
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    model = _tiny([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], {"w": w, "b": b})
    form = variants._matmul_form(model)
    assert [n.op_type for n in form.graph.node] == ["MatMul", "Add"]
    assert {t.name for t in form.graph.initializer} == {"w/matmul", "b"}
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(run_proto(form, {"x": x}), x @ w.T + b, rtol=1e-5, atol=1e-6)


def test_a_failed_variant_leaves_older_files_intact(tmp_path):
    (tmp_path / "s.net").write_text(SMALL, encoding="utf-8")
    out = tmp_path / "n.onnx"
    out.write_bytes(b"older model")
    (tmp_path / "n.fp16.onnx").write_bytes(b"older fp16")
    r = run("compile", f"{tmp_path / 's.net'}:NoWeights", "-o", out, "--float16", "--int8")
    assert r.exit_code == 1, r.output
    assert "no MatMul, Linear or Conv" in r.output and "Traceback" not in r.output
    assert out.read_bytes() == b"older model"
    assert (tmp_path / "n.fp16.onnx").read_bytes() == b"older fp16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.fp16.onnx", "n.onnx", "s.net"]


def test_variant_names():
    assert variants.variant_path("a/model.onnx", "float16") == Path("a/model.fp16.onnx")
    assert variants.variant_path("model", "int8") == Path("model.int8.onnx")
    assert variants.variant_path("m.onnx", "optimize") == Path("m.opt.onnx")


def test_compile_with_every_variant_never_imports_torch(tmp_path):
    code = ("import sys\nfrom netspec.cli import main\n"
            f"try:\n    main(['compile', 'models/lenet5.net', '-o', {str(tmp_path / 'l.onnx')!r},"
            " '--optimize', '--float16', '--int8'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(
                           p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "l.int8.onnx").is_file()


def test_matmul_form_folds_a_split_and_transposed_weight():
    rng = np.random.default_rng(3)
    packed = rng.standard_normal((8, 3)).astype(np.float32)
    nodes = [helper.make_node("Split", ["w"], ["w0", "w1"], axis=0),
             helper.make_node("Transpose", ["w1"], ["w1t"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "w1t"], ["y"])]
    model = _tiny(nodes, {"w": packed})
    form = variants._matmul_form(model)
    assert [n.op_type for n in form.graph.node] == ["MatMul"]
    assert [t.name for t in form.graph.initializer] == ["w1t"]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(run_proto(form, {"x": x}), x @ packed[4:].T, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- compile and the disk (issue 5)

def _lenet(tmp_path, *extra):
    return run("compile", ROOT / "models/lenet5.net", "-o", tmp_path / "m.onnx", *extra)


def test_each_written_file_reports_its_own_size(tmp_path):
    # A file that merely starts with the output's name is not counted (it was, through a glob).
    (tmp_path / "model.onnx.bak").write_bytes(b"x" * 5_000_000)
    out = tmp_path / "model.onnx"
    r = run("compile", ROOT / "models/lenet5.net", "-o", out, "--float16", "--int8")
    assert r.exit_code == 0, r.output
    for path in (out, tmp_path / "model.fp16.onnx", tmp_path / "model.int8.onnx"):
        line = next(l for l in r.output.splitlines() if l.startswith(f"wrote {path}:"))
        assert f"{path.stat().st_size / 1e6:.1f} MB" in line
    assert "0.2 MB" in r.output.splitlines()[0]


def test_an_unwritable_output_is_a_user_error(tmp_path):
    r = run("compile", ROOT / "models/lenet5.net", "-o", "/proc/x.onnx")
    assert r.exit_code == 1, r.output
    assert "cannot write /proc/x.onnx" in r.output and "internal error" not in r.output
    r = run("compile", ROOT / "models/lenet5.net", "-o", tmp_path)
    assert r.exit_code in (1, 2) and "internal error" not in r.output


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_the_compile(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        r = run("compile", ROOT / "models/lenet5.net", "-o", folder / "m.onnx")
        assert r.exit_code == 1 and "is not writable" in r.output
    finally:
        folder.chmod(0o755)


def test_a_full_disk_leaves_older_files_and_no_temporaries(tmp_path, monkeypatch):
    import errno
    out = tmp_path / "m.onnx"
    out.write_bytes(b"older model")
    (tmp_path / "m.int8.onnx").write_bytes(b"older int8")

    def full(header, tensors, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(lower_onnx, "_save_streamed", full)
    r = _lenet(tmp_path, "--int8")
    assert r.exit_code == 1, r.output
    assert "cannot write" in r.output and "No space left on device" in r.output
    assert out.read_bytes() == b"older model" and (tmp_path / "m.int8.onnx").read_bytes() == b"older int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]


def test_stale_staging_of_dead_processes_is_swept(tmp_path):
    dead = tmp_path / ".m.onnx.4194304999.variants.abc"  # past any pid_max: no such process
    dead.mkdir()
    (dead / "m.int8.onnx").write_bytes(b"x" * 1000)
    live = tmp_path / f".m.onnx.{os.getpid()}.variants.xyz"  # this process is alive
    live.mkdir()
    other = tmp_path / ".other.onnx.4194304999.variants.abc"  # another output's: not ours to judge
    other.mkdir()
    assert _lenet(tmp_path).exit_code == 0
    assert not dead.exists() and live.exists() and other.exists()


def test_a_compile_killed_mid_way_leaves_nothing_after_the_next_one(tmp_path):
    import signal
    import time
    out = tmp_path / "r.onnx"
    cmd = [sys.executable, "-m", "netspec", "compile", "models/resnet.net:ResNet18", "-o", str(out),
           "--float16", "--int8"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not any(p.name.startswith(".r.onnx.") for p in tmp_path.iterdir()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("the compile finished before a staging folder could be seen")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".r.onnx.")]
    assert left  # what a kill -9 leaves
    r = run("compile", ROOT / "models/lenet5.net", "-o", out)
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["r.onnx"]


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    from safetensors.numpy import save_file
    arrays = init_weights(load(ROOT / "models/lenet5.net").graph)
    arrays["features.0.weight"][0, 0, 0, 0] = np.inf
    arrays["logits.5.bias"][:] = np.nan
    save_file(arrays, str(tmp_path / "w.safetensors"))
    r = _lenet(tmp_path, "--weights", tmp_path / "w.safetensors")
    assert r.exit_code == 1, r.output
    assert "inf or NaN in 2 tensor(s): features.0.weight, logits.5.bias" in r.output
    assert "--allow-nonfinite" in r.output
    assert not (tmp_path / "m.onnx").exists()
    assert _lenet(tmp_path, "--weights", tmp_path / "w.safetensors", "--allow-nonfinite").exit_code == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KB tmpfs: a real full disk. Mounting needs root (and a kernel that lets it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_really_full_disk_is_a_user_error_and_keeps_older_files(small_disk):
    out = small_disk / "m.onnx"
    out.write_bytes(b"older model")
    # LeNet-5 is 249 KB in float32, 126 KB in float16: with staging, more than 400 KB.
    r = run("compile", ROOT / "models/lenet5.net", "-o", out, "--float16", "--int8")
    assert r.exit_code == 1, r.output
    assert f"cannot write {out}: No space left on device" in r.output
    assert out.read_bytes() == b"older model"
    assert [p.name for p in small_disk.iterdir()] == ["m.onnx"]
