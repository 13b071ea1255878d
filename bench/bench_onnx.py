"""netspec's ONNX files against torch.onnx.export(dynamo=True)'s, in ONNX Runtime.

Usage: python bench/bench_onnx.py [--runs 5] [--models resnet.net:ResNet50,...]

For each network, both files hold the same weights (fresh, seed 0). Measured, on the CPU provider
with 2 intra-op threads and ORT_ENABLE_ALL (ONNX Runtime's default):
- making each file: `netspec compile` (median of 3 whole processes) and the exporter (one run),
  wall time and peak resident memory, and the weights' bytes;
- cold start: a fresh process that imports onnxruntime, creates the session and runs one batch
  of 1; the session + first run time measured inside it, its whole wall time and peak resident
  memory; the two files take turns, --runs times each, medians;
- node counts in the file and after ONNX Runtime's optimizations;
- steady-state latency at batch 1, both sessions in one process, taking turns, median of 30;
- agreement of the two files' outputs on one random batch.
Writes its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, as_installed, header, python, versions, write_section  # noqa: E402
from bench_compile import netspec_command  # noqa: E402

MODELS = ["resnet.net:ResNet50", "mobilenet.net:MobileNetV2", "googlenet.net:GoogLeNet",
          "transformer.net:ViT_B_16"]
THREADS = 2


def _session(path: str, optimized: str | None = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # ORT warns when it serializes a hardware-specific optimized model
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _feed(session, batch: int = 1, seed: int = 1):
    import numpy as np
    i = session.get_inputs()[0]
    shape = [batch if not isinstance(d, int) else d for d in i.shape]
    return {i.name: np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)}


def cold(path: str) -> dict:
    """In a fresh process: import, session, first run."""
    t0 = time.perf_counter()
    import onnxruntime  # noqa: F401
    t1, c1 = time.perf_counter(), time.process_time()
    session = _session(path)
    t2 = time.perf_counter()
    session.run(None, _feed(session))
    t3, c3 = time.perf_counter(), time.process_time()
    # CPU seconds (all threads) are less at the mercy of other work on a shared machine than wall time.
    return {"import": t1 - t0, "session": t2 - t1, "first_run": t3 - t2, "cpu": c3 - c1}


def nodes_after(path: str, tmp: str) -> int:
    import onnx
    out = f"{tmp}/optimized.onnx"
    _session(path, out)
    return len(onnx.load(out, load_external_data=False).graph.node)


def steady(paths: list[str], runs: int = 30) -> dict:
    """Batch-1 latency of each file, the sessions taking turns; and the first and last files' agreement."""
    import numpy as np
    sessions = [_session(p) for p in paths]
    feed = _feed(sessions[0])
    outs = [s.run(None, feed)[0] for s in sessions]
    for s in sessions:  # warm-up
        s.run(None, feed)
    times = [[] for _ in sessions]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, feed)
            times[i].append(time.perf_counter() - t)
    diff = float(np.abs(outs[0] - outs[-1]).max() / np.abs(outs[-1]).max())
    return {"median": [statistics.median(t) for t in times], "rel_diff": diff}


def run_child(argv: list[str]) -> tuple[float, int, str]:
    """Run a command to completion: its wall seconds, peak resident bytes and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, nothing else's
    seconds = time.perf_counter() - start
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.decode(errors='replace')}")
    return seconds, usage.ru_maxrss * 1024, out.decode()


def child(*args: str) -> dict:
    _, _, out = run_child([python(), __file__, *args])
    return json.loads(out.strip().splitlines()[-1])


def weight_bytes(path: str) -> int:
    import onnx
    from onnx import helper
    total = 0
    for t in onnx.load(path, load_external_data=False).graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        total += n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def inspect(path: str, tmp: str) -> dict:
    """Nodes in the file and after ONNX Runtime's optimizations, and the weights' bytes."""
    import onnx
    return {"file": len(onnx.load(path, load_external_data=False).graph.node),
            "optimized": nodes_after(path, tmp), "weights": weight_bytes(path)}


def measure(target: str, runs: int, tmp: str) -> dict:
    # This process stays small: a child's peak resident set (ru_maxrss) starts from its parent's
    # at the fork, so anything loaded here would raise every measured peak. Files are loaded in
    # children only.
    cli = netspec_command()
    files = {"netspec": f"{tmp}/netspec.onnx", "netspec --single-file": f"{tmp}/one/netspec.onnx",
             "exporter": f"{tmp}/exporter.onnx"}
    Path(f"{tmp}/one").mkdir()
    print(f"{target}: exporting and compiling ...", file=sys.stderr, flush=True)
    export = run_child([python(), "bench/export_dynamo.py", target, files["exporter"]])[:2]
    compiles = [run_child([cli, "compile", target, "-o", files["netspec"]])[:2] for _ in range(3)]
    run_child([cli, "compile", target, "-o", files["netspec --single-file"], "--single-file"])
    print(f"{target}: cold starts ...", file=sys.stderr, flush=True)
    colds: dict[str, list] = {label: [] for label in files}
    for _ in range(runs):  # taking turns, so a drifting load hits all alike
        for label, path in files.items():
            wall, peak, out = run_child([python(), __file__, "--cold", path])
            colds[label].append({"wall": wall, "peak": peak, **json.loads(out.strip().splitlines()[-1])})
    print(f"{target}: node counts and latency ...", file=sys.stderr, flush=True)
    nodes = {label: child("--inspect", p, tmp) for label, p in files.items()}
    latency = child("--steady", *files.values())
    return {
        "export": export,
        "compile": (statistics.median(s for s, _ in compiles), statistics.median(m for _, m in compiles)),
        "weights": nodes["netspec"]["weights"], "cold": colds, "nodes": nodes,
        "latency": dict(zip(files, latency["median"])), "rel_diff": latency["rel_diff"],
        "sizes": {label: sum(q.stat().st_size for q in Path(p).parent.glob(Path(p).name + "*"))
                  for label, p in files.items()},
    }


def _med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(args, results: dict) -> str:
    lines = [
        "## ONNX files in ONNX Runtime: netspec's vs `torch.onnx.export(dynamo=True)`'s",
        "",
        header(),
        versions("torch", "onnx", "onnxruntime", "onnxscript", "numpy") + ".",
        f"`python bench/bench_onnx.py --runs {args.runs}`. Same weights in every file (fresh, seed 0); "
        f"CPU provider, {THREADS} intra-op threads, ORT_ENABLE_ALL. Cold start = a fresh process: import "
        "onnxruntime, create the session, run one batch of 1; the files take turns, "
        f"{args.runs} runs each, medians (session + first run timed inside the process, in wall and in CPU seconds of all its threads; "
        "peak = its maximum "
        "resident set, the imports' ~60 MB included). Latency: batch 1, the sessions in one process taking "
        "turns, median of 30. Ratios are against the exporter's file, measured in the same run. The "
        "exporter writes its weights to a side file (`external_data=True`, its default), and so does "
        "netspec from 1 MiB of weights on (`--single-file` writes one file).",
        "",
        "| network | file | MB | session + first run s | ratio | its CPU s | ratio | peak MB | ratio "
        "| nodes in file | nodes after ORT | latency ms | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target, r in results.items():
        cold = {k: statistics.median(c["session"] + c["first_run"] for c in v) for k, v in r["cold"].items()}
        peak = {k: _med(v, "peak") for k, v in r["cold"].items()}
        cpu = {k: _med(v, "cpu") for k, v in r["cold"].items()}
        lat, ref = r["latency"], "exporter"
        for label in r["cold"]:
            n = r["nodes"][label]
            lines.append(
                f"| {target.split(':')[1]} | {label} | {r['sizes'][label] / 1e6:.1f} "
                f"| {cold[label]:.3f} | **{cold[label] / cold[ref]:.2f}** "
                f"| {cpu[label]:.3f} | **{cpu[label] / cpu[ref]:.2f}** "
                f"| {peak[label] / 1e6:.0f} | **{peak[label] / peak[ref]:.2f}** "
                f"| {n['file']} | {n['optimized']} | {lat[label] * 1e3:.1f} | **{lat[label] / lat[ref]:.2f}** |")
    lines += ["", "Outputs of netspec's file vs the exporter's (same weights, one random batch), max |diff| / "
              "max |output|: " + ", ".join(f"{t.split(':')[1]} {r['rel_diff']:.1e}" for t, r in results.items()),
              "",
              "Making the files (whole processes): `netspec compile` median of 3, the exporter one run; "
              "peak = maximum resident set (~70 MB of it is imports); weights = bytes of the initializers.",
              "",
              "| network | weights MB | compile s | compile peak MB | peak / weights | exporter s "
              "| exporter peak MB | compile peak / exporter peak |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for target, r in results.items():
        (cs, cm), (es, emem), w = r["compile"], r["export"], r["weights"]
        lines.append(f"| {target.split(':')[1]} | {w / 1e6:.1f} | {cs:.2f} | {cm / 1e6:.0f} | {cm / w:.2f} "
                     f"| {es:.1f} | {emem / 1e6:.0f} | {cm / emem:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated FILE:NETWORK under models/")
    ap.add_argument("--cold", metavar="ONNX", help=argparse.SUPPRESS)
    ap.add_argument("--inspect", nargs=2, metavar=("ONNX", "TMP"), help=argparse.SUPPRESS)
    ap.add_argument("--steady", nargs="+", metavar="ONNX", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold:
        print(json.dumps(cold(args.cold)))
        return
    if args.inspect:
        print(json.dumps(inspect(*args.inspect)))
        return
    if args.steady:
        print(json.dumps(steady(args.steady)))
        return
    as_installed()
    results = {}
    for target in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
            results[target] = measure(f"models/{target}", args.runs, tmp)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if own > 100e6:  # see measure(): this would be a floor under the children's peaks
        raise SystemExit(f"the benchmark's own process grew to {own / 1e6:.0f} MB; its peaks are unreliable")
    text = report(args, results)
    print(text)
    write_section("bench_onnx", text)


if __name__ == "__main__":
    main()
