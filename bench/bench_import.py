"""Time `netspec weights import` on full-size state dicts in torchvision's layout.

The source files are written first from tests/tv_layouts.py (random weights; torchvision itself
is not installed), then each import runs as its own process: wall seconds and peak memory.
Run: python bench/bench_import.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, header, run_measured

sys.path.insert(0, str(ROOT))

CASES = [  # (file stem, builder, spec)
    ("resnet50", lambda tv: tv.resnet("resnet50"), "models/resnet.net:ResNet50"),
    ("resnet152", lambda tv: tv.resnet("resnet152"), "models/resnet.net:ResNet152"),
    ("vgg16", lambda tv: tv.vgg16(), "models/vgg.net:VGG16"),
    ("mobilenet_v2", lambda tv: tv.MobileNetV2(), "models/mobilenet.net:MobileNetV2"),
    ("googlenet", lambda tv: tv.GoogLeNet(), "models/googlenet.net:GoogLeNet"),
    ("vit_b_16", lambda tv: tv.vit_b_16(), "models/transformer.net:ViT_B_16"),
]


def write_sources(folder: Path) -> None:
    import torch
    from tests import tv_layouts as tv
    for stem, make, _ in CASES:
        torch.save(tv.build(make, tv).state_dict(), folder / f"{stem}.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--write-sources", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_sources:
        write_sources(args.write_sources)
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="netspec-import-"))
    folder.mkdir(parents=True, exist_ok=True)
    # In a process of its own: a child forked from a parent holding the models would report
    # the parent's memory as its peak.
    subprocess.run([sys.executable, __file__, "--write-sources", str(folder)], check=True)
    netspec = [sys.executable, "-m", "netspec"]
    rows = []
    for stem, _, spec in CASES:
        src, out = folder / f"{stem}.pth", folder / f"{stem}.safetensors"
        out.unlink(missing_ok=True)
        seconds, peak = run_measured([*netspec, "weights", "import", str(src), "--spec", spec, "-o", str(out)])
        if not out.is_file():
            raise SystemExit(f"{stem}: the import wrote nothing")
        rows.append(f"{stem:<14} {src.stat().st_size / 1e6:>7.1f} {seconds:>8.2f} {peak / 1e6:>8.0f}")
    print(header())
    print(f"{'source':<14} {'MB':>7} {'seconds':>8} {'peak MB':>8}")
    print("\n".join(rows))
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
