"""What augmentation costs per item: each op alone and a typical pipeline, on one thread.

    python bench/bench_augment.py [--items 200] [--write]

One thread, as in a DataLoader worker. Prints a table of milliseconds per item (median over
items, each with its own generator); --write also puts it in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import header, versions, write_section  # noqa: E402

from netspec import augment as A  # noqa: E402

OPS = {
    "RandomResizedCrop": [{"name": "RandomResizedCrop", "p": 1.0}],
    "RandomCrop(padding=4, reflect)": [{"name": "RandomCrop", "padding": 4, "padding_mode": "reflect"}],
    "HorizontalFlip(p=1)": [{"name": "HorizontalFlip", "p": 1.0}],
    "Rotation(degrees=15)": [{"name": "Rotation", "degrees": 15}],
    "ColorJitter(0.4, 0.4, 0.4, 0.1)": [{"name": "ColorJitter", "brightness": 0.4, "contrast": 0.4,
                                          "saturation": 0.4, "hue": 0.1}],
    "RandomErasing(p=1)": [{"name": "RandomErasing", "p": 1.0}],
    "typical: crop, flip, jitter, erasing": [{"name": "RandomResizedCrop"}, "HorizontalFlip",
                                             {"name": "ColorJitter", "brightness": 0.4, "contrast": 0.4,
                                              "saturation": 0.4, "hue": 0.1}, "RandomErasing"],
}
SIZES = [(3, 32, 32), (3, 224, 224)]


def per_item_ms(ops, shape, items: int) -> float:
    t = A.item_transform(A.parse_augment(ops))
    x = torch.rand(*shape)
    times = []
    for i in range(items + 5):
        g = A.item_generator(0, 0, i)
        start = time.perf_counter()
        t(x, g)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[5:])


def batch_ms(ops, shape, batch: int, steps: int) -> float:
    b = A.batch_transform(A.parse_augment(ops))
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    times = []
    for s in range(steps + 3):
        g = A.batch_generator(0, 0, s)
        start = time.perf_counter()
        b(x, y, 10, g)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[3:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["## Augmentation cost per item (`python bench/bench_augment.py`)", "",
             header(), versions("torch", "numpy") + ".",
             f"One thread; median over {args.items} items, each with its own generator; float32 input.", "",
             "| augment | " + " | ".join(f"ms per item {c}x{h}x{w}" for c, h, w in SIZES) + " |",
             "| --- | " + " | ".join("---:" for _ in SIZES) + " |"]
    for name, ops in OPS.items():
        cells = [f"{per_item_ms(ops, s, args.items):.3f}" for s in SIZES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| batch op, batch of 64 | " + " | ".join(f"ms per batch {c}x{h}x{w}" for c, h, w in SIZES) + " |",
              "| --- | " + " | ".join("---:" for _ in SIZES) + " |"]
    for name, ops in {"Mixup(p=1)": ["Mixup"], "CutMix(p=1)": ["CutMix"]}.items():
        cells = [f"{batch_ms(ops, s, 64, 30):.2f}" for s in SIZES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("bench_augment", text)


if __name__ == "__main__":
    main()
