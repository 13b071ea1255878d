"""Deployment variants: LeNet-5 accuracy and ResNet-50 ORT CPU latency, fp32 vs opt vs fp16 vs int8.

    python bench/bench_variants.py [--runs 20] [--threads 2]

Writes its section of bench/RESULTS.md. Everything goes through the `netspec` command, as a user
would run it; only the latency loop calls ONNX Runtime directly.
"""

from __future__ import annotations

import argparse
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

KINDS = [("fp32", ""), ("opt", ".opt"), ("fp16", ".fp16"), ("int8", ".int8")]
FLAGS = ["--optimize", "--float16", "--int8"]


def netspec(*args) -> str:
    r = subprocess.run([python(), "-m", "netspec", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"netspec {' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.is_file()) / 1e6


def lenet(tmp: Path) -> list[str]:
    netspec("train", "models/lenet5.net", "--out", tmp / "l5", "--no-progress")
    out = tmp / "lenet5.onnx"
    netspec("compile", "models/lenet5.net", "-w", tmp / "l5", "-o", out, *FLAGS)
    rows = ["| variant | val accuracy | train accuracy | file KB |", "| --- | ---: | ---: | ---: |"]
    for kind, infix in KINDS:
        path = out.with_name(f"lenet5{infix}.onnx")
        acc = {}
        for split in ("val", "train"):
            text = netspec("evaluate", "models/lenet5.net", path, "--split", split)
            acc[split] = re.search(r"accuracy ([0-9.]+)", text).group(1)
        rows.append(f"| {kind} | {acc['val']} | {acc['train']} | {size_mb(path) * 1e3:.0f} |")
    return rows


def resnet(tmp: Path, runs: int, threads: int) -> list[str]:
    import onnxruntime as ort
    out = tmp / "resnet50.onnx"
    netspec("compile", "models/resnet.net:ResNet50", "-o", out, *FLAGS)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sessions = {}
    for kind, infix in KINDS:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sessions[kind] = ort.InferenceSession(str(out.with_name(f"resnet50{infix}.onnx")), so,
                                              providers=["CPUExecutionProvider"])
    ref = sessions["fp32"].run(None, {"image": x})[0]
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"image": x})
    for _ in range(runs):  # taking turns, so drift in the machine's speed hits every variant alike
        for kind, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {"image": x})
            times[kind].append(time.perf_counter() - start)
    base = statistics.median(times["fp32"])
    rows = ["| variant | median ms | min-max ms | vs fp32 | file MB | max abs diff / max abs output |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, infix in KINDS:
        t = times[kind]
        y = sessions[kind].run(None, {"image": x})[0]
        diff = np.abs(y - ref).max() / np.abs(ref).max()
        rows.append(f"| {kind} | {statistics.median(t) * 1e3:.1f} | {min(t) * 1e3:.1f}-{max(t) * 1e3:.1f} | "
                    f"{statistics.median(t) / base:.2f}x | {size_mb(out.with_name(f'resnet50{infix}.onnx')):.1f} | "
                    f"{diff:.1e} |")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        l5 = lenet(tmp)
        r50 = resnet(tmp, args.runs, args.threads)
    text = "\n".join([
        "## Deployment variants: `netspec compile --optimize --float16 --int8`",
        "",
        header(),
        versions("onnx", "onnxruntime", "numpy") + ".",
        "",
        "LeNet-5 trained on the built-in digits (`netspec train models/lenet5.net`, its defaults), each "
        "variant run by `netspec evaluate` (ORT CPU):",
        "",
        *l5,
        "",
        f"ResNet-50 (fresh weights, seed 0), batch 1x3x224x224, ONNX Runtime CPU provider, {args.threads} "
        f"intra-op threads; median of {args.runs} runs after 3 warm-ups, variants taking turns "
        "(`python bench/bench_variants.py`):",
        "",
        *r50,
    ])
    write_section("bench_variants", text)
    print(text)


if __name__ == "__main__":
    main()
