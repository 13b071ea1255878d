"""How much memory a training run's first checkpoint adds, against the model + optimizer state.

    python bench/bench_checkpoint_memory.py [--network models/resnet.net:ResNet18] [--write]

Each case is a fresh process that trains the network for one epoch (`netspec.train.train`, its
own settings: SGD with momentum for ResNet-18) on a small generated `.npz` at 32x32, so the
checkpoint writes real weights and real momentum buffers. The epoch's file writing
(`netspec.train._write`: checkpoint.safetensors, weights.safetensors, checkpoint.json,
metrics, run.json) is wrapped, and within it the checkpoint's own writing (from
`checkpoint.save` to the end of `checkpoint.derive`): the resident set just before, then the peak
(Linux's VmHWM, reset through /proc/self/clear_refs just before; where that is refused, a
thread samples VmRSS every millisecond). Growth = that peak minus the resident set before.

"streamed" is netspec as it is. "copies + file in memory" emulates what the checkpoint did
before (a clone of every weight and optimizer tensor, each file serialized to bytes before
being written), to show what the measurement catches. --write also puts the table in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import ROOT, header, versions, write_section  # noqa: E402

MiB = 1 << 20
MODES = {"streamed": "netspec's checkpoint as it is",
         "copies": "copies + file in memory (the old way, emulated)"}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class Peak:
    """The peak resident set since the last `take()`, which starts a new interval."""

    def __init__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
            self.method, self.thread = "VmHWM", None
        except OSError:
            self.method, self.high, self.lock = "sampled VmRSS", _status("VmRSS"), threading.Lock()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()

    def _sample(self):
        while True:
            rss = _status("VmRSS")
            with self.lock:
                self.high = max(self.high, rss)
            time.sleep(0.001)

    def take(self) -> int:
        if self.thread is None:
            peak = _status("VmHWM")
            Path("/proc/self/clear_refs").write_text("5")
            return peak
        rss = _status("VmRSS")
        with self.lock:
            peak, self.high = max(self.high, rss), rss
        return peak


def _emulate_copies():
    """The checkpoint as it was: every tensor cloned, every file built as bytes in memory."""
    from safetensors.torch import save

    from netspec import checkpoint, runfolder
    checkpoint.cpu_view = checkpoint.cpu_state

    def write_tensors(path, tensors, metadata):
        data = save({k: v.detach().clone() for k, v in tensors.items()}, metadata=metadata)
        runfolder.atomic_write(path, data)
    checkpoint._write_tensors = write_tensors


def child(network: str, mode: str, out: Path) -> dict:
    import numpy as np
    import torch

    import netspec
    from netspec import checkpoint
    from netspec import train as T

    torch.set_num_threads(1)
    if mode == "copies":
        _emulate_copies()
    path, _, name = network.partition(":")
    spec = netspec.load(path, name or None, params={"size": 32, "classes": 10})
    rng = np.random.default_rng(0)
    np.savez(out / "data.npz", x=rng.standard_normal((64, 3, 32, 32)).astype(np.float32),
             y=np.arange(64) % 10)
    seen: dict = {}
    watch: dict = {}
    write, save, derive = T._write, checkpoint.save, checkpoint.derive

    def measured_save(*args, **kwargs):
        if "ckpt_before" not in watch and "peak" in watch:
            watch["pre"] = watch["peak"].take()
            watch["ckpt_before"] = _status("VmRSS")
        return save(*args, **kwargs)

    def measured_derive(*args, **kwargs):
        derive(*args, **kwargs)
        if "ckpt_peak" not in watch and "peak" in watch:
            watch["ckpt_peak"] = watch["peak"].take()

    def measured_write(out_dir, runlog, run, state, due, model, best_state, optimizer, *rest):
        if seen or not due:
            return write(out_dir, runlog, run, state, due, model, best_state, optimizer, *rest)
        model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        opt_bytes = sum(v.numel() * v.element_size() for entry in optimizer.state.values()
                        for v in entry.values() if torch.is_tensor(v))
        before = _status("VmRSS")
        watch["peak"] = Peak()
        write(out_dir, runlog, run, state, due, model, best_state, optimizer, *rest)
        post = watch["peak"].take()
        seen.update(before=watch["ckpt_before"], peak=watch["ckpt_peak"], method=watch["peak"].method,
                    write_before=before, write_peak=max(watch["pre"], watch["ckpt_peak"], post),
                    model=model_bytes, optim=opt_bytes,
                    file=(out_dir / "checkpoint.safetensors").stat().st_size)
    checkpoint.save, checkpoint.derive = measured_save, measured_derive
    T._write = measured_write
    T.train(spec, data=str(out / "data.npz"), out_dir=out / "run", epochs=1, batch_size=32,
            progress=False, log=lambda *_: None, threads=1)
    if not seen:
        raise SystemExit("the run wrote no checkpoint")
    return seen


def measure(network: str, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--network", network, "--tmp", tmp],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{mode} failed:\n{proc.stderr}")
        return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="models/resnet.net:ResNet18")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--tmp")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.network, args.child, Path(args.tmp))))
        return
    rows = []
    for mode, label in MODES.items():
        # A fresh process each run; the median run by growth.
        runs = sorted((measure(args.network, mode) for _ in range(args.runs)), key=lambda r: r["peak"] - r["before"])
        r = runs[len(runs) // 2]
        state = r["model"] + r["optim"]
        growth = r["peak"] - r["before"]
        whole = r["write_peak"] - r["write_before"]
        rows.append(f"| {label} | {r['model'] / MiB:.1f} | {r['optim'] / MiB:.1f} | {r['file'] / MiB:.1f} "
                    f"| {r['before'] / MiB:.0f} | {r['peak'] / MiB:.0f} | {growth / MiB:.1f} "
                    f"| **{100 * growth / state:.1f}%** | {whole / MiB:.1f} | "
                    + ", ".join(f"{100 * (x['peak'] - x['before']) / state:.1f}%" for x in runs) + " |")
        print(rows[-1], f"({r['method']})", flush=True)
    lines = ["## Memory of the first checkpoint (`python bench/bench_checkpoint_memory.py --write`)", "",
             header(), versions("torch", "safetensors") + ".",
             f"`{args.network}` at 32x32, 10 classes, its own optimizer (SGD, momentum), one epoch on 64 "
             f"generated items, batch 32, one thread; a fresh process per run, {args.runs} runs per case, the "
             f"median run shown. Growth = peak resident set while the checkpoint is written ({r['method']}) "
             "minus the resident set just before; the target is <= 10% of the model + optimizer state.", "",
             "| checkpoint | model MiB | optimizer state MiB | checkpoint file MiB | RSS before MiB "
             "| peak while writing MiB | growth MiB | growth / (model + optimizer) | whole epoch's writing, growth MiB "
             "| every run (growth / state) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", *rows,
             "", "Growth is measured from the start of `checkpoint.save` to the end of `checkpoint.derive` "
             "(checkpoint.safetensors, weights.safetensors, checkpoint.json). The whole epoch's writing "
             "(`netspec.train._write`) also writes metrics.jsonl/.csv, curves.png and run.json: the first "
             "curves.png imports matplotlib, a one-off cost of any run that does not grow with the model."]
    print("\n".join(lines))
    if args.write:
        write_section("bench_checkpoint_memory", "\n".join(lines))


if __name__ == "__main__":
    main()
