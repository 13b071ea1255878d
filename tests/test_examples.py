"""examples/ runs as its README says: every spec checks, cats vs dogs trains, compiles and predicts."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import netspec
from netspec.cli import main
from netspec.data import ImageFolder
from netspec.types import TensorType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CATS = EXAMPLES / "cats_vs_dogs.net"
# Small enough to train in about a second: 16x16 images, 8 channels in the first stage.
SMALL = ["-D", "size=16", "-D", "width=8"]

SPECS = [
    ("cats_vs_dogs.net", None, 1_173_730),
    ("custom_resnet.net", "ResNet20", 272_474),    # He et al. 2015 report 0.27M
    ("custom_resnet.net", "ResNet56", 855_770),    # 0.85M
    ("custom_resnet.net", "ResNet110", 1_730_714), # 1.7M
    ("custom_resnet.net", "CifarResNet", 272_474),
]


@pytest.mark.parametrize("spec, network, parameters", SPECS)
def test_example_specs_check(spec, network, parameters):
    s = netspec.load(EXAMPLES / spec, network)
    assert s.parameters == parameters
    assert [n for n, _ in s.targets] == ["label"]


def test_every_example_spec_is_checked():
    assert {p.name for p in EXAMPLES.glob("*.net")} == {spec for spec, _, _ in SPECS}


def test_cats_vs_dogs_settings():
    s = netspec.load(CATS)
    assert s.inputs[0][1].full() == "float32[N,3,64,64]"
    assert s.outputs[0][1].full() == "float32[N,2]"
    loss = s.graph.nodes[s.graph.graph["losses"][0]]
    assert (loss["op"], loss["params"].label_smoothing) == ("CrossEntropy", 0.1)
    cfg = s.train_config
    assert (cfg.optimizer.name, cfg.schedule.name) == ("AdamW", "Cosine")
    assert netspec.load(CATS, params={"size": 96, "classes": 3}).outputs[0][1].full() == "float32[N,3]"


# ---------------------------------------------------------------- cats vs dogs, end to end

def _photo(path: Path, colour, rng, size=(40, 48)):
    """A noisy patch of one colour: two classes that a tiny CNN can tell apart at once."""
    a = rng.integers(0, 60, (*size, 3)) + np.array(colour)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def cats_run(tmp_path_factory):
    """photos/{cat,dog}/*.jpg, trained, compiled and evaluated through the CLI as the README says."""
    root = tmp_path_factory.mktemp("cats")
    rng = np.random.default_rng(0)
    for cls, colour in (("cat", (200, 120, 40)), ("dog", (40, 90, 200))):
        (root / "photos" / cls).mkdir(parents=True)
        for i in range(24):
            _photo(root / "photos" / cls / f"{i:02d}.jpg", colour, rng)
    photos, run, onnx_path = root / "photos", root / "runs" / "cats", root / "cats.onnx"
    cli = CliRunner()
    steps = [
        ["train", CATS, *SMALL, "--data", photos, "--out", run, "--epochs", "8", "--batch-size", "4",
         "--no-progress"],
        ["compile", CATS, *SMALL, "--weights", run, "-o", onnx_path],
        ["evaluate", CATS, *SMALL, onnx_path, "--data", photos],
    ]
    outputs = []
    for args in steps:
        r = cli.invoke(main, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        outputs.append(r.output)
    return {"root": root, "photos": photos, "run": run, "onnx": onnx_path, "evaluate": outputs[2]}


def test_cats_vs_dogs_trains_and_evaluates(cats_run):
    metrics = [json.loads(line) for line in (cats_run["run"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert metrics[-1]["val_accuracy"] >= 0.75
    accuracy = float(re.search(r"accuracy ([0-9.]+)", cats_run["evaluate"]).group(1))
    # weights.safetensors holds the best epoch (by val_loss), as run.json records it.
    best = json.loads((cats_run["run"] / "run.json").read_text())["best"]
    assert accuracy == pytest.approx(best["val_accuracy"])


def predict(*args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLES / "predict.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_predict_prints_one_line_per_image(cats_run, tmp_path):
    # New photos, not seen in training, one of them a PNG of another size.
    rng = np.random.default_rng(1)
    _photo(tmp_path / "new_cat.jpg", (200, 120, 40), rng)
    _photo(tmp_path / "new_dog.png", (40, 90, 200), rng, size=(70, 30))
    r = predict(cats_run["onnx"], "new_cat.jpg", "new_dog.png", "--classes", "cat,dog", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [(path, cls) for path, cls, _ in rows] == [("new_cat.jpg", "cat"), ("new_dog.png", "dog")]
    assert all(0.5 <= float(p) <= 1.0 for _, _, p in rows)


def test_predict_refuses_mistakes(cats_run, tmp_path):
    image = next((cats_run["photos"] / "cat").iterdir())
    wrong_classes = predict(cats_run["onnx"], image, "--classes", "cat,dog,bird", cwd=tmp_path)
    assert wrong_classes.returncode == 1
    assert "3 class names for a model with 2 classes" in wrong_classes.stderr
    wrong_size = predict(cats_run["onnx"], image, "--size", "64", cwd=tmp_path)
    assert wrong_size.returncode == 1 and "model takes 16x16" in wrong_size.stderr
    missing = predict(cats_run["onnx"], "nope.jpg", cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read image 'nope.jpg'" in missing.stderr
    assert "Traceback" not in wrong_classes.stderr + wrong_size.stderr + missing.stderr


def test_predict_takes_class_names_from_the_model(cats_run, tmp_path):
    named = tmp_path / "named.onnx"
    r = CliRunner().invoke(main, ["compile", str(CATS), *SMALL, "--weights", str(cats_run["run"]),
                                  "--classes", "cat,dog", "-o", str(named)])
    assert r.exit_code == 0, r.output
    image = next((cats_run["photos"] / "dog").iterdir())
    r = predict(named, image, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\t")[1] in ("cat", "dog")


def test_predict_needs_no_torch(cats_run):
    image = next((cats_run["photos"] / "dog").iterdir())
    # Importing torch fails in this interpreter: the deploy side must never need it.
    code = (f"import sys; sys.modules['torch'] = None; sys.path.insert(0, {str(EXAMPLES)!r}); import predict; "
            f"predict.main([{str(cats_run['onnx'])!r}, {str(image)!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{image}\t")


# ---------------------------------------------------------------- predict.py reads images as training does

def _load_predict():
    spec = importlib.util.spec_from_file_location("predict_example", EXAMPLES / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode, size, channels, normalize", [
    ("RGB", (40, 30), 3, None),        # resized, and not square
    ("RGB", (12, 12), 3, None),        # already the declared size: no resize
    ("L", (20, 25), 3, None),          # grey photo into an RGB model
    ("RGBA", (17, 23), 3, ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))),
    ("P", (18, 14), 1, None),          # palette image into a grey model
    ("RGB", (33, 21), 1, ((0.45,), (0.22,))),
])
def test_predict_preprocessing_matches_the_training_loader(tmp_path, mode, size, channels, normalize):
    rng = np.random.default_rng(len(mode) * 100 + size[0])
    rgba = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    # Through RGB first, so that a palette image has no transparency for Pillow to warn about.
    im = rgba if mode == "RGBA" else rgba.convert("RGB").convert(mode)
    path = tmp_path / "image.png"
    im.save(path)

    loader = ImageFolder([(path, 0)], (channels, 12, 12), "float32", TensorType("int64", ("N",)), normalize)
    expected = loader[0][0].numpy()
    mean, std = normalize or (None, None)
    got = _load_predict().load_image(str(path), channels, 12, 12, mean, std)
    assert got.dtype == np.float32 and got.shape == (channels, 12, 12)
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- the Python API example

def test_train_from_python(tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / "train_from_python.py"), "--epochs", "1",
                        "--onnx", "lenet5.onnx"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    torch_acc = float(re.search(r"^PyTorch accuracy ([0-9.]+) on 359 held-out items$", r.stdout, re.M).group(1))
    onnx_acc = float(re.search(r"^ONNX Runtime accuracy ([0-9.]+) on 359 held-out items$", r.stdout, re.M).group(1))
    # One epoch of LeNet-5 is far past chance (0.1) and ONNX Runtime agrees with PyTorch.
    assert onnx_acc > 0.3
    assert onnx_acc == pytest.approx(torch_acc, abs=0.01)
    assert (tmp_path / "lenet5.onnx").stat().st_size > 200_000
