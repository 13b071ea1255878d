"""`netspec check` start-up: the parser's tables cached in the user's cache folder, or rebuilt.

Usage: python bench/bench_check.py [--runs 7] [--target models/resnet.net:ResNet152]

Whole processes of `netspec check --brief`, the cached and uncached (NETSPEC_NO_CACHE=1) runs
taking turns after one warm-up each, medians; `python -c "import torch"` in the same turns as
the floor any torch-importing tool pays. Then, in one process, the time to make the parser with
and without the cache. Writes its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, python, versions, write_section  # noqa: E402
from bench_compile import netspec_command  # noqa: E402


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def in_process(tmp: str) -> dict:
    """Milliseconds to make the parser: building the tables, then loading them from the cache."""
    from netspec import parser_cache
    from netspec.parse import _grammar_path
    grammar = _grammar_path().read_text(encoding="utf-8")
    options = {"parser": "lalr", "start": "start", "propagate_positions": True, "maybe_placeholders": True}
    out = {"build": [], "cached": []}
    for i in range(5):
        folder = Path(tmp) / f"c{i}"
        t = time.perf_counter()
        parser_cache.load_or_build(grammar, options, folder)  # builds and writes
        out["build"].append(time.perf_counter() - t)
        t = time.perf_counter()
        parser_cache.load_or_build(grammar, options, folder)
        out["cached"].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--target", default="models/resnet.net:ResNet152")
    ap.add_argument("--in-process", metavar="TMP", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        print(json.dumps(in_process(args.in_process)))
        return
    import tempfile
    cli = netspec_command()
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
        cached_env = {**os.environ, "XDG_CACHE_HOME": tmp}
        plain_env = {**os.environ, "NETSPEC_NO_CACHE": "1"}
        commands = {
            "netspec check, parser cached": ([cli, "check", "--brief", args.target], cached_env),
            "netspec check, tables rebuilt (NETSPEC_NO_CACHE=1)": ([cli, "check", "--brief", args.target], plain_env),
            'python -c "import torch"': ([python(), "-c", "import torch"], plain_env),
        }
        for argv, env in commands.values():
            timed(argv, env)  # warm-up; also fills the cache
        samples = {label: [] for label in commands}
        for _ in range(args.runs):
            for label, (argv, env) in commands.items():
                samples[label].append(timed(argv, env))
        parser_ms = json.loads(subprocess.run([python(), __file__, "--in-process", tmp], cwd=ROOT, check=True,
                                              capture_output=True, text=True).stdout)
    med = {k: statistics.median(v) for k, v in samples.items()}
    torch_s = med['python -c "import torch"']
    lines = ["## `netspec check` start-up: the parser cache", "", header(), versions("lark", "torch") + ".",
             f"`python bench/bench_check.py --runs {args.runs}`: whole processes on `{args.target}`, taking "
             f"turns, median of {args.runs} after one warm-up each.", "",
             "| command | median s | min-max s | / import torch |", "| --- | ---: | ---: | ---: |"]
    for label, v in samples.items():
        lines.append(f"| `{label}` | {med[label]:.3f} | {min(v):.3f}-{max(v):.3f} | {med[label] / torch_s:.2f} |")
    lines += ["", f"Making the parser in-process (median of 5): building the LALR tables "
              f"{parser_ms['build']:.1f} ms, loading them from the cache {parser_ms['cached']:.1f} ms."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("bench_check", text)


if __name__ == "__main__":
    main()
