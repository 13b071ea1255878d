"""Classify images with a compiled netspec model, using only onnxruntime, numpy and Pillow.

    python examples/predict.py cats.onnx photo1.jpg photo2.png --classes cat,dog

prints one line per image: its path, the top class and its probability. This is the deploy
side: no torch and no netspec, so it runs wherever ONNX Runtime does. Images are prepared
exactly as `netspec train` read them from an image folder (netspec/data.py, ImageFolder):
converted to RGB (or grey for a 1-channel model), resized bilinearly to the model's input
size, scaled to [0, 1], laid out channels-first, and normalised only if you trained that way.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, UnidentifiedImageError


def input_layout(session, size: int | None) -> tuple[int, int, int]:
    """(channels, height, width) from the model's declared input, with --size overriding H and W."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 4:
        sys.exit(f"error: the model's input has shape {shape}; expected [N, C, H, W] images")
    channels, height, width = shape[1:]
    if channels not in (1, 3):
        sys.exit(f"error: the model wants {channels} channels; images give 1 (grey) or 3 (RGB)")
    fixed = isinstance(height, int) and isinstance(width, int)
    if size is None:
        if not fixed:
            sys.exit(f"error: the model's input size is not fixed ({shape}); give --size")
        return channels, height, width
    if fixed and (height, width) != (size, size):
        sys.exit(f"error: --size {size} but the model takes {height}x{width} images")
    return channels, size, size


def load_image(path: str, channels: int, height: int, width: int, mean=None, std=None) -> np.ndarray:
    """One image as a float32 [C, H, W] array, as netspec's ImageFolder makes it for training."""
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (width, height):
            im = im.resize((width, height), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    x = a.reshape(height, width, -1).transpose(2, 0, 1)
    if mean is not None:
        # float32 throughout, as training computed it, so the inputs match to the bit.
        x = (x - np.asarray(mean, np.float32).reshape(-1, 1, 1)) / np.asarray(std, np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the max keeps exp() from overflowing on large logits.
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print the top class of each image under an ONNX classifier.")
    p.add_argument("model", help="an .onnx file written by `netspec compile`")
    p.add_argument("images", nargs="+", help="image files (.jpg, .png, ...)")
    p.add_argument("--classes", type=lambda s: s.split(","),
                   help="class names in label order, comma-separated (the sorted folder names: cat,dog)")
    p.add_argument("--size", type=int, help="resize to SIZE x SIZE (default: the model's input size)")
    p.add_argument("--output", help="the model output holding the logits (default: the first)")
    p.add_argument("--mean", type=floats, help="per-channel mean, if training normalised the images")
    p.add_argument("--std", type=floats, help="per-channel std, with --mean")
    args = p.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        p.error("--mean and --std go together")

    try:
        session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for a bad file
        sys.exit(f"error: cannot load '{args.model}': {str(e).splitlines()[0]}")
    channels, height, width = input_layout(session, args.size)
    if args.mean is not None and not (len(args.mean) == len(args.std) == channels):
        p.error(f"--mean and --std need {channels} values each")

    batch = []
    for path in args.images:
        try:
            batch.append(load_image(path, channels, height, width, args.mean, args.std))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            sys.exit(f"error: cannot read image '{path}': {e}")
    output = args.output or session.get_outputs()[0].name
    logits = session.run([output], {session.get_inputs()[0].name: np.stack(batch)})[0]
    if logits.ndim != 2:
        sys.exit(f"error: output '{output}' has shape {list(logits.shape)}; expected [N, classes] logits")
    if args.classes is not None and len(args.classes) != logits.shape[1]:
        sys.exit(f"error: {len(args.classes)} class names for a model with {logits.shape[1]} classes")

    probs = softmax(logits.astype(np.float64))
    for path, row in zip(args.images, probs):
        top = int(row.argmax())
        name = args.classes[top] if args.classes else str(top)
        print(f"{path}\t{name}\t{row[top]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
