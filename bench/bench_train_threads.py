"""Seconds per training epoch on the built-in digits with one CPU thread and with every core.

    python bench/bench_train_threads.py

netspec picks the thread count from the network's MACs per batch (docs/training.md, `threads`);
this shows why: a small network is no faster, or slower, on many threads. Numbers depend on the
machine and on what else runs on it; run it on an idle machine.
"""

import os
import tempfile
from pathlib import Path

import netspec
from netspec.train import train
from netspec.trainconfig import cpu_threads

MODELS = Path(__file__).resolve().parent.parent / "models"


def epoch_seconds(spec, threads: int, out: Path) -> float:
    result = train(spec, out_dir=out, epochs=2, threads=threads, progress=False, log=lambda *_: None)
    return result["seconds"]  # the second epoch: warm caches, no first-call costs


def main():
    cores = os.cpu_count() or 1
    print(f"{'network':<8} {'MACs/item':>10} {'auto':>5} " + " ".join(f"{t:>3} thr (s)" for t in sorted({1, cores})))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("mlp", "lenet5"):
            spec = netspec.load(MODELS / f"{name}.net")
            macs = sum(r["flops"] for r in spec.rows)
            auto = cpu_threads(spec.train_config, macs, cores)
            times = [epoch_seconds(spec, t, Path(tmp) / f"{name}-{t}") for t in sorted({1, cores})]
            print(f"{name:<8} {macs:>10,} {auto:>5} " + " ".join(f"{s:>11.2f}" for s in times))


if __name__ == "__main__":
    main()
