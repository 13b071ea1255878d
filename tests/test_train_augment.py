"""Augmentation in a real run: the built-in digits written as a PNG folder, a small CNN trained with
and without a random crop; the run keeps its best epoch, and augmentation does not cost accuracy."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402

import netspec  # noqa: E402
from netspec.data import DIGITS, read_csv  # noqa: E402
from netspec.train import train  # noqa: E402

CNN = """
network SmallCNN(classes = 10) {
    input image: float32[N, 1, 8, 8]
    output logits = image -> Conv2d(8, 3, padding=1) -> ReLU -> MaxPool2d(2)
                          -> Flatten -> Linear(classes)
}
loss CrossEntropy(logits, label)
train {
    optimizer = Adam(lr=0.01)
    epochs = 20
    batch_size = 20
    val_split = 0.5
    AUGMENT
}
"""


def digits_as_pngs(root, per_class: int):
    """The first `per_class` digits of each class as 8x8 grey PNGs in DIR/<digit>/."""
    x, y, _ = read_csv(DIGITS)
    count = {}
    for i, (img, label) in enumerate(zip(x, y)):
        label = int(label)
        count[label] = count.get(label, 0) + 1
        if count[label] > per_class:
            continue
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.reshape(8, 8) * 255 / 16).astype(np.uint8), "L").save(root / str(label) / f"{i:04d}.png")
    return root


def test_digits_png_folder_with_and_without_augmentation(tmp_path):
    data = digits_as_pngs(tmp_path / "digits", 20)
    results = {}
    for name, augment in (("plain", ""), ("augmented", "augment = [RandomCrop(padding=1, p=0.5)]")):
        spec_path = tmp_path / f"{name}.net"
        spec_path.write_text(CNN.replace("AUGMENT", augment))
        out = tmp_path / name
        result = train(netspec.load(spec_path), data=str(data), out_dir=out, progress=False, log=lambda *_: None)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        best = min(rows, key=lambda r: r["val_loss"])
        # The run keeps its best epoch: run.json, the result and the weights file agree on it.
        assert result["best"]["epoch"] == best["epoch"]
        assert json.loads((out / "run.json").read_text())["best"]["epoch"] == best["epoch"]
        with safe_open(str(out / "weights.safetensors"), "pt") as f:
            assert f.metadata()["epoch"] == str(best["epoch"])
        results[name] = best["val_accuracy"]
    # Measured: 0.95 without, 0.96 with (100 training images, 100 held out).
    assert results["plain"] > 0.85
    assert results["augmented"] >= results["plain"], results
