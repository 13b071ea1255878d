"""The training benchmarks, one after another, each rewriting its section of bench/RESULTS.md.

    python bench/bench_training.py

Runs bench_checkpoint_memory.py (first checkpoint's memory vs model + optimizer state),
bench_imagefolder.py (image folder vs a hand-written PIL + DataLoader loop) and
bench_train_threads.py (epoch time by thread count, as the machine is and contended), each in
its own process with --write. About 10 minutes on 2 cores.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_checkpoint_memory.py", "bench_imagefolder.py", "bench_train_threads.py"]


def main() -> None:
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), "--write"], check=True)


if __name__ == "__main__":
    main()
