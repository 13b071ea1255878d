"""Parse: .net text -> AST (`netspec.ast`), with located syntax errors.

Two readers of one grammar (grammars/netspec.lark): the hand-written `descent` reads what it
recognises, fast; whatever it gives up on goes to Lark (`lark_reader`), which reads it or reports
the syntax error. lark is imported only then.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from . import descent
from .errors import remember_source
from .gcpause import cycle_collection_paused
from .sources import read_spec

# Nesting of the syntax tree (a statement costs about 6 levels before its expression starts);
# deeper specs are refused with a located error, never a RecursionError.
MAX_DEPTH = descent.MAX_DEPTH
KEYWORDS = descent.KEYWORDS


@contextmanager
def deep_stack():
    """Room on Python's stack for the recursive walks over a tree that `_check_depth` bounded."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def parse(text: str, path: str = "<string>", start: str = "start"):
    """Parse one file's text into its top-level items (or, with start="args", call arguments)."""
    text = text.removeprefix("\ufeff")  # a byte-order mark, as Windows editors write one
    remember_source(path, text)
    with cycle_collection_paused():
        # The hand-written reader takes what it recognises, ~15x faster; all else, syntax errors
        # included, is Lark's to read or to report (see netspec/descent.py).
        try:
            with deep_stack():
                return descent.read(text, path, start)
        except (descent.GiveUp, RecursionError):
            pass  # outside the handler, so that Lark's errors carry no context of this one
        return parse_with_lark(text, path, start)


def parse_with_lark(text: str, path: str = "<string>", start: str = "start"):
    """`parse` by the grammar's own reader, Lark (for text without its byte-order mark)."""
    from . import lark_reader
    return lark_reader.read(text, path, start)


def parse_file(path: str | Path) -> list:
    """Parse a spec file (a regular UTF-8 file of sane size; see `sources.read_spec`)."""
    return parse(read_spec(path), str(path))
