"""Compile time and peak memory over the whole zoo: `netspec compile` vs `torch.onnx.export(dynamo=True)`.

Usage: python bench/bench_zoo_compile.py [--runs 3] [--models lenet5.net:LeNet5,...]

For each network, whole processes: `netspec compile` (median of --runs) and the exporter
(bench/export_dynamo.py, one run: it takes 10-60 s), each with fresh weights (seed 0) and a
dynamic batch dimension; wall time and peak resident memory (the process's maximum resident set,
imports included). Writes its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import as_installed, header, python, run_measured, versions, write_section  # noqa: E402
from bench_compile import netspec_command  # noqa: E402

ZOO = ["lenet5.net:LeNet5", "mlp.net:MLP", "resnet.net:ResNet18", "resnet.net:ResNet50", "resnet.net:ResNet152",
       "vgg.net:VGG16", "mobilenet.net:MobileNetV2", "mobilenetv3.net:MobileNetV3_Large",
       "efficientnet.net:EfficientNet_B0", "convnext.net:ConvNeXt_Tiny", "densenet.net:DenseNet121",
       "googlenet.net:GoogLeNet", "transformer.net:ViT_B_16"]


def weight_bytes(out: Path) -> int:
    """Bytes of the written model and its side file: the weights, within the graph's few kB."""
    return sum(p.stat().st_size for p in out.parent.glob(out.name + "*"))


def measure(target: str, runs: int, tmp: str) -> dict:
    cli = netspec_command()
    out, theirs = Path(tmp) / "netspec.onnx", Path(tmp) / "exporter.onnx"
    print(f"{target}: compiling ...", file=sys.stderr, flush=True)
    ours = [run_measured([cli, "compile", f"models/{target}", "-o", str(out)]) for _ in range(runs)]
    print(f"{target}: exporting ...", file=sys.stderr, flush=True)
    export = run_measured([python(), "bench/export_dynamo.py", f"models/{target}", str(theirs)])
    return {"compile_s": statistics.median(s for s, _ in ours), "compile_peak": statistics.median(m for _, m in ours),
            "export_s": export[0], "export_peak": export[1], "bytes": weight_bytes(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", default=",".join(ZOO), help="comma-separated FILE:NETWORK under models/")
    args = ap.parse_args()
    as_installed()
    results = {}
    for target in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
            results[target] = measure(target, args.runs, tmp)
    lines = ["## The zoo compiled: `netspec compile` vs `torch.onnx.export(dynamo=True)`", "", header(),
             versions("torch", "onnx", "onnxscript") + ".",
             f"`python bench/bench_zoo_compile.py --runs {args.runs}`: whole processes, fresh weights (seed 0), "
             f"dynamic batch; `netspec compile` median of {args.runs}, the exporter one run; peak = the process's "
             "maximum resident set, imports included; MB = the written files.", "",
             "| network | MB | compile s | exporter s | exporter / compile time | compile peak MB "
             "| exporter peak MB | compile peak / exporter peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for target, r in results.items():
        lines.append(f"| {target.split(':')[1]} | {r['bytes'] / 1e6:.1f} | {r['compile_s']:.2f} | {r['export_s']:.1f} "
                     f"| {r['export_s'] / r['compile_s']:.1f}x | {r['compile_peak'] / 1e6:.0f} "
                     f"| {r['export_peak'] / 1e6:.0f} | **{r['compile_peak'] / r['export_peak']:.2f}** |")
    worst = max(results.values(), key=lambda r: r["compile_peak"] / r["export_peak"])
    lines += ["", f"- highest compile peak / exporter peak: **{worst['compile_peak'] / worst['export_peak']:.2f}**"]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("bench_zoo_compile", text)


if __name__ == "__main__":
    main()
