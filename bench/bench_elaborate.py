"""How long `netspec.load` takes (parse, elaborate, shape-check; in process, imports excluded)
for every zoo network, and how fast hostile specs are refused.

Usage: python bench/bench_elaborate.py [--runs 5]

Prints one row per case: the median of --runs after one warm-up. The hostile cases are a 2 KB
spec of blocks that double 40 times (2**40 layers if expanded) and a list of 10**9 items in a
default; both must end in a LimitProblem.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
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
