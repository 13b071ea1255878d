"""The one place that prints: diagnostics, tables and JSON."""

from __future__ import annotations

import json
import sys

import click

from .errors import NetspecError


def error(err: NetspecError) -> None:
    click.echo(err.render(), err=True)


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def info(message: str) -> None:
    click.echo(message)


def note(message: str) -> None:
    click.echo(message, err=True)


def as_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def table(rows: list[dict], columns: list[tuple[str, str]], out=None) -> None:
    """Print rows as an aligned text table; numbers are right-aligned with thousands separators."""
    out = out or sys.stdout
    cells = [[(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k])) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    numeric = [bool(rows) and isinstance(rows[0][k], int) for k, _ in columns]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    click.echo(line([h for _, h in columns]), file=out)
    click.echo(line(["-" * w for w in widths]), file=out)
    for c in cells:
        click.echo(line(c), file=out)


def _ref(ref) -> str:
    return ref.node if ref.port == 0 else f"{ref.node}:{ref.port}"


def summary(spec, layers: bool = True) -> None:
    """The `netspec check` report: a row per layer, then the totals."""
    g = spec.graph
    if layers:
        # Which tensors each layer reads: what an Add or a Concat joins.
        rows = [dict(r, inputs=", ".join(_ref(ref) for ref in g.nodes[r["name"]]["args"])) for r in spec.rows]
        table(rows, [("name", "layer"), ("op", "op"), ("shape", "output"), ("parameters", "parameters"),
                     ("inputs", "inputs")])
        click.echo()
    click.echo(f"network     {spec.name}  ({spec.path})")
    for label, items in (("inputs", spec.inputs), ("outputs", spec.outputs), ("targets", spec.targets)):
        if items:
            click.echo(f"{label:<11} " + ", ".join(f"{n}: {t.full()}" for n, t in items))
    for term in spec.losses:
        weight = f" x {term.weight:g}" if term.weight != 1 else ""
        click.echo(f"loss        {term.op}({term.prediction}, {term.target}){weight}")
    click.echo(f"layers      {len(spec.rows):,}")
    click.echo(f"parameters  {spec.parameters:,} ({_human(spec.parameters)})")
    click.echo(f"MACs/item   {spec.macs:,} ({_human(spec.macs)})  conv, linear, matmul and attention, as torchvision counts")
    click.echo(f"elementwise {spec.elementwise:,} ({_human(spec.elementwise)})  per item: norms, pooling, merges, resizing")
