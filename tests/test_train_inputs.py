"""Hostile and mistaken inputs to `netspec train`: each is exit 1 with a message naming the file,
line or item and the fix, found before training starts where it can be; nothing hangs."""

import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_runs import in_tmp, run, tiny_spec, write_spec  # noqa: F401 (in_tmp is a fixture)

TINY = tiny_spec(epochs=1, batch_size=256)
PETS = """
network Pets(classes = 2) {
    input image: float32[N, 3, 8, 8]
    features = image -> Conv2d(4, 3, padding=1) -> ReLU -> GlobalAvgPool -> Flatten
    output logits = features -> Linear(classes)
}
loss CrossEntropy(logits, label)
train {
    optimizer = Adam(lr=0.01)
    epochs = 1
    batch_size = 8
    NUM_WORKERS
}
"""



@pytest.fixture(autouse=True)
def _in_tmp(in_tmp):
    pass


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_spec(tmp_path, TINY)


def pets(tmp_path, num_workers=0) -> Path:
    path = tmp_path / "pets.net"
    path.write_text(PETS.replace("NUM_WORKERS", f"num_workers = {num_workers}"))
    return path


def photos(root: Path, classes=("cat", "dog", "fox"), n=4) -> Path:
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (10, 10), (80 * k, 40, 200 - 60 * k)).save(root / name / f"{i}.png")
    return root


def _user_error(r, *needles):
    assert r.exit_code == 1, r.output
    assert "internal error" not in r.output and "Traceback" not in r.output, r.output
    for needle in needles:
        assert needle in r.output, r.output


# ---------------------------------------------------------------- classes against the spec

def test_three_class_folders_for_a_two_class_spec(tmp_path):
    spec, data = pets(tmp_path), photos(tmp_path / "photos")
    r = run("train", spec, "--data", data, "--out", tmp_path / "run")
    _user_error(r, f"{spec}:5:5: error: {data} has 3 classes (cat, dog, fox) but logits has 2 outputs: "
                   "add `--set classes=3`")
    assert "epoch 1" not in r.output and not (tmp_path / "run" / "metrics.jsonl").exists()
    r = run("train", spec, "--data", "photos", "--set", "classes=3", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["classes"] == ["cat", "dog", "fox"] and rec["data"]["source"] == "photos"
    assert rec["input"]["layout"] == "NCHW" and (rec["input"]["channels"], rec["input"]["height"]) == (3, 8)
    # The run folder alone evaluates on its own split, from another folder too.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    assert run("compile", tmp_path / "run", "-o", "m.onnx").exit_code == 0
    r = run("evaluate", tmp_path / "run", "m.onnx")
    assert r.exit_code == 0, r.output
    assert f"{rec['data']['val_size']} items (val split)" in r.output


def test_the_fix_is_offered_only_when_it_works(tmp_path):
    spec = tmp_path / "fixed.net"
    spec.write_text(PETS.replace("Linear(classes)", "Linear(2)").replace("NUM_WORKERS", ""))
    r = run("train", spec, "--data", photos(tmp_path / "photos"))
    _user_error(r, "has 3 classes (cat, dog, fox) but logits has 2 outputs", "give the layer that makes logits 3 outputs")
    assert "--set classes" not in r.output


def test_a_single_class_folder(tmp_path):
    r = run("train", pets(tmp_path), "--data", photos(tmp_path / "photos", classes=("cat",)))
    _user_error(r, "has one class (cat); a classifier needs at least two")


def test_labels_of_one_class(tmp_path, tiny):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 64), np.float32), y=np.zeros(6, np.int64))
    _user_error(run("train", tiny, "--data", tmp_path / "d.npz"), "every training label is 0, so the data has one class")


def test_digits_for_a_two_class_network(tmp_path):
    r = run("train", pets(tmp_path))
    _user_error(r, "the built-in digits have 10 classes (0-9) but the classifier has 2 outputs")


@pytest.mark.parametrize("label, message", [
    ("7", "tiny.csv:3: label 7 is out of range; labels must be 0..1 (the classifier has 2 outputs)"),
    ("-1", "tiny.csv:3: label -1 is out of range"),
    ("nan", "tiny.csv:3: the label is nan"),
    ("1.5", "tiny.csv:3: the label 1.5 is not a whole number"),
    ("1e9", "tiny.csv:3: label 1e+09 is out of range"),
])
def test_csv_labels_are_checked_with_file_lines(tmp_path, label, message):
    spec = tmp_path / "two.net"
    spec.write_text(TINY.replace("classes = 10", "classes = 2").replace("[N, 64]", "[N, 2]"))
    data = tmp_path / "tiny.csv"
    data.write_text(f"a,b,label\n0,1,0\n1,0,{label}\n0,0,1\n")
    start = time.perf_counter()
    _user_error(run("train", spec, "--data", data, "--out", tmp_path / "run"), message)
    assert time.perf_counter() - start < 30  # a label of 1e9 allocates nothing for it


def test_npz_labels_strings_complex_and_huge(tmp_path, tiny):
    x = np.zeros((4, 64), np.float32)
    for y, message in ((np.array(["a", "b", "a", "b"]), "labels must be class indices (whole numbers), got text"),
                       (np.array([0, 1j, 0, 1]), "labels are complex numbers"),
                       (np.array([0, 1, 10 ** 9, 2]), "item 2: label 1e+09 is out of range; labels must be 0..9")):
        np.savez(tmp_path / "d.npz", x=x, y=y)
        _user_error(run("train", tiny, "--data", tmp_path / "d.npz", "--out", tmp_path / "r"), message)


def test_nan_in_the_data_is_blamed_on_the_data(tmp_path):
    spec = tmp_path / "two.net"
    spec.write_text(TINY.replace("[N, 64]", "[N, 2]"))
    data = tmp_path / "d.csv"
    data.write_text("a,b,label\n0,1,0\n1,nan,1\n")
    r = run("train", spec, "--data", data)
    _user_error(r, "d.csv:3: the input holds nan")
    assert "learning rate" not in r.output


def test_csv_with_a_utf8_bom_keeps_its_first_row(tmp_path):
    from netspec.data import read_csv
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeff0.5,1,0\n2,3,1\n".encode("utf-8"))
    x, y, lines = read_csv(p)
    assert x.tolist() == [[0.5, 1.0], [2.0, 3.0]] and y.tolist() == [0, 1] and lines.tolist() == [1, 2]


def test_csv_bad_value_names_its_line(tmp_path, tiny):
    p = tmp_path / "d.csv"
    p.write_text("h1,h2\n1,0\n\n2,oops\n")
    _user_error(run("train", tiny, "--data", p), "d.csv:4: cannot read 'oops' as a number")


# ---------------------------------------------------------------- files that are not data

def test_fifo_and_dev_zero_are_refused_without_blocking(tmp_path, tiny):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    start = time.perf_counter()
    _user_error(run("train", tiny, "--data", fifo), "is a FIFO, not a regular file")
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    _user_error(run("train", tiny, "--data", tmp_path / "zero.npz"), "is a device, not a regular file")
    assert time.perf_counter() - start < 30


def test_random_bytes_are_not_called_pickled_data(tmp_path, tiny):
    (tmp_path / "r.npz").write_bytes(os.urandom(2000))
    r = run("train", tiny, "--data", tmp_path / "r.npz")
    _user_error(r, "is not a .npz file (a .npz is a zip archive of .npy arrays)")
    assert "pickle" not in r.output


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height 1-bit pixels: the decompression bomb's header, without its body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_decompression_bomb_and_worker_errors_are_one_line(tmp_path, num_workers):
    data = photos(tmp_path / "photos", classes=("cat", "dog"), n=6)
    _png_header_only(data / "cat" / "bomb.png", 50_000, 50_000)
    r = run("train", pets(tmp_path, num_workers), "--data", data, "--set", "classes=2")
    _user_error(r, "cannot read image", "bomb.png", "too many pixels to decode safely")
    assert "Original Traceback" not in r.output and "worker" not in r.output


def test_corrupt_image_in_a_worker_is_one_line(tmp_path):
    data = photos(tmp_path / "photos", classes=("cat", "dog"), n=6)
    (data / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    r = run("train", pets(tmp_path, 2), "--data", data)
    _user_error(r, "cannot read image", "broken.png", "hint: remove or replace the file")
    assert "Original Traceback" not in r.output


# ---------------------------------------------------------------- settings and weights

def test_lr_past_float32_is_refused(tiny):
    _user_error(run("train", tiny, "--lr", "1e300"), "--lr: lr must be at most 3.403e+38 (float32's largest), got 1e+300")


def test_diverged_training_saves_nothing(tmp_path, tiny):
    out = tmp_path / "run"
    r = run("train", tiny, "--lr", "1e30", "--out", out)
    _user_error(r, "training diverged", "no epoch was saved")
    assert not (out / "weights.safetensors").exists() and not (out / "checkpoint.safetensors").exists()
    for name in ("metrics.jsonl",):
        assert not (out / name).exists()


def test_tensorboard_without_the_package(tmp_path, tiny, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    _user_error(run("train", tiny, "--tensorboard", "--out", tmp_path / "r"),
                "--tensorboard needs the tensorboard package", "pip install tensorboard")
    assert not (tmp_path / "r").exists()  # refused before anything was made


def test_tensorboard_events(tmp_path, tiny):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    r = run("train", tiny, "--tensorboard", "--epochs", "2", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [1, 2]
        assert [v for _, v in got] == pytest.approx([row[key] for row in rows], rel=1e-6)


def test_device_flag(tmp_path, tiny):
    import torch
    if not torch.cuda.is_available():
        _user_error(run("train", tiny, "--device", "cuda"), "torch sees no CUDA GPU")
    _user_error(run("train", tiny, "--device", "tpu"), "--device: device must be")
    r = run("train", tiny, "--device", "cpu", "--out", tmp_path / "r")
    assert r.exit_code == 0 and "device cpu" in r.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["train"]["device"] == "cpu"


def test_weights_of_the_wrong_dtype_are_refused(tmp_path, tiny):
    from safetensors.numpy import load_file, save_file
    out = tmp_path / "run"
    assert run("train", tiny, "--out", out).exit_code == 0
    arrays = load_file(str(out / "weights.safetensors"))
    for dtype in (np.float64, np.float16, np.int8):
        save_file({k: v.astype(dtype) for k, v in arrays.items()}, str(tmp_path / "w.safetensors"))
        r = run("compile", tiny, "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "m.onnx")
        _user_error(r, f"is {np.dtype(dtype).name}, the spec wants float32")


def test_weights_file_names_the_right_one(tmp_path, tiny):
    out = tmp_path / "run"
    assert run("train", tiny, "--out", out).exit_code == 0
    r = run("compile", tiny, "--weights", out / "checkpoint.safetensors", "-o", tmp_path / "m.onnx")
    _user_error(r, "is the training checkpoint", f"give {out / 'weights.safetensors'} (the best epoch)")
    r = run("compile", tiny, "--weights", out / "weigths.safetensors", "-o", tmp_path / "m.onnx")
    _user_error(r, "does not exist", f"did you mean '{out / 'weights.safetensors'}'?")


def test_an_optimizer_state_past_float32_is_divergence_too(tmp_path, tiny):
    # At lr 1e6 the weights stay finite for an epoch, but Adam's second moment overflows: a
    # checkpoint of it could never be resumed usefully, so it is not saved.
    out = tmp_path / "run"
    lenet = Path(__file__).resolve().parent.parent / "models" / "lenet5.net"
    r = run("train", lenet, "--lr", "1e6", "--epochs", "1", "--out", out)
    _user_error(r, "training diverged", "(exp_avg_sq)")
    assert not (out / "checkpoint.safetensors").exists()
