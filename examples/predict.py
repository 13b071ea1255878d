"""Classify images with a compiled netspec model: a thin script over `netspec.predict`.

    python examples/predict.py cats.onnx photo1.jpg photo2.png

prints one line per image: its path, the top class and its probability. The model's metadata
gives the class names and how to prepare an image (`netspec compile` records them); the options
override it for a model that lacks them. Only ONNX Runtime, numpy and Pillow run: no torch.
`netspec predict MODEL PATH...` does the same with folders, .npz files, --top-k, --json and --csv.

Images are prepared exactly as `netspec train` read them from an image folder
(netspec/data.py, ImageFolder): converted to RGB (or grey for a 1-channel model), resized
bilinearly to the model's input size, scaled to [0, 1], laid out channels-first, and normalised
only if the model says it was trained that way (or with --mean and --std).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from PIL import Image

from netspec.errors import NetspecError
from netspec.predict import as_text, classify, contract, load_image, session, softmax  # noqa: F401

__all__ = ["load_image", "softmax", "main"]


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print the top class of each image under an ONNX classifier.")
    p.add_argument("model", help="an .onnx file written by `netspec compile`")
    p.add_argument("images", nargs="+", help="image files (.jpg, .png, ...)")
    p.add_argument("--classes", type=lambda s: s.split(","),
                   help="class names in label order, comma-separated (default: the model's metadata)")
    p.add_argument("--size", type=int, help="resize to SIZE x SIZE (default: the model's input size)")
    p.add_argument("--output", help="the model output holding the logits (default: the metadata's, else the first)")
    p.add_argument("--mean", type=floats, help="per-channel mean, if training normalised the images")
    p.add_argument("--std", type=floats, help="per-channel std, with --mean")
    args = p.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        p.error("--mean and --std go together")
    try:
        sess = session(args.model, ["CPUExecutionProvider"])
        c = contract(sess, args.output)
    except NetspecError as e:
        sys.exit(f"error: {e.diagnostics[0].message}")
    if not c.image:
        sys.exit(f"error: the model's input has shape {['N', *c.shape]}; expected [N, C, H, W] images")
    if args.size is not None:
        if c.height is not None and (c.height, c.width) != (args.size, args.size):
            sys.exit(f"error: --size {args.size} but the model takes {c.height}x{c.width} images")
        c = replace(c, height=args.size, width=args.size)
    elif c.height is None or c.width is None:
        sys.exit(f"error: the model's input size is not fixed ({['N', *c.shape]}); give --size")
    if args.mean is not None:
        if not len(args.mean) == len(args.std) == c.channels:
            p.error(f"--mean and --std need {c.channels} values each")
        c = replace(c, mean=tuple(args.mean), std=tuple(args.std))
    if args.classes is not None:
        c = replace(c, classes=tuple(args.classes))

    arrays = []
    for path in args.images:
        try:
            arrays.append((path, load_image(path, c.channels, c.height, c.width, c.mean, c.std)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # Pillow's errors
            sys.exit(f"error: cannot read image '{path}': {e}")
    try:
        for result in classify(sess, c, iter(arrays), batch_size=len(arrays)):
            print(as_text(result))
    except NetspecError as e:
        sys.exit(f"error: {e.diagnostics[0].message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
