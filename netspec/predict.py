"""Classify images or arrays with a compiled model: ONNX Runtime, numpy and Pillow only.

The model's `metadata_props` (netspec.metadata) say how to prepare an input and what the
classes are called, so a deployment needs nothing but the .onnx file. Nothing here imports torch,
and a model from elsewhere still runs: its input shape gives the layout, its classes are indices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataProblem
from .file_kinds import check_input, neighbour_hint, special_kind

# The suffixes netspec.data reads as images (kept equal by a test; that module is for training).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def session(model_path, providers: list[str] | None = None):
    """An ONNX Runtime session on `providers` (in order of preference), or on the best available."""
    import onnxruntime as ort
    path = Path(model_path)
    check_input(path, hint="give an .onnx file that `netspec compile` wrote")
    if not path.is_file():
        near = neighbour_hint(path, (".onnx",), ".onnx files")
        raise DataProblem(f"ONNX model '{model_path}' does not exist",
                          hint=near if near.startswith("did you mean") else f"{near}; write one with `netspec compile`")
    available = ort.get_available_providers()
    unknown = [p for p in providers or () if p not in available]
    if unknown:
        raise DataProblem(f"ONNX Runtime has no provider {', '.join(repr(p) for p in unknown)} here",
                          hint="available: " + ", ".join(available))
    chosen = list(providers) if providers else [p for p in PREFERRED_PROVIDERS if p in available]
    try:
        return ort.InferenceSession(str(path), providers=chosen)
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable models
        missing = _missing_side_files(path)
        if missing:
            raise DataProblem(f"'{model_path}' keeps its weights in {', '.join(repr(m) for m in missing)} beside it, "
                              "which is missing", hint="copy the model together with its .data file "
                              "(or compile with --single-file for one file)") from None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataProblem(f"ONNX Runtime cannot load '{model_path}': {first}") from None


def _missing_side_files(path: Path) -> list[str]:
    """The external-data files that the model at `path` names and its folder lacks."""
    from .lower_onnx import side_files
    return sorted(n for n in side_files(path) if not (path.parent / n).is_file())


def model_metadata(sess) -> dict:
    """The model's netspec metadata, JSON values decoded ({} for a model from elsewhere)."""
    from .metadata import read
    return read(sess.get_modelmeta().custom_metadata_map)


@dataclass(frozen=True)
class Contract:
    """How to feed the model one item, and how to name what comes out."""

    input: str
    output: str
    shape: tuple  # per item, after the batch dim
    channels: int | None = None  # an image model: [N, C, H, W]
    height: int | None = None
    width: int | None = None
    mean: tuple | None = None  # applied by the caller after scaling to [0, 1]
    std: tuple | None = None
    classes: tuple | None = None

    @property
    def image(self) -> bool:
        return self.channels is not None


def contract(sess, output: str | None = None) -> Contract:
    """The input contract and class names from the model's metadata, else from its input shape."""
    meta = model_metadata(sess)
    first = sess.get_inputs()[0]
    outputs = [o.name for o in sess.get_outputs()]
    name = output or (meta.get("output") or {}).get("name") or outputs[0]
    if name not in outputs:
        raise DataProblem(f"the model has no output '{name}'", hint="its outputs: " + ", ".join(outputs))
    shape = tuple(first.shape[1:])
    c = Contract(input=first.name, output=name, shape=shape)
    recorded = meta.get("input") or {}
    if len(first.shape) == 4 and shape[0] in (1, 3):
        c = replace(c, channels=shape[0], height=shape[1] if isinstance(shape[1], int) else None,
                    width=shape[2] if isinstance(shape[2], int) else None)
        if recorded.get("mean") is not None:
            c = replace(c, mean=tuple(recorded["mean"]), std=tuple(recorded["std"]))
    if meta.get("classes"):
        c = replace(c, classes=tuple(meta["classes"]))
    return c


def load_image(path, channels: int, height: int, width: int, mean=None, std=None) -> np.ndarray:
    """One image as a float32 [C, H, W] array, exactly as netspec.data.ImageFolder reads it.

    Converted to RGB (grey for one channel), resized bilinearly, scaled to [0, 1], channels
    first, then normalised with the caller's mean and std if the model wants it.
    """
    from PIL import Image
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


def _image_errors():
    from PIL import Image, UnidentifiedImageError
    return (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Item:
    """One thing to classify: an image file, or row `index` of an .npz's `x`."""

    path: Path
    index: int | None = None

    def __str__(self) -> str:
        return str(self.path) if self.index is None else f"{self.path}[{self.index}]"


def gather(paths, problems: list[str]) -> list[Item]:
    """Images named, images under folders (recursively, sorted) and .npz files; the rest is a problem."""
    items = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                problems.append(f"'{path}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            items += [Item(p) for p in found]
        elif not path.exists():
            problems.append(f"cannot read '{path}': no such file or folder")
        elif kind := special_kind(path):  # a FIFO or a device would block the read forever
            problems.append(f"cannot read '{path}': it is {kind}, not a regular file")
        elif path.suffix.lower() == ".npz":
            items.append(Item(path, -1))  # expanded into rows when it is read
        else:
            items.append(Item(path))
    return items


def _npz_rows(path: Path, c: Contract) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise DataProblem(f"'{path}' has no array 'x' (found {', '.join(z.files) or 'none'})",
                                  hint="numpy.savez(path, x=inputs)")
            x = z["x"]
    except (ValueError, OSError, EOFError) as e:
        raise DataProblem(f"cannot read '{path}' as a .npz: {e}") from None
    fixed = tuple(d for d in c.shape if isinstance(d, int))
    if len(fixed) == len(c.shape) and x.shape[1:] != c.shape:
        if x.ndim == 2 and x.shape[1] == int(np.prod(c.shape)):
            x = x.reshape((len(x), *c.shape))
        else:
            raise DataProblem(f"'{path}': items of shape {list(x.shape[1:])} do not fit the model's "
                              f"input {list(c.shape)}")
    if x.dtype.kind not in "biuf":
        raise DataProblem(f"'{path}': x must hold numbers, not {x.dtype}")
    return x


def read_items(items: list[Item], c: Contract, problems: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(label, array) per item; unreadable ones are named in `problems` and skipped."""
    for item in items:
        if item.index == -1:
            try:
                rows = _npz_rows(item.path, c)
            except DataProblem as e:
                problems.append(e.diagnostics[0].message)
                continue
            for i, row in enumerate(rows):
                yield str(Item(item.path, i)), row.astype(np.float32, copy=False)
            continue
        if not c.image:
            problems.append(f"cannot read '{item}': the model's input {list(c.shape)} is not an image; "
                            "give an .npz with x")
            continue
        try:
            yield str(item), load_image(item.path, c.channels, c.height, c.width, c.mean, c.std)
        except _image_errors() as e:
            problems.append(f"cannot read image '{item}': {e}")


def softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the max keeps exp() from overflowing on large logits.
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check_classes(c: Contract, width: int) -> None:
    if c.classes is not None and len(c.classes) != width:
        raise DataProblem(f"{len(c.classes)} class names for a model with {width} classes",
                          hint="the names must follow the label order of the model's output")


def classify(sess, c: Contract, labelled: Iterator[tuple[str, np.ndarray]], batch_size: int = 32,
             top_k: int = 1) -> Iterator[dict]:
    """{"item", "top": [{"class", "index", "score"}...]} per item, in order, `top_k` best first."""
    def flush(batch):
        labels, arrays = zip(*batch)
        try:
            logits = sess.run([c.output], {c.input: np.stack(arrays)})[0]
        except Exception as e:  # onnxruntime's own error types
            raise DataProblem(f"ONNX Runtime failed on {labels[0]}...: {str(e).splitlines()[0]}") from None
        if logits.ndim != 2:
            raise DataProblem(f"output '{c.output}' has shape {list(logits.shape)}; expected [N, classes] logits",
                              hint="name the logits output with --output")
        check_classes(c, logits.shape[1])
        probs = softmax(logits.astype(np.float64))
        k = min(top_k, probs.shape[1])
        for label, row in zip(labels, probs):
            best = np.argsort(-row, kind="stable")[:k]
            yield {"item": label, "top": [{"class": c.classes[i] if c.classes else str(int(i)),
                                           "index": int(i), "score": float(row[i])} for i in best]}

    batch = []
    for pair in labelled:
        batch.append(pair)
        if len(batch) == batch_size:
            yield from flush(batch)
            batch = []
    if batch:
        yield from flush(batch)


def as_text(result: dict) -> str:
    """`path<TAB>class<TAB>score`, and one more class and score per extra rank."""
    return "\t".join([result["item"]] + [f"{t['class']}\t{t['score']:.3f}" for t in result["top"]])


def as_csv_rows(result: dict) -> list[list]:
    return [[result["item"], rank, t["class"], t["index"], f"{t['score']:.6f}"]
            for rank, t in enumerate(result["top"], 1)]


CSV_HEADER = ["item", "rank", "class", "index", "score"]


def as_json(results: list[dict]) -> str:
    return json.dumps(results, indent=2)
