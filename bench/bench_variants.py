"""Deployment variants: accuracy and ORT CPU latency, float32 vs dynamic int8 vs static (calibrated) int8.

    python bench/bench_variants.py [--runs 20] [--threads 2]

- accuracy: LeNet-5 trained on the built-in digits, and a CNN (examples/cats_vs_dogs.net at
  32x32) trained on a generated folder of shape images, every variant run by `netspec evaluate`;
- latency: ResNet-50 and MobileNetV2 (fresh weights) at batch 1 and 16, float32, dynamic int8 and
  static int8 sessions taking turns in one loop, so a machine shared with other work slows each
  alike; ratios to float32 are the figures to read. The load average is recorded before and after.

Writes its section of bench/RESULTS.md. Everything but the latency loop goes through the `netspec`
command, as a user would run it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, python, versions, write_section  # noqa: E402

SHAPES = ("disc", "square", "bar")
FOLDER_NET = ["examples/cats_vs_dogs.net", "--set", "size=32", "--set", "width=8", "--set", "classes=3"]


def netspec(*args) -> str:
    r = subprocess.run([python(), "-m", "netspec", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"netspec {' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.is_file()) / 1e6


def variant(out: Path, tag: str) -> Path:
    return out if not tag else out.with_name(out.name.replace(".onnx", f".{tag}.onnx"))


def accuracy_rows(spec: list, out: Path, static: dict, data: list) -> list[str]:
    """Rows of val/train accuracy per variant; `static` holds the statically quantized files by label."""
    files = [("fp32", out), ("opt", variant(out, "opt")), ("fp16", variant(out, "fp16")),
             ("int8 dynamic", variant(out, "int8")), *static.items()]
    rows = ["| variant | val accuracy | train accuracy | vs fp32 (val, points) | file KB |",
            "| --- | ---: | ---: | ---: | ---: |"]
    base = None
    for kind, path in files:
        acc = {}
        for split in ("val", "train"):
            text = netspec("evaluate", *spec, path, "--split", split, *data)
            acc[split] = float(re.search(r"accuracy ([0-9.]+)", text).group(1))
        base = acc["val"] if base is None else base
        rows.append(f"| {kind} | {acc['val']:.4f} | {acc['train']:.4f} | {100 * (acc['val'] - base):+.2f} | "
                    f"{size_mb(path) * 1e3:.0f} |")
    return rows


def compile_all(spec: list, weights, out: Path, calibrate) -> dict:
    """float32 + opt + fp16 + dynamic int8 at `out`; static int8 beside it, calibrated by each method."""
    netspec("compile", *spec, "-w", weights, "-o", out, "--optimize", "--float16", "--int8")
    static = {}
    for method in ("minmax", "percentile"):
        static_out = out.with_name(f"static_{method}_" + out.name)
        netspec("compile", *spec, "-w", weights, "-o", static_out, "--int8", "--calibrate", calibrate,
                "--calibration-method", method)
        static[f"int8 static ({method})"] = variant(static_out, "int8")
    return static


def shape_folder(root: Path, per_class: int, size: int, seed: int = 0) -> Path:
    """A folder of noisy shape images (disc, square, bar) in random colours, places and sizes."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    for label in SHAPES:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            bg = tuple(int(v) for v in rng.integers(0, 256, 3))
            fg = tuple(int(v) for v in rng.integers(0, 256, 3))
            im = Image.new("RGB", (size, size), bg)
            d = ImageDraw.Draw(im)
            r = int(rng.integers(size // 6, size // 3))
            cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
            if label == "disc":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
            elif label == "square":
                d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
            else:
                d.rectangle([cx - r, cy - r // 3, cx + r, cy + r // 3], fill=fg)
            a = np.asarray(im, np.int16) + rng.integers(-40, 41, (size, size, 3))
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(root / label / f"{i:03d}.png")
    return root


def accuracy(tmp: Path) -> tuple[list[str], list[str]]:
    lenet = ["models/lenet5.net"]
    netspec("train", *lenet, "--out", tmp / "l5", "--no-progress")
    static = compile_all(lenet, tmp / "l5", tmp / "lenet5.onnx", "digits")
    digits = accuracy_rows(lenet, tmp / "lenet5.onnx", static, [])

    shapes = shape_folder(tmp / "shapes", 200, 48)
    netspec("train", *FOLDER_NET, "--data", shapes, "--out", tmp / "shapes_run", "--epochs", "12",
            "--no-progress")
    static = compile_all(FOLDER_NET, tmp / "shapes_run", tmp / "shapes.onnx", shapes)
    folder = accuracy_rows(FOLDER_NET, tmp / "shapes.onnx", static, ["--data", shapes])
    return digits, folder


def latency(tmp: Path, runs: int, threads: int) -> list[str]:
    import onnxruntime as ort
    calib = shape_folder(tmp / "calib224", 32, 224, seed=1)
    rows = ["| model | batch | fp32 ms | int8 dynamic ms | int8 static ms | dynamic / fp32 | static / fp32 | "
            "static max abs diff / max abs output |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, target in (("ResNet-50", "models/resnet.net:ResNet50"), ("MobileNetV2", "models/mobilenet.net")):
        out = tmp / f"{name}.onnx"
        netspec("compile", target, "-o", out, "--int8")
        static_out = tmp / f"{name}_static.onnx"
        netspec("compile", target, "-o", static_out, "--int8", "--calibrate", calib)
        files = {"fp32": out, "dynamic": variant(out, "int8"), "static": variant(static_out, "int8")}
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sessions = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in files.items()}
        for batch in (1, 16):
            x = np.random.default_rng(batch).random((batch, 3, 224, 224), dtype=np.float32)
            ref = sessions["fp32"].run(None, {"image": x})[0]
            for s in sessions.values():
                for _ in range(2):
                    s.run(None, {"image": x})
            times = {k: [] for k in sessions}
            n = runs if batch == 1 else max(3, runs // 4)
            for _ in range(n):  # taking turns: drift in the machine's speed hits every file alike
                for kind, s in sessions.items():
                    start = time.perf_counter()
                    s.run(None, {"image": x})
                    times[kind].append(time.perf_counter() - start)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            y = sessions["static"].run(None, {"image": x})[0]
            diff = np.abs(y - ref).max() / np.abs(ref).max()
            rows.append(f"| {name} | {batch} | {med['fp32']:.1f} | {med['dynamic']:.1f} | {med['static']:.1f} | "
                        f"{med['dynamic'] / med['fp32']:.2f} | {med['static'] / med['fp32']:.2f} | {diff:.1e} |")
    return rows


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    load_start = load()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lat = latency(tmp, args.runs, args.threads)
        load_mid = load()
        digits, folder = accuracy(tmp)
    text = "\n".join([
        "## Deployment variants: float32 vs dynamic int8 vs static int8 (`--int8 --calibrate`)",
        "",
        header(),
        versions("onnx", "onnxruntime", "numpy") + ".",
        f"Load average (1, 5, 15 min) at the start {load_start}, after the latency runs {load_mid}, "
        f"at the end {load()}: the machine is shared, so read the ratios, which come from sessions "
        "taking turns in one loop.",
        "",
        f"Latency, ONNX Runtime CPU provider, {args.threads} intra-op threads, fresh weights (seed 0); "
        f"median of {args.runs} runs at batch 1 and {max(3, args.runs // 4)} at batch 16 after 2 warm-ups; "
        "static int8 calibrated on 64 generated 224x224 images:",
        "",
        *lat,
        "",
        "LeNet-5 trained on the built-in digits (`netspec train models/lenet5.net`, its defaults), "
        "static int8 calibrated on 256 training digits (`--calibrate digits`), each file run by "
        "`netspec evaluate` (359 held-out digits):",
        "",
        *digits,
        "",
        "A folder-of-images CNN (`examples/cats_vs_dogs.net --set size=32 --set width=8 --set classes=3`, "
        "12 epochs) on 600 generated 48x48 images of discs, squares and bars in random colours with "
        "noise, static int8 calibrated on 256 of its training images (`--calibrate FOLDER`):",
        "",
        *folder,
    ])
    write_section("bench_variants", text)
    print(text)


if __name__ == "__main__":
    main()
