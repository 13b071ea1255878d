"""Seconds per training epoch on the built-in digits with one CPU thread, with every core, and netspec's choice.

    python bench/bench_train_threads.py [--runs 3] [--write]

netspec picks the thread count from the network's MACs per batch (docs/training.md, `threads`);
this shows why: a small network is no faster, or slower, on many threads, and far slower when
other work holds the cores. Each network is measured as the machine is ("as is", whatever else
runs on it) and "contended", with one busy-looping process per core started by this script.
The thread counts take turns; each run trains 2 epochs in-process and the second is timed (warm
caches, no first-call costs); median and worst of --runs. --write also puts the table in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import header, versions, write_section  # noqa: E402

import netspec  # noqa: E402
from netspec.train import train  # noqa: E402
from netspec.trainconfig import cpu_threads  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "models"


def epoch_seconds(spec, threads: int, out: Path) -> float:
    result = train(spec, out_dir=out, epochs=2, threads=threads, progress=False, log=lambda *_: None, force=True)
    return result["seconds"]  # the second epoch: warm caches, no first-call costs


class Spinners:
    """One busy-looping process per core while the block runs: a machine shared with other work."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def measure(spec, counts: list[int], runs: int, out: Path) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {t: [] for t in counts}
    for _ in range(runs):
        for t in counts:  # taking turns, so a change in the machine's load hits every count alike
            times[t].append(epoch_seconds(spec, t, out / f"t{t}"))
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    counts = sorted({1, cores})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("mlp", "lenet5"):
            spec = netspec.load(MODELS / f"{name}.net")
            macs = spec.macs + spec.elementwise  # as netspec.train counts it
            auto = cpu_threads(spec.train_config, macs, cores)
            for condition in ("as is", "contended"):
                if condition == "contended":
                    with Spinners(cores):
                        times = measure(spec, counts, args.runs, Path(tmp) / name)
                else:
                    times = measure(spec, counts, args.runs, Path(tmp) / name)
                cells = " | ".join(f"{statistics.median(times[t]):.2f} ({max(times[t]):.2f})" for t in counts)
                rows.append(f"| {name} | {macs:,} | {spec.train_config.batch_size} | {auto} | {condition} | {cells} |")
                print(rows[-1], flush=True)
    lines = ["## Training threads (`python bench/bench_train_threads.py --write`)", "",
             header(), versions("torch") + ".",
             f"Seconds per epoch on the built-in digits (its training split), each network's own train block; "
             f"the thread counts take turns, {args.runs} runs each, median (worst). \"contended\": one "
             "busy-looping process per core runs alongside. auto = the count netspec picks "
             "(one thread per 10M multiply-accumulates of a batch, up to the cores; docs/training.md).", "",
             "| network | MACs per item | batch | auto | machine | " + " | ".join(f"{t} thread(s), s" for t in counts)
             + " |",
             "| --- | ---: | ---: | ---: | --- | " + " | ".join("---:" for _ in counts) + " |", *rows]
    print("\n".join(lines))
    if args.write:
        write_section("bench_train_threads", "\n".join(lines))


if __name__ == "__main__":
    main()
