"""Forward time of netspec's generated ResNet-50 against the same network written by hand in PyTorch.

Usage: python bench/bench_forward.py [--runs 15] [--batch 8]

Both modules get the same weights, run in eval mode under torch.inference_mode on 2 threads,
taking turns so that drift on a shared machine hits both alike; the median of --runs each after
two warm-ups. The hand-written network runs twice over: torchvision-style, with in-place ReLUs,
and with out-of-place ReLUs, the very ops the generated module calls, which isolates the cost
of the generated code itself. The outputs are compared, so that the modules
really are one network. Writes its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, versions, write_section  # noqa: E402

TARGET = "models/resnet.net:ResNet50"
GENERATED = "netspec to_torch()"
HAND = "hand-written, in-place ReLU (torchvision-style)"
HAND_SAME_OPS = "hand-written, out-of-place ReLU (the generated module's ops)"


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: the stride sits on the 3x3 convolution."""

    def __init__(self, cin: int, width: int, stride: int = 1, inplace: bool = True):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=inplace)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000, depths=(3, 4, 6, 3), inplace: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=inplace)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, cin = [], 64
        for i, (width, units) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = [Bottleneck(cin, width, 1 if i == 0 else 2, inplace)]
            blocks += [Bottleneck(width * 4, width, 1, inplace) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = width * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Load src's state into dst by position: both list their tensors in network order."""
    a, b = src.state_dict(), dst.state_dict()
    if len(a) != len(b):
        raise SystemExit(f"the two ResNet-50s differ: {len(a)} tensors against {len(b)}")
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        if va.shape != vb.shape:
            raise SystemExit(f"the two ResNet-50s differ: {ka} {list(va.shape)} against {kb} {list(vb.shape)}")
    dst.load_state_dict(dict(zip(b, a.values())))


def timed(module: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    module(x)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import netspec
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    generated = netspec.load(ROOT / TARGET).to_torch().eval()
    # Random BatchNorm statistics, so that a mix-up between layers would show in the outputs.
    with torch.no_grad():
        for m in generated.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    modules = {GENERATED: generated, HAND: ResNet50().eval(), HAND_SAME_OPS: ResNet50(inplace=False).eval()}
    copy_weights(generated, modules[HAND])
    copy_weights(generated, modules[HAND_SAME_OPS])
    x = torch.randn(args.batch, 3, 224, 224)

    times = {label: [] for label in modules}
    with torch.inference_mode():
        y_gen, y_hand = generated(x), modules[HAND](x)
        diff = float((y_gen - y_hand).abs().max() / y_hand.abs().max())
        for _ in range(2):
            for module in modules.values():
                timed(module, x)
        order = list(modules.items())
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
            # Rotate who goes first, and run each once untimed before its timed run: the
            # allocator's state after one module's run otherwise shifts the next one's time by
            # several percent on this machine, whose page faults are slow.
            k = i % len(order)
            for label, module in order[k:] + order[:k]:
                timed(module, x)
                times[label].append(timed(module, x))

    text = report(args, times, diff)
    print(text)
    write_section("bench_forward", text)


def report(args, times: dict, diff: float) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    same_ops = med[GENERATED] / med[HAND_SAME_OPS]
    torchvision = med[GENERATED] / med[HAND]
    lines = [
        "## ResNet-50 forward: netspec's `to_torch()` module vs hand-written PyTorch",
        "",
        header(),
        versions("torch") + f"; torch.set_num_threads({args.threads}).",
        f"Batch {args.batch}x3x224x224, eval mode, `torch.inference_mode()`, same weights; median of "
        f"{args.runs} runs each after 2 warm-ups, taking turns, each timed run right after an untimed one (`python bench/bench_forward.py`).",
        "",
        "| module | median s | min-max s |",
        "| --- | ---: | ---: |",
    ]
    for label, v in times.items():
        lines.append(f"| {label} | {med[label]:.3f} | {min(v):.3f}-{max(v):.3f} |")
    lines += [
        "",
        f"- generated / hand-written with the same ops, median time: **{same_ops:.3f}**",
        f"- generated / hand-written torchvision-style (in-place ReLU), median time: **{torchvision:.3f}**",
        f"- outputs agree: max abs diff / max abs output = {diff:.1e}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
