"""Checking a buffer: the same pipeline as `netspec check`, over every network of the file,
reading open buffers instead of files; and the syntax errors past the first."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .. import ast
from ..errors import Diagnostic, NetspecError
from ..gcpause import cycle_collection_paused
from ..parse import deep_stack, parse, parse_file


@lru_cache(maxsize=1024)
def key(path: str | Path) -> str:
    return str(Path(path).resolve())


@dataclass
class Analysis:
    """What one check of a buffer found: its items, its checked networks and its mistakes."""

    path: str
    text: str
    items: list = field(default_factory=list)
    graphs: dict = field(default_factory=dict)  # network name -> checked graph (netspec.digraph.DiGraph)
    problems: list[Diagnostic] = field(default_factory=list)
    _index: dict = field(default_factory=dict, repr=False)

    def index(self, g) -> tuple[dict[str, str], dict[str, list[str]]]:
        """For a graph: the last layer under each dotted name prefix, and each block's instances."""
        name = g.graph["name"]
        if name not in self._index:
            last, instances = {}, {}
            for n, d in g.nodes(data=True):
                parts = n.split(".")
                for k in range(1, len(parts) + 1):
                    last[".".join(parts[:k])] = n
                for label, _ in d.get("context") or ():
                    block, inst = split_label(label)
                    instances.setdefault(block, {})[inst] = None
            self._index[name] = (last, {b: list(i) for b, i in instances.items()})
        return self._index[name]


def analyze(path: str, text: str, buffers: dict[str, str] | None = None) -> Analysis:
    """Check every network of `text` as `netspec check` would; collect each distinct mistake."""
    from ..elaborate import Elaborator
    from ..loader import Loader
    from ..infer import infer
    buffers = dict(buffers or {})
    buffers[key(path)] = text
    result = Analysis(path, text)

    def read(p: str) -> list:
        k = key(p)
        return parse(buffers[k], p) if k in buffers else parse_file(p)

    try:
        result.items = parse(text, path)
    except NetspecError as e:
        result.problems += e.diagnostics + more_syntax_errors(text, path, e.diagnostics)
        return result
    networks = [i.name for i in result.items if isinstance(i, (ast.NetworkDef, ast.NetworkAlias))]
    seen = set()
    elaborator = Elaborator(Loader(read=read))  # one for the file: each file is parsed once, not once per network
    for name in networks or [None]:
        try:
            with deep_stack(), cycle_collection_paused():
                g = elaborator.network(path, name)
                infer(g)
            result.graphs[name] = g
        except NetspecError as e:
            for d in e.diagnostics:
                if name is None and "defines no network" in d.message:
                    continue  # a file of blocks only, for importing
                if (d.message, d.span) not in seen:
                    seen.add((d.message, d.span))
                    result.problems.append(d)
        except RecursionError:
            result.problems.append(Diagnostic(f"{path}: the spec nests too deeply to check"))
    return result


MAX_SYNTAX_ERRORS = 20


def more_syntax_errors(text: str, path: str, first: list[Diagnostic]) -> list[Diagnostic]:
    """The syntax errors after the first: the parser skips the offending token and goes on.

    One error per line at most, since what follows a mistake on its own line is mostly its echo.
    """
    from lark.exceptions import UnexpectedInput
    from ..lark_reader import parser, syntax_error
    lines = {d.span.line for d in first if d.span}
    found: list[Diagnostic] = []

    def on_error(e: UnexpectedInput) -> bool:
        d = syntax_error(e, path, text).diagnostics[0]
        if d.span and d.span.line not in lines:
            lines.add(d.span.line)
            found.append(d)
        return len(found) < MAX_SYNTAX_ERRORS

    try:
        parser().parse(text, on_error=on_error)
    except (UnexpectedInput, RecursionError):
        pass  # recovery gave up; what was found so far stands
    return found


def split_label(label: str) -> tuple[str, str]:
    block, _, rest = label.partition(" ")
    return block, rest.strip("'")
