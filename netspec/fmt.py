"""Format: one canonical layout for a .net file, with its comments kept and its meaning unchanged.

The layout, like gofmt's: four spaces per `{` level; one space around `->`, `=`, `?`, `:` of a
conditional and binary operators, none around a keyword argument's `=`; `, ` between arguments;
a statement per line; the author's line breaks inside a statement kept, with continuation lines
aligned under the statement's first `->` (or its `?`, or the bracket they continue); the `=` of
consecutive assignments, settings and network aliases aligned; trailing comments of consecutive
lines aligned; one blank line at most, and always one between top-level blocks. Lines between
`# fmt: off` and `# fmt: on` are kept as written.

fmt works on the parser's tokens and statement positions, so a new statement form needs no
change here; a token it has no spacing rule for is refused (the file is left alone), and every
result is parsed again and compared with the original syntax tree before it is returned.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lark import Tree
from lark.exceptions import UnexpectedInput

from . import lark_reader
from . import parse as parse_mod
from .errors import DataProblem, NetspecError, Span
from .file_kinds import check_input

INDENT = 4
COMMENT_GAP = 2  # spaces between code and a trailing comment

# Punctuation with a spacing rule below; any other token that is not a name, number, string or
# keyword makes fmt refuse the file rather than guess.
PUNCT = {"(", ")", "[", "]", "{", "}", ",", "=", ":", "?", "->", ".", "+", "-", "*", "/", "//",
         "%", "**", "==", "!=", "<=", ">=", "<", ">"}
OPERATORS = {"->", "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<=", ">=", "<", ">", "=", "?", ":", ","}
# Statements whose `=` lines up with the next one's when they follow each other.
ALIGNED = {"assign", "setting", "network_alias"}
# Containers whose children are statements: each starts a line.
BODIES = {"start", "body", "train_def"}


class FormatProblem(NetspecError):
    """A construct fmt has no layout rule for; the file is left as it is."""


@dataclass
class Tok:
    kind: str  # NAME, NUMBER, STRING, KEYWORD, PUNCT or COMMENT
    text: str
    line: int
    col: int
    pos: int
    breaks: int  # line breaks between the previous token and this one in the source
    role: str = ""  # for '=', ':', '-', '(' and '[': how it is spaced


@dataclass
class Line:
    depth: int  # `{` nesting
    toks: list[Tok] = field(default_factory=list)
    comment: str | None = None
    blank_before: bool = False
    stmt: str | None = None  # the statement's rule when the line starts one
    verbatim: str | None = None  # inside `# fmt: off`
    top_item: int = -1  # index of the top-level item the line belongs to


@dataclass
class Frame:
    """An open bracket, or the statement itself: where its continuation lines align."""

    kind: str  # statement, params, call, group, index, list
    indent: int  # indent of the line that opened it
    col: int = 0  # column of the opening bracket
    hanging: bool = False  # nothing follows the bracket on its line
    arrow: int | None = None  # column of the first `->` at this level
    questions: list[int] = field(default_factory=list)  # columns of unmatched `?`


def _tokens(text: str) -> list[Tok]:
    out, breaks = [], 0
    for t in lark_reader.parser().lex(text, dont_ignore=True):
        if t.type == "WS":
            breaks += str(t).count("\n")
            continue
        value = str(t)
        if t.type in ("NAME", "NUMBER", "STRING", "COMMENT"):
            kind = t.type
        elif value.isidentifier():
            kind = "KEYWORD"
        elif value in PUNCT:
            kind = "PUNCT"
        else:
            raise FormatProblem(f"fmt has no layout rule for {value!r} yet; the file is left as it is",
                                Span("", t.line, t.column, t.line, t.column + len(value)))
        out.append(Tok(kind, value.rstrip() if kind == "COMMENT" else value, t.line, t.column,
                       t.start_pos, breaks))
        breaks = 0
    return out


def _statements(tree: Tree) -> dict[int, tuple[str, bool]]:
    """Source offset of each statement's first token -> (its rule, whether it is top-level)."""
    starts = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.children:
            if not isinstance(child, Tree):
                continue
            if node.data in BODIES and not child.meta.empty:
                starts[child.meta.start_pos] = (child.data, node.data == "start")
            stack.append(child)
    return starts


def _classify(toks: list[Tok]) -> None:
    """Give '=', ':', '-', '(' and '[' their roles from the brackets around them."""
    frames: list[list] = [["statement", 0]]  # kind, unmatched '?' count
    prev: Tok | None = None
    before: Tok | None = None
    for t in toks:
        if t.kind == "COMMENT":
            continue
        top = frames[-1]
        if t.text in ("(", "["):
            if t.text == "(" and prev and prev.kind == "NAME" and before and before.text in ("block", "network"):
                t.role = "params"
            elif prev and (prev.kind == "NAME" or prev.text in (")", "]")):
                t.role = "call" if t.text == "(" else "index"
            else:
                t.role = "group" if t.text == "(" else "list"
            frames.append([t.role, 0])
        elif t.text in (")", "]") and len(frames) > 1:
            frames.pop()
        elif t.text == "{":
            frames.append(["statement", 0])
        elif t.text == "}" and len(frames) > 1:
            frames.pop()
        elif t.text == "?":
            top[1] += 1
        elif t.text == ":":
            if top[1]:
                top[1] -= 1
                t.role = "ternary"
            else:
                t.role = "slice" if top[0] == "index" else "annotation"
        elif t.text == "=":
            t.role = "kwarg" if top[0] in ("call", "index") else "assign"
        elif t.text == "-":
            unary = prev is None or prev.kind == "KEYWORD" or prev.text in OPERATORS | {"(", "[", "{"}
            t.role = "unary" if unary else "binary"
        before, prev = prev, t


def _space(prev: Tok | None, t: Tok) -> str:
    if prev is None:
        return ""
    if t.text in (")", "]", ",") or prev.text in ("(", "[") or "." in (t.text, prev.text):
        return ""
    if t.text == "(" and t.role in ("call", "params"):
        return ""
    if t.text == "[" and t.role == "index":
        return ""
    if prev.role == "unary":
        return ""
    if t.text == "=" or prev.text == "=":
        eq = t if t.text == "=" else prev
        return "" if eq.role == "kwarg" else " "
    if t.text == ":" and t.role != "ternary":
        return ""
    if prev.text == ":" and prev.role == "slice":
        return ""
    return " "


def _fmt_toggle(tok: Tok) -> str | None:
    body = tok.text[1:].strip().replace(" ", "")
    return {"fmt:off": "off", "fmt:on": "on"}.get(body)


def _lines(toks: list[Tok], starts: dict[int, tuple[str, bool]], source: list[str]) -> list[Line]:
    """Split the tokens into output lines: where the source breaks, and before every statement."""
    lines: list[Line] = []
    depth, item, off = 0, -1, False
    cur: Line | None = None
    prev: Tok | None = None

    def verbatim_line(t: Tok, stmt) -> Line:
        # Inside `# fmt: off` the source lines come back as they were, blank ones included.
        lines.extend(Line(depth, verbatim="", top_item=item) for _ in range(max(0, t.breaks - 1)))
        return Line(depth, verbatim=source[t.line - 1].rstrip(), top_item=item, stmt=stmt and stmt[0])

    for t in toks:
        stmt = starts.get(t.pos)
        if stmt and stmt[1]:
            item += 1
        if t.kind == "COMMENT":
            toggle = _fmt_toggle(t)
            if cur is not None and t.breaks == 0 and (cur.toks or cur.verbatim is not None):
                if not off:
                    cur.comment = t.text  # a trailing comment; a verbatim line holds its own
            elif off:
                cur = verbatim_line(t, None)
                lines.append(cur)
            else:
                cur = Line(depth, comment=t.text, blank_before=t.breaks >= 2, top_item=item)
                if toggle == "off":
                    cur.verbatim = source[t.line - 1].rstrip()
                lines.append(cur)
            if toggle == "off" and not cur.toks:
                off = True
            elif toggle == "on" and off:
                off = False
            prev = t
            continue
        if off:
            if cur is None or t.breaks:
                cur = verbatim_line(t, stmt)
                lines.append(cur)
            depth += (t.text == "{") - (t.text == "}")
            cur.toks.append(t)
            prev = t
            continue
        joins = t.text == "{" or (t.text == "else" and prev is not None and prev.text == "}")
        breaks_here = (cur is None or stmt is not None or t.text == "}" or
                       (prev is not None and prev.text == "{") or t.breaks > 0)
        if cur is not None and joins and cur.comment is None and cur.toks:
            breaks_here = False
        if breaks_here:
            if t.text == "}":
                depth -= 1
            cur = Line(depth, blank_before=t.breaks >= 2, stmt=stmt and stmt[0], top_item=item)
            lines.append(cur)
        if t.text == "{":
            depth += 1
        cur.toks.append(t)
        prev = t
    return lines


def _blank_lines(lines: list[Line]) -> None:
    """At most one blank line; none at the start, after `{` or before `}`; one between top items."""
    kinds: dict[int, tuple[str, int]] = {}
    for ln in lines:
        if ln.stmt and ln.depth == 0 and ln.top_item not in kinds:
            kinds[ln.top_item] = (ln.stmt, 0)
        if ln.top_item in kinds:
            kind, count = kinds[ln.top_item]
            kinds[ln.top_item] = (kind, count + (ln.verbatim is not None or bool(ln.toks)))
    for i, ln in enumerate(lines):
        if ln.verbatim is not None:
            continue
        prev = lines[i - 1] if i else None
        if prev is None or (prev.toks and prev.toks[-1].text == "{") or (ln.toks and ln.toks[0].text == "}"):
            ln.blank_before = False
        if prev is not None and ln.stmt and ln.depth == 0 and prev.top_item != ln.top_item:
            a, b = kinds.get(prev.top_item), kinds.get(ln.top_item)
            family = {"import_all": "import", "import_from": "import"}
            same = a and b and family.get(a[0], a[0]) == family.get(b[0], b[0]) and a[1] == b[1] == 1
            if not same and prev.top_item >= 0:
                # The blank goes above the comments that lead into this item.
                j = i
                while j > 0 and not lines[j - 1].toks and lines[j - 1].verbatim is None \
                        and not lines[j].blank_before:
                    j -= 1
                lines[j].blank_before = True


def _eq_padding(lines: list[Line]) -> dict[int, int]:
    """Extra spaces before the `=` of each line in a run of aligned statements."""
    pads: dict[int, int] = {}
    run: list[tuple[int, int]] = []
    kind = None

    def close():
        width = max((w for _, w in run), default=0)
        for i, w in run:
            pads[i] = width - w
        run.clear()

    for i, ln in enumerate(lines):
        if ln.verbatim is not None or not ln.toks:
            close()
            kind = None
            continue
        if ln.stmt is None:
            continue  # a continuation line keeps the run going
        eq = next((k for k, t in enumerate(ln.toks) if t.text == "=" and t.role == "assign"), None)
        if ln.stmt not in ALIGNED or eq is None or ln.blank_before or ln.stmt != kind or \
                (run and lines[run[-1][0]].depth != ln.depth):
            close()
        kind = ln.stmt if ln.stmt in ALIGNED and eq is not None else None
        if kind:
            prefix = "".join(_space(p, t) + t.text for p, t in zip([None] + ln.toks[:eq - 1], ln.toks[:eq]))
            run.append((i, len(prefix)))
    close()
    return pads


def _render(lines: list[Line]) -> list[str]:
    pads = _eq_padding(lines)
    frames: list[Frame] = [Frame("statement", 0)]
    out: list[tuple[str, str | None]] = []  # code, trailing comment
    pending: list[tuple[int, int]] = []  # comment-only lines (out index, depth) waiting for an indent

    def place(indent: int) -> None:
        for k, depth in pending:
            out[k] = (" " * max(indent, INDENT * depth) + out[k][0], None)
        pending.clear()

    for i, ln in enumerate(lines):
        if ln.blank_before:
            out.append(("", None))
        if ln.verbatim is not None:
            place(len(ln.verbatim) - len(ln.verbatim.lstrip()))
            if ln.stmt is not None:
                frames[:] = [Frame("statement", len(ln.verbatim) - len(ln.verbatim.lstrip()))]
            out.append((ln.verbatim, None))
            _track(frames, ln, ln.verbatim, None)
            continue
        if not ln.toks:
            pending.append((len(out), ln.depth))
            out.append((ln.comment or "", None))
            continue
        if ln.stmt is not None:
            frames[:] = [Frame("statement", INDENT * ln.depth)]
        if ln.stmt is not None or ln.toks[0].text == "}":
            indent = INDENT * ln.depth
        else:
            indent = _continuation(frames, ln.toks[0])
        place(indent)
        out.append((_track(frames, ln, None, indent, pads.get(i, 0)), ln.comment))
    place(0)
    return _align_comments(out)


def _continuation(frames: list[Frame], first: Tok) -> int:
    top = frames[-1]
    if first.text in (")", "]") and len(frames) > 1:
        return top.indent
    if first.text == "->" and top.arrow is not None:
        return top.arrow
    if first.text == ":" and first.role == "ternary" and top.questions:
        return top.questions[-1]
    if top.kind == "statement":
        return top.indent + INDENT
    return top.indent + INDENT if top.hanging else top.col + 1


def _track(frames: list[Frame], ln: Line, verbatim: str | None, indent: int | None, pad: int = 0) -> str:
    """Lay out one line (or follow a verbatim one), updating the open frames as tokens pass."""
    text = "" if verbatim is None else None
    col = indent or 0
    prev = None
    for k, t in enumerate(ln.toks):
        if verbatim is not None:
            col = t.col - 1
        else:
            gap = _space(prev, t)
            if t.text == "=" and t.role == "assign" and ln.stmt in ALIGNED:
                gap = " " * (pad + 1)
            piece = (" " * col if prev is None else gap) + t.text
            text += piece
            col = len(text) - len(t.text)
        top = frames[-1]
        if t.text in ("(", "["):
            frames.append(Frame(t.role, _line_indent(ln, verbatim, indent), col,
                                hanging=k == len(ln.toks) - 1))
        elif t.text in (")", "]") and len(frames) > 1:
            frames.pop()
        elif t.text == "->" and top.arrow is None:
            top.arrow = col
        elif t.text == "?":
            top.questions.append(col)
        elif t.text == ":" and t.role == "ternary" and top.questions:
            top.questions.pop()
        prev = t
    return text


def _line_indent(ln: Line, verbatim: str | None, indent: int | None) -> int:
    if verbatim is not None:
        return len(verbatim) - len(verbatim.lstrip())
    return indent or 0


def _align_comments(out: list[tuple[str, str | None]]) -> list[str]:
    result, i = [], 0
    while i < len(out):
        j = i
        while j < len(out) and out[j][1] is not None:
            j += 1
        if j == i:
            result.append(out[i][0].rstrip())
            i += 1
            continue
        width = max(len(code.rstrip()) for code, _ in out[i:j]) + COMMENT_GAP
        result += [code.rstrip().ljust(width) + comment for code, comment in out[i:j]]
        i = j
    return result


def _strip_spans(node):
    """A syntax tree without its source positions, to compare two layouts of one program."""
    if isinstance(node, Span):
        return None
    if isinstance(node, list):
        return [_strip_spans(x) for x in node]
    if isinstance(node, tuple):
        return tuple(_strip_spans(x) for x in node)
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(
            (f.name, _strip_spans(getattr(node, f.name))) for f in dataclasses.fields(node))
    return node


def format_text(text: str, path: str = "<string>") -> str:
    """The canonical layout of a .net file's text; refuses text that does not parse."""
    text = text.removeprefix("\ufeff")  # the parser accepts a byte-order mark; the layout drops it
    before = parse_mod.parse(text, path)
    try:
        tree = lark_reader.parser().parse(text)
        toks = _tokens(text)
    except UnexpectedInput as e:  # parse() above accepted it; keep the error located anyway
        raise lark_reader.syntax_error(e, path, text) from None
    except FormatProblem as e:
        d = e.diagnostics[0]
        raise FormatProblem(d.message, d.span._replace(path=path)) from None
    _classify(toks)
    lines = _lines(toks, _statements(tree), text.splitlines())
    _blank_lines(lines)
    result = "\n".join(_render(lines)).strip("\n")
    result = result + "\n" if result else ""  # an empty file stays empty
    try:
        after = parse_mod.parse(result, path)
    except NetspecError as e:  # fmt broke the syntax: fmt's bug, not the user's mistake
        raise RuntimeError(f"fmt would break the syntax of {path} ({e.diagnostics[0].message}); "
                           "the file is left as it is") from None
    finally:
        parse_mod.remember_source(path, text)  # diagnostics quote the user's text, not ours
    if _strip_spans(after) != _strip_spans(before):
        raise RuntimeError(f"fmt would change the meaning of {path}; the file is left as it is")
    return result


def net_files(paths) -> list[Path]:
    """The .net files named, with folders searched for them (sorted, so output is stable)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.net") if q.is_file())  # a FIFO would block the read
            if not found:
                raise DataProblem(f"{p}: no .net files in this folder")
            files += found
        elif not p.exists():
            raise DataProblem(f"{p}: no such file")
        elif not p.is_file():
            check_input(p, hint="give .net files or folders of them")
        else:
            files.append(p)
    return files


def replace_text(path: Path, text: str) -> None:
    """Write beside the file and rename over it: an interrupted fmt never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)  # mkstemp's 0600 would hide the file from others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
