"""`netspec check` start-up against `import torch`, and a deep spec written line by line or with `* n`.

Usage: python bench/bench_check.py [--runs 7] [--target models/resnet.net:ResNet152]
                                   [--layers 30000] [--baseline DIR]

Whole processes of `netspec check --brief`, the cached and uncached (NETSPEC_NO_CACHE=1) runs
taking turns after one warm-up each, medians; `python -c "import torch"` in the same turns as
the floor any torch-importing tool pays. Then two generated specs of the same --layers Linear
layers, one line per layer and one `Linear(16) * n`, checked in the same turns. With --baseline
DIR (a checkout of an older netspec, e.g. `git worktree add /tmp/old main`), every netspec
command also runs with that checkout on PYTHONPATH, in the same turns: before and after in one
run. Then, in one process, the time to make the parser with and without the cache. Writes its
section of RESULTS.md.
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
from _common import ROOT, as_installed, header, python, versions, write_section  # noqa: E402
from bench_compile import netspec_command  # noqa: E402


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def deep_specs(folder: Path, layers: int) -> dict[str, Path]:
    """The same chain of `layers` Linear layers, written one line per layer and with `* n`."""
    lines = ["network Deep {", "    input x: float32[N, 16]", "    h0 = x -> Linear(16)"]
    lines += [f"    h{i} = h{i - 1} -> Linear(16)" for i in range(1, layers)]
    lines += [f"    output y = h{layers - 1}", "}", ""]
    written = folder / "deep_lines.net"
    written.write_text("\n".join(lines), encoding="utf-8")
    # A repetition counts at most 10,000: a longer chain is several of them in a row.
    counts = [10_000] * (layers // 10_000) + ([layers % 10_000] if layers % 10_000 else [])
    chain = " -> ".join(f"Linear(16) * {n}" for n in counts)
    repeated = folder / "deep_repeat.net"
    repeated.write_text(f"network Deep {{\n    input x: float32[N, 16]\n    output y = x -> {chain}\n}}\n",
                        encoding="utf-8")
    return {"line by line": written, "repeated (* n)": repeated}


def in_process(tmp: str) -> dict:
    """Milliseconds to make the parser (building the tables, loading them from the cache) and to
    read the line-by-line deep spec in tmp, by the fast reader and by Lark."""
    from netspec import parser_cache
    from netspec.lark_reader import _grammar_path
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
    from netspec.gcpause import cycle_collection_paused
    from netspec.parse import parse, parse_with_lark
    text = (Path(tmp) / "deep_lines.net").read_text(encoding="utf-8")
    out["read fast"], out["read by Lark"] = [], []
    for i in range(3):  # paused as `netspec check` pauses the collector, so no collection is timed
        with cycle_collection_paused():
            t = time.perf_counter()
            items = parse(text, "deep_lines.net")
            out["read fast"].append(time.perf_counter() - t)
            if i == 0:
                t = time.perf_counter()
                items = parse_with_lark(text, "deep_lines.net")
                out["read by Lark"].append(time.perf_counter() - t)
        del items
    return {k: statistics.median(v) * 1e3 for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--target", default="models/resnet.net:ResNet152")
    ap.add_argument("--layers", type=int, default=30_000, help="layers of the generated deep specs")
    ap.add_argument("--baseline", metavar="DIR", help="an older checkout to time in the same turns")
    ap.add_argument("--in-process", metavar="TMP", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        print(json.dumps(in_process(args.in_process)))
        return
    import tempfile
    cli = netspec_command()
    trees = {"": str(ROOT)}
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        if not (baseline / "netspec" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no netspec package there")
        trees = {"": str(ROOT), " (baseline)": str(baseline)}
    as_installed(*trees.values())
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
        deep = deep_specs(Path(tmp), args.layers)
        plain_env = {**os.environ, "NETSPEC_NO_CACHE": "1"}
        commands = {}
        for suffix, tree in trees.items():
            env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / f"cache{len(commands)}"), "PYTHONPATH": tree}
            commands[f"netspec check, parser cached{suffix}"] = ([cli, "check", "--brief", args.target], env)
            commands[f"netspec check, NETSPEC_NO_CACHE=1 (Lark tables rebuilt where Lark is loaded){suffix}"] = (
                [cli, "check", "--brief", args.target], {**env, "NETSPEC_NO_CACHE": "1"})
            for form, path in deep.items():
                commands[f"{args.layers:,} layers, {form}{suffix}"] = ([cli, "check", "--brief", str(path)], env)
        commands['python -c "import torch"'] = ([python(), "-c", "import torch"], plain_env)
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
    flags = f" --layers {args.layers}" if args.layers != 30_000 else ""
    flags += " --baseline DIR" if args.baseline else ""
    lines = ["## `netspec check` start-up and deep specs", "", header(), versions("lark", "torch") + ".",
             f"`python bench/bench_check.py --runs {args.runs}{flags}`: whole processes of `netspec check --brief`"
             f" on `{args.target}` and on two generated specs of the same {args.layers:,} Linear layers (one line"
             f" per layer; `Linear(16) * n`, n at most 10,000 per repetition), taking turns, median of {args.runs} after one warm-up"
             f" each; every package compiled to bytecode, as pip installs it." + (" Rows marked (baseline) ran the older checkout given as --baseline, in the same turns."
                          if args.baseline else ""), "",
             "| command | median s | min-max s | / import torch |", "| --- | ---: | ---: | ---: |"]
    for label, v in samples.items():
        lines.append(f"| `{label}` | {med[label]:.3f} | {min(v):.3f}-{max(v):.3f} | {med[label] / torch_s:.2f} |")
    lines.append("")
    for suffix in trees:
        written, repeated = (med[f"{args.layers:,} layers, {form}{suffix}"] for form in deep)
        lines.append(f"- {args.layers:,} layers{suffix}: line by line / `* n` = **{written / repeated:.2f}**.")
    lines += ["", "Lark reads only what the fast reader gives up on, so `check` of these well-formed specs never "
              "loads its tables (the current rows with and without the cache differ by noise only). "
              f"Making Lark's parser in-process (median of 5): building the LALR tables "
              f"{parser_ms['build']:.1f} ms, loading them from the cache {parser_ms['cached']:.1f} ms.",
              "", f"Reading the {args.layers:,}-line spec into its syntax tree in-process: the fast reader "
              f"(netspec/descent.py) {parser_ms['read fast']:.0f} ms (median of 3), Lark "
              f"{parser_ms['read by Lark']:.0f} ms (one run)."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("bench_check", text)


if __name__ == "__main__":
    main()
