"""The grammar's own reader: Lark's LALR parser over grammars/netspec.lark, and its syntax errors.

`parse.parse` reads most text with the hand-written `descent` reader; this module reads what that
one gives up on, and reports every syntax error (located, with the expected tokens and a hint).
The formatter and the language server use its parser directly (tokens with comments, error
recovery). Importing it imports lark, which `netspec check` on a well-formed spec never needs.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (GrammarError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken,
                             VisitError)

from . import ast, descent
from .errors import LimitProblem, NetspecError, Span, SyntaxProblem
from .parse import deep_stack

# Nesting of the syntax tree (a statement costs about 6 levels before its expression starts);
# deeper specs are refused with a located error, never a RecursionError.
MAX_DEPTH = descent.MAX_DEPTH
KEYWORDS = descent.KEYWORDS
MAX_QUOTED = 40  # characters of a token quoted in a syntax error


def _grammar_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammars" / "netspec.lark", here.parent / "grammars" / "netspec.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("netspec.lark is missing from this installation")


@lru_cache(maxsize=2)
def parser(start: str = "start") -> Lark:
    # One parser per start rule: sharing LALR tables would blur the "expected ..." lists.
    from .parser_cache import load_or_build
    return load_or_build(_grammar_path().read_text(encoding="utf-8"),
                         {"parser": "lalr", "start": start, "propagate_positions": True,
                          "maybe_placeholders": True})


def _span(path: str, meta) -> Span:
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column or tok.column + len(tok))


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, path: str, text: str = ""):
        super().__init__()
        self.path, self.text = path, text
        self._lines: list[str] | None = None
        self._methods: dict[str, object] = {}

    def _call_userfunc(self, tree, new_children=None):
        # Lark's own version looks the rule's method up on every node, and a v_args method is
        # re-wrapped (functools.update_wrapper) at each lookup: ~15% of parsing a long spec.
        # Same behaviour, each rule looked up once per transform.
        method = self._methods.get(tree.data)
        if method is None:
            method = getattr(self, tree.data, None)
            if method is None:
                return super()._call_userfunc(tree, new_children)
            self._methods[tree.data] = method
        children = new_children if new_children is not None else tree.children
        try:
            return method.visit_wrapper(method, tree.data, children, tree.meta)
        except (GrammarError, NetspecError):
            raise
        except Exception as e:
            raise VisitError(tree.data, tree, e) from e

    def s(self, meta) -> Span:
        return _span(self.path, meta)

    # expressions
    def name(self, meta, c):
        return ast.Name(self.s(meta), str(c[0]))

    def number(self, meta, c):
        text = str(c[0])
        if any(ch in text for ch in ".eE"):
            return ast.Num(self.s(meta), float(text))
        try:
            return ast.Num(self.s(meta), int(text))
        except ValueError:  # past Python's limit on the digits of an int (4300)
            limit = sys.get_int_max_str_digits()
            raise LimitProblem(f"an integer of {len(text)} digits, past the limit of {limit}", self.s(meta),
                               hint="write a float such as 1e30 for a huge value") from None

    def string(self, meta, c):
        return ast.Str(self.s(meta), str(c[0])[1:-1])

    def true(self, meta, c):
        return ast.Bool(self.s(meta), True)

    def false(self, meta, c):
        return ast.Bool(self.s(meta), False)

    def list_(self, meta, c):
        return ast.ListE(self.s(meta), [x for x in c if x is not None])

    def args(self, meta, c):
        return [a if isinstance(a, ast.Arg) else ast.Arg(a.span, None, a) for a in c if a is not None]

    def kwarg(self, meta, c):
        return ast.Arg(self.s(meta), str(c[0]), c[1], _tok_span(self.path, c[0]))

    def call(self, meta, c):
        return ast.Call(self.s(meta), c[0], c[1] or [])

    def index(self, meta, c):
        return ast.Index(self.s(meta), c[0], [x for x in c[1:] if x is not None])

    def slice(self, meta, c):
        return ast.Slice(self.s(meta), c[0], c[1], c[2])

    def attr(self, meta, c):
        return ast.Attr(self.s(meta), c[0], str(c[1]), _tok_span(self.path, c[1]))

    def comprehension(self, meta, c):
        names = [str(x) for x in c[1:] if isinstance(x, Token)]
        rest = [x for x in c[1:] if not isinstance(x, Token)]
        return ast.Comprehension(self.s(meta), c[0], names, rest[0], rest[1])

    def named(self, meta, c):
        return ast.Named(self.s(meta), c[0], str(c[1]))

    def binop(self, meta, c):
        return ast.BinOp(self.s(meta), str(c[1]), c[0], c[2])

    def compare(self, meta, c):
        return ast.BinOp(self.s(meta), str(c[1]), c[0], c[2])

    def neg(self, meta, c):
        return ast.Neg(self.s(meta), c[1])

    def not_(self, meta, c):
        return ast.Not(self.s(meta), c[0])

    def and_(self, meta, c):
        return ast.BoolOp(self.s(meta), "and", c[0], c[1])

    def or_(self, meta, c):
        return ast.BoolOp(self.s(meta), "or", c[0], c[1])

    def ternary(self, meta, c):
        return ast.Ternary(self.s(meta), c[0], c[1], c[2],
                           ambiguous=not isinstance(c[1], ast.Chain) and isinstance(c[2], ast.Chain)
                           and not self._parenthesized(c[2]))

    def _parenthesized(self, node) -> bool:
        # Parentheses leave no node; the text before the chain tells whether it had one.
        if self._lines is None:
            self._lines = self.text.splitlines()
        return descent.parenthesized(self._lines, node)

    def chain(self, meta, c):
        return ast.Chain(self.s(meta), list(c))

    # statements
    def tensor_type(self, meta, c):
        return ast.TensorTypeE(self.s(meta), str(c[0]), [d for d in c[1:] if d is not None])

    def input_item(self, meta, c):
        return ast.InputItem(self.s(meta), str(c[0]), c[1])

    def input_decl(self, meta, c):
        return ast.InputDecl(self.s(meta), list(c))

    def target_decl(self, meta, c):
        return ast.TargetDecl(self.s(meta), str(c[0]), c[1])

    def output_decl(self, meta, c):
        return ast.OutputDecl(self.s(meta), str(c[0]), c[1], _tok_span(self.path, c[0]))

    def assign(self, meta, c):
        names = c[:-1]
        return ast.Assign(self.s(meta), [str(n) for n in names], c[-1],
                          [_tok_span(self.path, n) for n in names])

    def body(self, meta, c):
        return list(c)

    def if_stmt(self, meta, c):
        other = c[2]
        if isinstance(other, ast.IfStmt):
            other = [other]
        return ast.IfStmt(self.s(meta), c[0], c[1], other or [])

    def param_decl(self, meta, c):
        return ast.ParamDecl(self.s(meta), str(c[0]), c[1], c[2], _tok_span(self.path, c[0]))

    def assert_stmt(self, meta, c):
        return ast.AssertStmt(self.s(meta), c[0], c[1])

    def loss_stmt(self, meta, c):
        return ast.LossStmt(self.s(meta), str(c[0]), c[1] or [])

    def setting(self, meta, c):
        return ast.Setting(self.s(meta), str(c[0]), c[1])

    def train_def(self, meta, c):
        return ast.TrainDef(self.s(meta), list(c))

    # top level
    def param(self, meta, c):
        return ast.Param(self.s(meta), str(c[0]), c[1])

    def params(self, meta, c):
        return [p for p in c if p is not None]

    def block_def(self, meta, c):
        return ast.BlockDef(self.s(meta), str(c[0]), c[1] or [], c[2], self.path)

    def network_def(self, meta, c):
        return ast.NetworkDef(self.s(meta), str(c[0]), c[1] or [], c[2], self.path)

    def network_alias(self, meta, c):
        return ast.NetworkAlias(self.s(meta), str(c[0]), str(c[1]), c[2] or [], self.path)

    def import_all(self, meta, c):
        return ast.Import(self.s(meta), str(c[0])[1:-1], None)

    def import_from(self, meta, c):
        return ast.Import(self.s(meta), str(c[0])[1:-1], [(str(n), _tok_span(self.path, n)) for n in c[1:]])

    def start(self, meta, c):
        return list(c)


def _check_depth(tree: Tree, path: str) -> None:
    """Refuse absurd nesting before any recursive walk could overflow Python's stack."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            span = _span(path, node.meta) if not node.meta.empty else None
            raise LimitProblem(f"expressions are nested more than {MAX_DEPTH} levels deep", span,
                               hint="split the expression with named intermediate tensors or blocks")
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


_READABLE = {"NAME": "a name", "NUMBER": "a number", "STRING": "a string", "COMP_OP": "a comparison",
             "MUL_OP": "'*'", "PLUS": "'+'", "MINUS": "'-'", "POW": "'**'", "$END": "end of file"}


def _describe(terminals: set[str]) -> str:
    p = parser()
    names = []
    for t in sorted(terminals):
        if t in _READABLE:
            names.append(_READABLE[t])
            continue
        try:
            pattern = p.get_terminal(t).pattern
            names.append(f"'{pattern.value}'" if pattern.type == "str" else t.lower())
        except KeyError:
            names.append(t.lower())
    names = sorted(set(names), key=lambda s: (not s.startswith("'"), s))
    if len(names) > 8:
        return ", ".join(names[:8]) + ", ..."
    return " or ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " or " + names[-1]


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _unclosed(text: str, path: str) -> tuple[str, Span] | None:
    """The innermost bracket left open at the end of the text, skipping comments and strings."""
    stack, line, col, quote, comment = [], 1, 1, None, False
    for ch in text:
        if ch == "\n":
            quote, comment = None, False
        elif comment:
            pass
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in _CLOSERS:
            stack.append((ch, Span(path, line, col, line, col + 1)))
        elif ch in ")]}" and stack and _CLOSERS[stack[-1][0]] == ch:
            stack.pop()
        line, col = (line + 1, 1) if ch == "\n" else (line, col + 1)
    return stack[-1] if stack else None


def _wrong_closer(e: UnexpectedInput, path: str, text: str) -> SyntaxProblem | None:
    """A `}` or `)` that meets another open bracket: report the bracket left open, not the closer."""
    pos = e.pos_in_stream if e.pos_in_stream is not None else -1
    if not 0 <= pos < len(text) or text[pos] not in ")]}":
        return None
    opener = _unclosed(text[:pos], path)
    if opener is None or _CLOSERS[opener[0]] == text[pos]:
        return None
    here = Span(path, e.line, e.column, e.line, e.column + 1)
    return SyntaxProblem(f"this '{opener[0]}' is never closed", opener[1],
                         f"close it with '{_CLOSERS[opener[0]]}' before the '{text[pos]}'",
                         ((f"found '{text[pos]}' here", here),))


def syntax_error(e: UnexpectedInput, path: str, text: str) -> SyntaxProblem:
    line, col = e.line, e.column
    hint = None
    wrong = _wrong_closer(e, path, text)
    if wrong is not None:
        return wrong
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        msg = f"unexpected character {ch!r}"
        if ch == ">" and e.pos_in_stream > 0 and text[e.pos_in_stream - 1] == "=":
            hint = "layers are chained with '->', not '=>'"
        elif ch == ";":
            hint = "statements need no ';': a new line or a space separates them"
        elif ch in "{}" or ch == ":":
            hint = "check the line above for a missing bracket or parenthesis"
        span = Span(path, line, col, line, col + 1)
        return SyntaxProblem(msg, span, hint)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        expected = _describe(set(e.expected))
        opener = _unclosed(text, path)
        hint, notes = None, ()
        if opener is not None:
            hint = f"close the '{opener[0]}' with '{_CLOSERS[opener[0]]}'"
            notes = ((f"this '{opener[0]}' is never closed", opener[1]),)
        return SyntaxProblem(f"unexpected end of file, expected {expected}", Span(path, line, col, line, col + 1),
                             hint, notes)
    tok = getattr(e, "token", None) or Token("$END", "")
    shown = str(tok)
    if len(shown) > MAX_QUOTED:
        shown = shown[:MAX_QUOTED] + "..."
    expected = set(e.expected)
    msg = f"unexpected {shown!r}, expected {_describe(expected)}"
    if shown == "=" and text[tok.end_pos:tok.end_pos + 1] == ">":
        hint = "layers are chained with '->', not '=>'"
    elif text[:tok.start_pos].split()[-1:] == ["for"] and "RSQB" not in expected:
        msg = "a spec has no for statement"
        hint = "repeat with a list in a chain, x -> [Block(c) for c in widths], or with Block * n"
    elif shown in KEYWORDS and "NAME" in expected:
        hint = f"'{shown}' is a keyword and cannot be used as a name"
    elif shown == "=" and text[:tok.start_pos].split()[-1:] and text[:tok.start_pos].split()[-1] in KEYWORDS:
        # `train = ...`: the keyword started a statement, so the parser only trips at the '='.
        hint = f"'{text[:tok.start_pos].split()[-1]}' is a keyword and cannot be used as a name"
    elif tok.type in ("NAME", "NUMBER", "STRING") and "COMMA" in expected and "RPAR" in expected:
        hint = "is a ',' missing between the arguments?"
    elif tok.type in ("NAME", "NUMBER", "STRING") and "RSQB" in expected and "COMMA" in expected:
        hint = "is a ',' missing between the items?"
    elif shown == "=" and "RPAR" in expected:
        hint = "a keyword argument is written name=value, with a plain name before '='"
    elif shown == "{" and "LPAR" in expected:
        hint = "a block needs a parameter list, even an empty one: block Name() { ... }"
    end = tok.end_column if tok.end_column and tok.end_line == tok.line else col + max(1, len(shown))
    return SyntaxProblem(msg, Span(path, line, col, line, end), hint)


def read(text: str, path: str = "<string>", start: str = "start"):
    """`parse.parse` by the grammar's own reader, Lark (for text without its byte-order mark)."""
    try:
        tree = parser(start).parse(text)
    except UnexpectedInput as e:
        raise syntax_error(e, path, text) from None
    _check_depth(tree, path)
    with deep_stack():
        return _ToAst(path, text).transform(tree)
