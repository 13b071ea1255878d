"""What both benchmarks share: timing whole processes, describing the machine, RESULTS.md."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def run_measured(argv: list[str], cwd: Path = ROOT) -> tuple[float, int]:
    """Run a command to completion; its wall seconds and peak resident memory in bytes.

    os.wait4 reports the rusage of exactly this child, so no wrapper process is needed and
    nothing else this process started counts toward the peak.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr.decode(errors='replace')}")
    return seconds, usage.ru_maxrss * 1024  # Linux reports KiB


def median_runs(argv: list[str], runs: int, warmup: int = 1) -> dict:
    """Median wall time and peak memory of `runs` runs, after `warmup` unrecorded ones."""
    for _ in range(warmup):
        run_measured(argv)
    samples = [run_measured(argv) for _ in range(runs)]
    times = [s for s, _ in samples]
    return {"seconds": statistics.median(times), "min": min(times), "max": max(times),
            "peak": statistics.median(m for _, m in samples)}


def as_installed(*trees: Path | str) -> None:
    """Time netspec as `pip install` leaves it: its modules compiled to bytecode.

    pip compiles a wheel's modules when it installs them, and the dependencies' bytecode is
    there; an editable checkout only gets it on first import, and not at all where
    PYTHONDONTWRITEBYTECODE is set (as on our CI machines), which made every timed netspec
    process compile its ~60 modules from source. Compile each tree's package, and let the
    children timed from here read (and write) bytecode.
    """
    import compileall
    for tree in trees or (ROOT,):
        compileall.compile_dir(str(Path(tree) / "netspec"), quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def versions(*names: str) -> str:
    out = [f"python {platform.python_version()}"]
    for name in names:
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1) if found else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores ({cpu}), {platform.system()} {platform.release()}"


def header() -> str:
    # Other work on the machine skews wall times; the load average says how much there was.
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"Measured {datetime.date.today().isoformat()} on {machine()}; load average at the end {load}."


def write_section(name: str, text: str) -> None:
    """Replace this benchmark's section of RESULTS.md, keeping the other benchmark's."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = RESULTS.read_text() if RESULTS.exists() else "# netspec benchmarks\n"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(new)


def python() -> str:
    return sys.executable
