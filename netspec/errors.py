"""Located diagnostics: the one exception type for mistakes in a user's input."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class Span(NamedTuple):
    """A region of one source file; lines and columns count from 1, the end is exclusive.

    A named tuple: a spec written line by line makes several per line, and a tuple is one object,
    made and freed in C (a frozen dataclass is two, filled field by field through __setattr__).
    """

    path: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    # Extra located lines such as "note: first defined here".
    notes: tuple[tuple[str, Span | None], ...] = ()


# Sources by path, so a diagnostic can show the offending line long after parsing.
_SOURCES: dict[str, str] = {}


def remember_source(path: str, text: str) -> None:
    _SOURCES[path] = text


def _source_line(span: Span) -> str | None:
    text = _SOURCES.get(span.path)
    if text is None:
        try:
            text = Path(span.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    lines = text.splitlines()
    if 1 <= span.line <= len(lines):
        return lines[span.line - 1]
    return None


MAX_SHOWN = 120  # columns of a source line shown under a diagnostic


def _excerpt(span: Span) -> list[str]:
    line = _source_line(span)
    if line is None:
        return []
    shown = line.expandtabs(1)
    width = 1
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    width = max(1, min(width, len(shown) - span.col + 1))
    col = span.col
    if len(shown) > MAX_SHOWN:
        # A generated or minified line: show a window from just before the span, not 10,000 columns.
        start = 0 if col <= MAX_SHOWN - 20 else max(0, min(col - 1 - 20, len(shown) - MAX_SHOWN))
        end = start + MAX_SHOWN
        col = col - start + (3 if start else 0)
        width = min(width, end - span.col + 1)
        shown = ("..." if start else "") + shown[start:end] + ("..." if end < len(shown) else "")
    gutter = f"{span.line:>5} | "
    return [gutter + shown, " " * (len(gutter) - 2) + "| " + " " * (col - 1) + "^" * width]


MAX_QUOTED = 80  # characters of a user's name or path quoted in a message


def clip(text: str, limit: int = MAX_QUOTED) -> str:
    """A name or path as a message quotes it: a 1 MB name is shown by its first characters."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


MAX_MESSAGE = 600  # characters of one message, hint or note; the rest is cut


def render(diag: Diagnostic, severity: str = "error") -> str:
    """Render `PATH:LINE:COL: error: message`, the source line, a caret, and any hint."""
    message = clip(diag.message, MAX_MESSAGE)
    head = f"{diag.span}: {severity}: {message}" if diag.span else f"{severity}: {message}"
    out = [head]
    if diag.span:
        out += _excerpt(diag.span)
    for note, span in diag.notes:
        note = clip(note, MAX_MESSAGE)
        out.append(f"{span}: note: {note}" if span else f"note: {note}")
        if span:
            out += _excerpt(span)
    if diag.hint:
        out.append(f"  hint: {clip(diag.hint, MAX_MESSAGE)}")
    return "\n".join(out)


class NetspecError(Exception):
    """A mistake in the user's input, carrying one or more located diagnostics."""

    def __init__(self, message: str | list[Diagnostic], span: Span | None = None,
                 hint: str | None = None, notes: tuple = ()):
        if isinstance(message, list):
            self.diagnostics = message
        else:
            self.diagnostics = [Diagnostic(message, span, hint, tuple(notes))]
        super().__init__(self.diagnostics[0].message)

    def render(self) -> str:
        return "\n".join(render(d) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


class SyntaxProblem(NetspecError):
    """The text does not follow the grammar."""


class NameProblem(NetspecError):
    """An unknown or duplicated name: op, block, tensor, parameter, network or import."""


class ParamProblem(NetspecError):
    """A parameter of an op, block or train setting has the wrong type or range."""


class ShapeProblem(NetspecError):
    """Tensor shapes or dtypes do not fit an op's rule."""


class GraphProblem(NetspecError):
    """The connections are wrong: a cycle, an unused tensor, recursion between blocks."""


class LimitProblem(NetspecError):
    """A spec goes past a sane bound: repetition, nesting depth, model size."""


class UsageProblem(NetspecError):
    """The command line contradicts itself (two network selections); the CLI exits 2."""


class DataProblem(NetspecError):
    """A dataset, weights file or checkpoint cannot be used."""


def did_you_mean(name: str, candidates) -> str | None:
    """Suggest the closest candidate, as a hint."""
    if len(name) > MAX_QUOTED:
        return None
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"did you mean '{close[0]}'?" if close else None


@dataclass
class OpError(Exception):
    """Raised by an op's shape rule; `infer` adds the layer's location."""

    message: str
    param: str | None = None
    hint: str | None = None
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message
