"""How long `netspec.load` takes (parse, elaborate, shape-check; in process, imports excluded)
for every zoo network, and how fast hostile specs are refused.

Usage: python bench/bench_elaborate.py [--runs 5]
       python bench/bench_elaborate.py --deep 10000 30000 60000 [--runs 5] [--baseline DIR]

Prints one row per case: the median of --runs after one warm-up. The hostile cases are a 2 KB
spec of blocks that double 40 times (2**40 layers if expanded) and a list of 10**9 items in a
default; both must end in a LimitProblem.

--deep N...: the same chain of N Linear layers written one line per layer and with `* n`
(`bench_check.deep_specs`), loaded in turns. Each load is split into its parse (the time spent
in the loader's `parse`) and everything after it (elaborating, shape inference, freeing the
syntax trees, the first collection after the collector's pause): CPU seconds of this process,
the best of --runs. With --baseline DIR (an older checkout) the same runs load with that
netspec too, in a process of its own. Quadratic work shows as a per-layer cost that grows with N.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The checkout whose netspec is timed: this one, or a --baseline's in its own process.
sys.path.insert(0, os.environ.get("NETSPEC_BENCH_TREE") or str(ROOT))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import netspec  # noqa: E402
from netspec.errors import LimitProblem  # noqa: E402
from netspec.loader import Loader  # noqa: E402

DOUBLING = "block B0() {\n    out = in -> ReLU\n}\n" + "".join(
    f"block B{i}() {{\n    out = in -> B{i - 1}() -> B{i - 1}()\n}}\n" for i in range(1, 41)) + \
    "network Net {\n    input x: float32[N, 8]\n    output y = x -> B40()\n}\n"
BIG_LIST = "network Net(w = [0] * 1000000000) {\n    input x: float32[N, 8]\n    output y = x -> ReLU\n}\n"


def timed(load, runs: int) -> float:
    load()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        load()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def refused(path: Path):
    def load():
        try:
            netspec.load(path)
        except LimitProblem:
            return
        raise SystemExit(f"{path.name} was not refused")
    return load


def deep_times(sizes: list[int], runs: int) -> dict:
    """{N: {form: {"load": s, "post": s}}}: the best whole load and its part after parsing."""
    import netspec.loader
    from bench_check import deep_specs
    real_parse = netspec.loader.parse
    parsing = [0.0]

    def timed_parse(*args, **kwargs):
        start = time.process_time()
        try:
            return real_parse(*args, **kwargs)
        finally:
            parsing[0] += time.process_time() - start

    netspec.loader.parse = timed_parse
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            specs = deep_specs(folder, n)
            best = {form: {"load": float("inf"), "post": float("inf")} for form in specs}
            for _ in range(runs):
                for form, path in specs.items():  # in turns, so both see the same machine
                    gc.collect()
                    parsing[0] = 0.0
                    start = time.process_time()
                    spec = netspec.load(path)
                    spent = time.process_time() - start
                    del spec
                    best[form]["load"] = min(best[form]["load"], spent)
                    best[form]["post"] = min(best[form]["post"], spent - parsing[0])
            out[n] = best
    return out


def deep(sizes: list[int], runs: int, baseline: str | None) -> None:
    trees = {"": str(ROOT)}
    if baseline:
        if not (Path(baseline) / "netspec" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {baseline}: no netspec package there")
        trees[" (baseline)"] = str(Path(baseline).resolve())
    print(f"{'layers':>7} {'form':26} {'load ms':>9} {'after parse ms':>15} {'us/layer':>9} {'lines / * n':>12}")
    for suffix, tree in trees.items():
        env = {**os.environ, "NETSPEC_BENCH_TREE": tree}
        argv = [sys.executable, __file__, "--deep-worker", *map(str, sizes), "--runs", str(runs)]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"timing {tree} failed:\n{proc.stderr}")
        result = json.loads(proc.stdout)
        for n, forms in result.items():
            lines, repeated = forms.values()
            for form, t in forms.items():
                ratio = f"{lines['post'] / repeated['post']:.2f}" if t is lines else ""
                print(f"{int(n):7,} {form + suffix:26} {t['load'] * 1e3:9.0f} {t['post'] * 1e3:15.0f} "
                      f"{t['post'] / int(n) * 1e6:9.1f} {ratio:>12}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--deep", type=int, nargs="+", metavar="N", help="time deep specs of N layers instead")
    ap.add_argument("--baseline", metavar="DIR", help="with --deep: an older checkout to time too")
    ap.add_argument("--deep-worker", type=int, nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    runs = args.runs
    if args.deep_worker:
        print(json.dumps(deep_times(args.deep_worker, runs)))
        return
    if args.deep:
        deep(args.deep, runs, args.baseline)
        return
    loader = Loader()
    print(f"{'case':42} {'median ms':>10}")
    for f in sorted((ROOT / "models").glob("*.net")):
        for name in loader.load(str(f)).own_networks:
            ms = timed(lambda: netspec.load(f, name), runs) * 1000
            print(f"{f.stem + ':' + name:42} {ms:10.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for stem, text in (("doubling 40 times (refused)", DOUBLING), ("[0] * 10**9 (refused)", BIG_LIST)):
            path = Path(tmp) / "hostile.net"
            path.write_text(text, encoding="utf-8")
            print(f"{stem:42} {timed(refused(path), runs) * 1000:10.1f}")


if __name__ == "__main__":
    main()
