"""How long and how much memory it takes to get ResNet-152 to ONNX: netspec against torch's exporter.

Usage: python bench/bench_compile.py [--runs 5] [--target models/resnet.net:ResNet152]

Times whole processes (interpreter start and imports included, as a user waits for them), one
warm-up each then the median of --runs, the commands taking turns: `netspec check`, `netspec compile`, and a script that builds
the module with netspec and exports it with `torch.onnx.export(dynamo=True)`. Peak memory is
the child's maximum resident set. Then both ONNX files are run in ONNX Runtime on a random
batch of 2 and compared with PyTorch on the same weights. Writes its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, as_installed, header, python, run_measured, versions, write_section  # noqa: E402

TARGET = "models/resnet.net:ResNet152"


def netspec_command() -> str:
    beside = Path(sys.executable).parent / "netspec"
    found = str(beside) if beside.exists() else shutil.which("netspec")
    if not found:
        raise SystemExit("the `netspec` command is not installed: pip install -e .")
    return found


def stages(target: str, out: str) -> dict:
    """Seconds per step of `netspec compile`, in this process (run in a fresh child)."""
    import onnx

    import netspec
    from netspec import lower_onnx
    from netspec.weights import init_weights
    times, last = {}, time.perf_counter()

    def lap(name):
        nonlocal last
        now = time.perf_counter()
        times[name] = now - last
        last = now

    spec = netspec.load(target)
    lap("parse, elaborate, infer")
    arrays = init_weights(spec.graph, seed=0)
    lap("draw weights")
    model = lower_onnx.lower(spec.graph, arrays)
    lap("emit ONNX (graph; folded weights are computed as they are written)")
    lower_onnx._check_graph(model.header, [lower_onnx._ArrayTensor(n, t) for n, t in model.tensors.items()])
    lap("check_model(full_check=True) of the graph, before writing")
    lower_onnx.save(model, out)  # the default layout: past 1 MiB, the tensors go to OUT.data
    side = Path(out + ".data")
    lap("fold and write the tensors" + (" (to OUT.data)" if side.exists() else ""))
    tensors = [lower_onnx._ArrayTensor(n, t) for n, t in model.tensors.items()]
    if side.exists():
        onnx.checker.check_model(out, full_check=True)
        lower_onnx._verify_external(Path(out), side, tensors)
        lap("check the written graph, and that OUT.data holds every tensor")
    else:
        lower_onnx._verify_streamed(Path(out), model.header, tensors)
        lap("read the file back, field by field")
    times["weights MB"] = sum(a.nbytes for a in arrays.values()) / 1e6
    return times


def agreement(target: str, paths: dict[str, str]) -> dict:
    """Max |ONNX Runtime - PyTorch| / max |PyTorch| on a random batch of 2, for each model file."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    import netspec
    from netspec.weights import init_weights

    torch.set_num_threads(2)
    spec = netspec.load(target)
    module = spec.to_torch().eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in init_weights(spec.graph, seed=0).items()})
    ((name, t),) = spec.inputs
    x = np.random.default_rng(1).standard_normal((2, *t.shape[1:]), dtype=np.float32)
    with torch.inference_mode():
        y = module(torch.from_numpy(x)).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    out = {}
    for label, path in paths.items():
        batch = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        out[label] = {"rel_diff": float(np.abs(got - y).max() / np.abs(y).max()),
                      "dynamic_batch": batch.dim_param or None}
    return out


def interleaved(commands: dict[str, list[str]], runs: int) -> dict:
    """Median wall time and peak memory of each command, the commands taking turns run by run.

    Taking turns (after one warm-up each) spreads a drifting load on a shared machine over all of
    them alike, so the ratios stay fair even when the absolute times do not.
    """
    for label, argv in commands.items():
        print(f"warming up {label} ...", file=sys.stderr, flush=True)
        run_measured(argv)
    samples: dict[str, list] = {label: [] for label in commands}
    for i in range(runs):
        print(f"run {i + 1} of {runs} ...", file=sys.stderr, flush=True)
        for label, argv in commands.items():
            samples[label].append(run_measured(argv))
    out = {}
    for label, got in samples.items():
        times = [s for s, _ in got]
        out[label] = {"seconds": statistics.median(times), "min": min(times), "max": max(times),
                      "peak": statistics.median(m for _, m in got)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--target", default=TARGET)
    ap.add_argument("--stages", metavar="OUT", help=argparse.SUPPRESS)  # the child of the breakdown
    args = ap.parse_args()
    if args.stages:
        print(json.dumps(stages(args.target, args.stages)))
        return

    as_installed()
    cli = netspec_command()
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
        ours, theirs = f"{tmp}/netspec.onnx", f"{tmp}/exporter.onnx"
        commands = {
            "netspec check": [cli, "check", args.target],
            "netspec compile": [cli, "compile", args.target, "-o", ours],
            "torch.onnx.export(dynamo=True)": [python(), "bench/export_dynamo.py", args.target, theirs],
        }
        results = interleaved(commands, args.runs)
        breakdown = json.loads(subprocess.run([python(), __file__, "--target", args.target, "--stages",
                                               f"{tmp}/stages.onnx"], cwd=ROOT, check=True,
                                              capture_output=True, text=True).stdout)
        print("checking the outputs against PyTorch ...", file=sys.stderr, flush=True)
        agree = agreement(args.target, {"netspec compile": ours, "torch.onnx.export(dynamo=True)": theirs})

    text = report(args, results, breakdown, agree)
    print(text)
    write_section("bench_compile", text)


def report(args, results: dict, breakdown: dict, agree: dict) -> str:
    ours, theirs = results["netspec compile"], results["torch.onnx.export(dynamo=True)"]
    lines = [
        "## ResNet-152 to ONNX: `netspec compile` vs `torch.onnx.export(dynamo=True)`",
        "",
        header(),
        versions("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "protobuf") + ".",
        f"Whole processes, median of {args.runs} runs after one warm-up, taking turns "
        "(`python bench/bench_compile.py`); "
        f"peak = the process's maximum resident set. Target `{args.target}`, fresh weights (seed 0), "
        "dynamic batch dimension.",
        "",
        "| command | median wall s | min-max s | peak memory MB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, r in results.items():
        lines.append(f"| `{label}` | {r['seconds']:.2f} | {r['min']:.2f}-{r['max']:.2f} | {r['peak'] / 1e6:.0f} |")
    lines += [
        "",
        f"- exporter time / netspec compile time: **{theirs['seconds'] / ours['seconds']:.1f}x**",
        f"- exporter peak memory / netspec compile peak memory: **{theirs['peak'] / ours['peak']:.2f}x**",
        f"- netspec compile peak memory / the weights' bytes ({breakdown['weights MB']:.0f} MB): "
        f"**{ours['peak'] / 1e6 / breakdown['weights MB']:.2f}x** (imports included)",
        "",
        "Agreement with PyTorch (same weights, random batch of 2, ONNX Runtime CPU):",
        "",
        "| ONNX from | max abs diff / max abs output | batch dim |",
        "| --- | ---: | --- |",
    ]
    for label, a in agree.items():
        lines.append(f"| `{label}` | {a['rel_diff']:.1e} | {a['dynamic_batch'] or 'fixed'} |")
    lines += ["", "Where one `netspec compile` spends its time (in-process, one run, imports excluded):", "",
              "| step | s |", "| --- | ---: |"]
    lines += [f"| {step} | {s:.2f} |" for step, s in breakdown.items() if step != "weights MB"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
