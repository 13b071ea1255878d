"""An image folder through netspec's loader vs a hand-written PIL + DataLoader loop over the same files.

    python bench/bench_imagefolder.py [--images 300] [--rounds 9] [--write]

Generates class folders of JPEGs and PNGs in a temporary folder, then times whole passes over
them (batch 64, no workers, as one DataLoader worker would see them) with netspec's
`load_dataset` and with the Dataset a user would write by hand (PIL open, convert, resize,
numpy to a CHW float32 tensor, normalized with constants made once). The two take turns, one
pass each per round; medians. Both produce the same items, which the script checks bitwise.
--write also puts the table in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import header, versions, write_section  # noqa: E402

from netspec.data import load_dataset  # noqa: E402
from netspec.types import TensorType  # noqa: E402

CLASSES = 3
BATCH = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# (label, file suffix, stored size, declared size, normalize)
CASES = [
    ("JPEG 64x64 -> [3, 64, 64]", ".jpg", 64, 64, False),
    ("PNG 48x48 -> [3, 32, 32], resized, normalized", ".png", 48, 32, True),
]


class HandWritten(torch.utils.data.Dataset):
    """What a user writes without netspec: PIL in, float CHW tensor out."""

    def __init__(self, root: Path, size: int, normalize: bool):
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).iterdir())]
        self.size = size
        self.mean = torch.tensor(MEAN).reshape(3, 1, 1) if normalize else None
        self.std = torch.tensor(STD).reshape(3, 1, 1) if normalize else None

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
        x = torch.from_numpy(a).permute(2, 0, 1).contiguous()
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x, label


def make_images(root: Path, n: int, suffix: str, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % CLASSES}"
        d.mkdir(parents=True, exist_ok=True)
        # Smooth gradients plus noise: realistic for the codecs, not a constant image.
        yy, xx = np.mgrid[0:size, 0:size]
        base = (xx[..., None] * rng.uniform(1, 4, 3) + yy[..., None] * rng.uniform(1, 4, 3)) % 256
        img = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:04d}{suffix}", quality=90) if suffix == ".jpg" \
            else Image.fromarray(img).save(d / f"{i:04d}{suffix}")


def one_pass(ds) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=False, num_workers=0)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def run_case(root: Path, size: int, normalize: bool, rounds: int) -> dict:
    item = TensorType("float32", ("N", 3, size, size))
    ours, _, _ = load_dataset(root, item, TensorType("int64", ("N",)), val_split=0.0, seed=0,
                              normalize=(MEAN, STD) if normalize else None)
    ref = HandWritten(root, size, normalize)
    # Same files, same order: a pass decodes the same images (the split shuffles netspec's list).
    ours.samples = sorted(ours.samples)
    ref.samples = sorted(ref.samples)
    for i in range(len(ref)):
        (a, ya), (b, yb) = ours[i], ref[i]
        if not torch.equal(a, b) or int(ya) != yb or a.dtype != b.dtype:
            raise SystemExit(f"item {i} differs between netspec and the hand-written loop")
    one_pass(ours), one_pass(ref)  # warm the file cache and both code paths
    t_ours, t_ref = [], []
    for r in range(rounds):
        # Who goes first alternates, so neither gains from the other's warm caches.
        if r % 2:
            t_ref.append(one_pass(ref))
            t_ours.append(one_pass(ours))
        else:
            t_ours.append(one_pass(ours))
            t_ref.append(one_pass(ref))
    n = len(ref)
    # The decode alone (PIL open, convert, resize, asarray): what neither loader can avoid.
    start = time.perf_counter()
    for path, _ in ref.samples:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            np.asarray(im)
    decode = time.perf_counter() - start
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    return {"n": n, "ours": mo, "ref": mr, "ratio": mo / mr, "decode_us": 1e6 * decode / n,
            "ours_us": 1e6 * mo / n, "ref_us": 1e6 * mr / n, "ratios": [a / b for a, b in zip(t_ours, t_ref)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, suffix, stored, size, normalize in CASES:
            root = Path(tmp) / suffix[1:]
            make_images(root, args.images, suffix, stored)
            r = run_case(root, size, normalize, args.rounds)
            q = sorted(r["ratios"])
            rows.append(f"| {label} | {r['n']} | {r['ours_us']:.0f} | {r['ref_us']:.0f} | {r['decode_us']:.0f} "
                        f"| **{r['ratio']:.3f}x** | {statistics.median(q):.3f} ({q[0]:.3f}-{q[-1]:.3f}) |")
            print(rows[-1], flush=True)
    lines = ["## Image folder: `netspec.data` vs a hand-written PIL + DataLoader loop "
             "(`python bench/bench_imagefolder.py --write`)", "",
             header(), versions("torch", "numpy", "pillow") + ".",
             f"{args.images} generated images in {CLASSES} class folders; one pass = every image through a "
             f"`DataLoader(batch_size={BATCH}, num_workers=0)` on one thread; the two loaders take turns (who goes "
             f"first alternates), {args.rounds} passes each after a warm-up; ratio = median pass / median pass. The hand-written Dataset opens, converts "
             "and resizes with PIL, divides by 255 in numpy and normalizes with constants made once; the "
             "script checks that both give bitwise the same items. Decode = PIL open, convert, resize and "
             "`np.asarray` alone.", "",
             "| images | items | netspec us/item | hand-written us/item | decode us/item | netspec / hand-written "
             "| per-round ratio, median (min-max) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |", *rows]
    print("\n".join(lines))
    if args.write:
        write_section("bench_imagefolder", "\n".join(lines))


if __name__ == "__main__":
    main()
