"""The fast reader of .net text: one regular expression for the tokens, recursive descent for the
statements and precedence climbing for the operators, over the whole grammar.

`grammars/netspec.lark` stays the language's definition and Lark its authoritative reader (every
syntax error, the formatter, the language server). Lark's LALR parser spends ~160 us per line of
a long spec in its reductions, position callbacks and tree building; this reader builds the same
`netspec.ast` nodes, with the same spans, in ~10 us. Whatever it does not accept, it does not
judge: it raises `GiveUp` and `parse.parse` hands the text to Lark, which either reports today's
syntax error or, where the two disagree, has the last word with its own tree.

Spans follow Lark's `propagate_positions`: a node runs from the first to the last token of the
text it was read from, including the parentheses around its operands but not its own (those
only widen the node that contains it). Every node is therefore spanned by the token indices
where its reading started and ended.

tests/test_parse_fast.py keeps the two readers in step (same trees and spans on every spec in
the repository and on generated ones; never accepting a text Lark rejects).
"""

from __future__ import annotations

import re

from . import ast
from .errors import Span

# Nesting of the syntax tree as Lark builds it; a deeper text is Lark's to refuse (parse.MAX_DEPTH).
MAX_DEPTH = 200
# Brackets, unary operators and `**` nest this reader's calls; past this the text goes to Lark
# (which bounds the tree, not the brackets), so no input can exhaust Python's stack here.
MAX_NESTING = 120


_tuple_new = tuple.__new__  # Span's own constructor, without the keyword handling


class GiveUp(Exception):
    """This reader does not accept the text; Lark decides."""


# One token after optional blanks. The terminals are the grammar's: NUMBER, STRING, NAME, COMMENT
# and the operators, longest first (`**` before `*`, `->` before `-`, `==` before `=`, `//`
# before `/`); a character no terminal takes becomes a token of its own that no rule accepts.
_TOKEN = re.compile(r"""([ \t\f\r]*)(
      \#[^\n]*
    | [A-Za-z_][A-Za-z0-9_]*
    | (?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?
    | "[^"\n]*" | '[^'\n]*'
    | \*\* | -> | == | != | <= | >= | //
    | [-+*/%<>=()\[\]{},:.?]
    | [^ \t\f\r]
)""", re.VERBOSE)

# Words the grammar reserves. `in` is left out: Lark's contextual lexer reads it as a name
# everywhere except after a comprehension's names, the one place the grammar expects the keyword
# (and no parser state accepts both), so blocks can call their input `in`.
KEYWORDS = frozenset({"import", "from", "block", "network", "input", "target", "output", "loss",
                      "train", "if", "else", "true", "false", "and", "or", "not", "as", "assert",
                      "for", "param"})
_PUNCTUATION = frozenset({"**", "->", "==", "!=", "<=", ">=", "//", "-", "+", "*", "/", "%", "<", ">",
                          "=", "(", ")", "[", "]", "{", "}", ",", ":", ".", "?"})
# A token's kind: the token itself for keywords and punctuation, else by its first character.
_KIND = {t: t for t in KEYWORDS | _PUNCTUATION}
_FIRST = {**{c: "NAME" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"},
          **{c: "NUMBER" for c in "0123456789."}, '"': "STRING", "'": "STRING"}

# Binding power of the binary operators, loosest first (the grammar's chain of `?` rules):
# or_test, and_test, [not], comparison, sum, term, [unary minus], power.
_OR, _AND, _NOT, _CMP, _SUM, _TERM, _NEG, _POW = range(2, 10)
_BINARY = {"or": _OR, "and": _AND, "==": _CMP, "!=": _CMP, "<=": _CMP, ">=": _CMP, "<": _CMP, ">": _CMP,
           "+": _SUM, "-": _SUM, "*": _TERM, "/": _TERM, "//": _TERM, "%": _TERM, "**": _POW}
_COMPARISONS = frozenset(op for op, p in _BINARY.items() if p == _CMP)
_EXPR_END = frozenset({",", "]"})
_POSTFIX = frozenset({"(", "[", ".", "as"})


def tokens(text: str) -> tuple[list[str], list[str], list[int], list[int], list[int]]:
    """Kinds, texts, lines, columns and end columns of the tokens, comments dropped, `$END` twice
    at the end. A token never spans lines (strings and comments stop at one)."""
    values: list[str] = []
    lines: list[int] = []
    cols: list[int] = []
    findall = _TOKEN.findall
    add_value, add_col = values.append, cols.append
    for number, line in enumerate(text.split("\n"), 1):
        before = len(values)
        col = 1
        for blanks, value in findall(line):
            col += len(blanks)
            add_value(value)
            add_col(col)
            col += len(value)
        if "#" in line:
            keep = [i for i in range(before, len(values)) if values[i][0] != "#"]
            values[before:] = [values[i] for i in keep]
            cols[before:] = [cols[i] for i in keep]
        lines.extend([number] * (len(values) - before))
    try:
        kinds = [_KIND.get(v) or _FIRST[v[0]] for v in values]
    except KeyError:
        raise GiveUp from None  # a character no terminal matches
    if '"' in values or "'" in values:
        raise GiveUp  # a quote never closed on its line
    end_cols = [col + len(value) for col, value in zip(cols, values)]
    end_line = len(lines) and lines[-1]
    kinds += ["$END", "$END"]
    values += ["", ""]
    lines += [end_line, end_line]
    cols += [0, 0]
    end_cols += [0, 0]
    return kinds, values, lines, cols, end_cols


def read(text: str, path: str, start: str = "start") -> list:
    """The top-level items of `text` (or, with start="args", a call's arguments), as Lark reads them."""
    return _Reader(text, path).read(start)


class _Expressions:
    """The expression half of the grammar, over the tokens of one text."""

    __slots__ = ("K", "V", "L", "C", "E", "pos", "nest", "path", "text", "_lines")

    def __init__(self, text: str, path: str):
        self.K, self.V, self.L, self.C, self.E = tokens(text)  # kinds, texts, lines, columns, ends
        self.pos = 0  # the next token
        self.nest = 0  # calls nested by brackets, unary operators and `**` (MAX_NESTING)
        self.path = path
        self.text = text
        self._lines: list[str] | None = None

    # spans -------------------------------------------------------------------------------------

    def _span(self, first: int, last: int) -> Span:
        L = self.L
        return _tuple_new(Span, (self.path, L[first], self.C[first], L[last], self.E[last]))

    def _name(self) -> int:
        """The index of the NAME token here, consumed."""
        i = self.pos
        if self.K[i] != "NAME":
            raise GiveUp
        self.pos = i + 1
        return i

    def _expect(self, kind: str) -> None:
        if self.K[self.pos] != kind:
            raise GiveUp
        self.pos += 1

    def _deeper(self) -> None:
        self.nest += 1
        if self.nest > MAX_NESTING:
            raise GiveUp

    # expressions -------------------------------------------------------------------------------

    def _expr(self):
        """ternary: chain ["?" ternary ":" ternary]; chain: or_test ("->" or_test)*."""
        self.nest += 1  # _deeper, inline: this runs for every expression
        if self.nest > MAX_NESTING:
            raise GiveUp
        K = self.K
        first = self.pos
        node = self._binary(_OR)
        if K[self.pos] == "->":
            items = [node]
            while K[self.pos] == "->":
                self.pos += 1
                items.append(self._binary(_OR))
            node = ast.Chain(self._span(first, self.pos - 1), items)
        if K[self.pos] == "?":
            self.pos += 1
            then = self._expr()
            self._expect(":")
            other = self._expr()
            ambiguous = (not isinstance(then, ast.Chain) and isinstance(other, ast.Chain)
                         and not self._parenthesized(other))
            node = ast.Ternary(self._span(first, self.pos - 1), node, then, other, ambiguous=ambiguous)
        self.nest -= 1
        return node

    def _parenthesized(self, node) -> bool:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return parenthesized(self._lines, node)

    def _binary(self, least: int):
        """Operators binding at least as tightly as `least`, by precedence climbing."""
        K = self.K
        first = self.pos
        k = K[first]
        if k == "not":
            if least > _NOT:
                raise GiveUp  # `not` is not an operand of a comparison or arithmetic
            self._deeper()
            self.pos += 1
            operand = self._binary(_NOT)
            node = ast.Not(self._span(first, self.pos - 1), operand)
            self.nest -= 1
        elif k == "-":
            self._deeper()
            self.pos += 1
            operand = self._binary(_NEG)
            node = ast.Neg(self._span(first, self.pos - 1), operand)
            self.nest -= 1
        else:
            node = self._postfix()
        while True:
            op = K[self.pos]
            power = _BINARY.get(op)
            if power is None or power < least:
                return node
            self.pos += 1
            if power == _POW:  # right-associative, and its right side may be negated
                self._deeper()
                right = self._binary(_NEG)
                self.nest -= 1
            else:
                right = self._binary(power + 1)
            span = self._span(first, self.pos - 1)
            if power == _OR or power == _AND:
                node = ast.BoolOp(span, op, node, right)
            else:
                node = ast.BinOp(span, op, node, right)
                if power == _CMP and K[self.pos] in _COMPARISONS:
                    raise GiveUp  # comparisons do not chain

    def _postfix(self):
        K, V = self.K, self.V
        first = self.pos
        # The commonest atom, read here rather than in _atom.
        if K[first] == "NAME":
            self.pos = first + 1
            node = ast.Name(self._span(first, first), V[first])
            if K[first + 1] not in _POSTFIX:
                return node
        else:
            node = self._atom()
        while True:
            k = K[self.pos]
            if k == "(":
                self.pos += 1
                args = [] if K[self.pos] == ")" else self._args(")")
                last = self.pos
                if K[last] != ")":
                    raise GiveUp
                self.pos = last + 1
                node = ast.Call(self._span(first, last), node, args)
            elif k == "[":
                self.pos += 1
                items = [self._subscript()]
                while K[self.pos] == ",":
                    self.pos += 1
                    if K[self.pos] == "]":
                        break
                    items.append(self._subscript())
                self._expect("]")
                node = ast.Index(self._span(first, self.pos - 1), node, items)
            elif k == ".":
                self.pos += 1
                name = self._name()
                node = ast.Attr(self._span(first, name), node, V[name], self._span(name, name))
            elif k == "as":
                self.pos += 1
                name = self._name()
                node = ast.Named(self._span(first, name), node, V[name])
            else:
                return node

    def _atom(self):
        """Any atom but a name (which `_postfix`, the only caller, reads itself)."""
        K, V = self.K, self.V
        i = self.pos
        k = K[i]
        if k == "NUMBER":
            self.pos = i + 1
            text = V[i]
            if "." in text or "e" in text or "E" in text:
                return ast.Num(self._span(i, i), float(text))
            try:
                return ast.Num(self._span(i, i), int(text))
            except ValueError:
                raise GiveUp from None  # past Python's digit limit: Lark's path reports it
        if k == "(":
            self.pos = i + 1
            node = self._expr()
            self._expect(")")
            return node
        if k == "STRING":
            self.pos = i + 1
            return ast.Str(self._span(i, i), V[i][1:-1])
        if k == "[":
            return self._list()
        if k == "true" or k == "false":
            self.pos = i + 1
            return ast.Bool(self._span(i, i), k == "true")
        raise GiveUp

    def _list(self):
        K, V = self.K, self.V
        first = self.pos
        self.pos += 1
        if K[self.pos] == "]":
            self.pos += 1
            return ast.ListE(self._span(first, self.pos - 1), [])
        item = self._expr()
        if K[self.pos] == "for":
            self.pos += 1
            names = [V[self._name()]]
            while K[self.pos] == ",":
                self.pos += 1
                names.append(V[self._name()])
            if V[self.pos] != "in":
                raise GiveUp
            self.pos += 1
            source = self._binary(_OR)
            cond = None
            if K[self.pos] == "if":
                self.pos += 1
                cond = self._binary(_OR)
            self._expect("]")
            return ast.Comprehension(self._span(first, self.pos - 1), item, names, source, cond)
        items = [item]
        while K[self.pos] == ",":
            self.pos += 1
            if K[self.pos] == "]":
                break
            items.append(self._expr())
        self._expect("]")
        return ast.ListE(self._span(first, self.pos - 1), items)

    def _subscript(self):
        """expr, or a slice [expr] ":" [expr] [":" [expr]]."""
        K = self.K
        first = self.pos
        start = None if K[first] == ":" else self._expr()
        if K[self.pos] != ":":
            return start
        self.pos += 1
        stop = None if K[self.pos] in _EXPR_END or K[self.pos] == ":" else self._expr()
        step = None
        if K[self.pos] == ":":
            self.pos += 1
            step = None if K[self.pos] in _EXPR_END else self._expr()
        return ast.Slice(self._span(first, self.pos - 1), start, stop, step)

    def _args(self, closer: str) -> list:
        """arg ("," arg)* [","], up to `closer`; an arg is `NAME = expr` or an expression."""
        K, V = self.K, self.V
        args = []
        while True:
            i = self.pos
            if K[i] == "NAME" and K[i + 1] == "=":
                self.pos = i + 2
                value = self._expr()
                args.append(ast.Arg(self._span(i, self.pos - 1), V[i], value, self._span(i, i)))
            else:
                value = self._expr()
                args.append(ast.Arg(value.span, None, value))
            if K[self.pos] != ",":
                return args
            self.pos += 1
            if K[self.pos] == closer:
                return args


class _Reader(_Expressions):
    """The statements and top-level items, and the depth check of Lark's tree."""

    __slots__ = ("_else_ifs",)

    def __init__(self, text: str, path: str):
        super().__init__(text, path)
        self._else_ifs: set[int] = set()  # ids of IfStmts written `else if` (no body around them)

    def read(self, start: str) -> list:
        if start == "args":
            args = self._args("$END")
            self._expect("$END")
            if len(self.K) - 2 > MAX_DEPTH - 1:
                _check_depth([(a if a.name is not None else a.value, 2) for a in args], self._else_ifs)
            return args
        if start != "start":
            raise GiveUp
        items = []
        K = self.K
        while K[self.pos] != "$END":
            first = self.pos
            item = self._item()
            if self.pos - first > MAX_DEPTH - 1:
                self._check_item(item)
            items.append(item)
        return items

    # top level ---------------------------------------------------------------------------------

    def _item(self):
        K, V = self.K, self.V
        first = self.pos
        k = K[first]
        if k == "import":
            self.pos += 1
            self._expect("STRING")
            return ast.Import(self._span(first, first + 1), V[first + 1][1:-1], None)
        if k == "from":
            self.pos += 1
            self._expect("STRING")
            self._expect("import")
            names = [self._name()]
            while K[self.pos] == ",":
                self.pos += 1
                names.append(self._name())
            return ast.Import(self._span(first, self.pos - 1), V[first + 1][1:-1],
                              [(V[i], self._span(i, i)) for i in names])
        if k == "block":
            self.pos += 1
            name = self._name()
            self._expect("(")
            params = self._params()
            self._expect(")")
            body = self._body(3)
            return ast.BlockDef(self._span(first, self.pos - 1), V[name], params, body, self.path)
        if k == "network":
            self.pos += 1
            name = self._name()
            if K[self.pos] == "=":
                self.pos += 1
                target = self._name()
                self._expect("(")
                args = [] if K[self.pos] == ")" else self._args(")")
                self._expect(")")
                return ast.NetworkAlias(self._span(first, self.pos - 1), V[name], V[target], args, self.path)
            params = []
            if K[self.pos] == "(":
                self.pos += 1
                params = self._params()
                self._expect(")")
            body = self._body(3)
            return ast.NetworkDef(self._span(first, self.pos - 1), V[name], params, body, self.path)
        if k == "loss":
            return self._loss()
        if k == "train":
            return self._train()
        raise GiveUp

    def _params(self) -> list:
        params: list = []
        K = self.K
        if K[self.pos] == ")":
            return params
        while True:
            first = self._name()
            default = None
            if K[self.pos] == "=":
                self.pos += 1
                default = self._expr()
            params.append(ast.Param(self._span(first, self.pos - 1), self.V[first], default))
            if K[self.pos] != ",":
                return params
            self.pos += 1
            if K[self.pos] == ")":
                return params

    def _check_item(self, item) -> None:
        """Refuse (to Lark) an item whose tree Lark would find too deep; bodies were checked as read."""
        if isinstance(item, (ast.BlockDef, ast.NetworkDef)):
            _check_depth([(p, 4) for p in item.params], self._else_ifs)
        else:
            _check_depth([(item, 2)], self._else_ifs)

    # statements --------------------------------------------------------------------------------

    def _body(self, depth: int | None) -> list:
        """`{ statements }`; `depth`: where Lark's tree puts them, for a body not inside another."""
        K = self.K
        self._expect("{")
        stmts = []
        while K[self.pos] != "}":
            first = self.pos
            stmt = self._stmt()
            # A statement holds at least one token per node of Lark's tree, so only a long one
            # can be too deep.
            if depth is not None and self.pos - first > MAX_DEPTH - depth:
                _check_depth([(stmt, depth + 1)], self._else_ifs)
            stmts.append(stmt)
        self.pos += 1
        return stmts

    def _stmt(self):
        K, V = self.K, self.V
        first = self.pos
        k = K[first]
        if k == "NAME":
            if K[first + 1] == "=":  # the commonest statement, `name = value`
                self.pos = first + 2
                value = self._expr()
                return ast.Assign(self._span(first, self.pos - 1), [V[first]], value, [self._span(first, first)])
            names = [first]
            self.pos += 1
            while K[self.pos] == ",":
                self.pos += 1
                names.append(self._name())
            self._expect("=")
            value = self._expr()
            return ast.Assign(self._span(first, self.pos - 1), [V[i] for i in names], value,
                              [self._span(i, i) for i in names])
        if k == "input":
            self.pos += 1
            items = [self._input_item()]
            while K[self.pos] == ",":
                self.pos += 1
                items.append(self._input_item())
            return ast.InputDecl(self._span(first, self.pos - 1), items)
        if k == "output":
            self.pos += 1
            name = self._name()
            value = None
            if K[self.pos] == "=":
                self.pos += 1
                value = self._expr()
            return ast.OutputDecl(self._span(first, self.pos - 1), V[name], value, self._span(name, name))
        if k == "target":
            self.pos += 1
            name = self._name()
            self._expect(":")
            type_ = self._tensor_type()
            return ast.TargetDecl(self._span(first, self.pos - 1), V[name], type_)
        if k == "param":
            self.pos += 1
            name = self._name()
            self._expect(":")
            type_ = self._tensor_type()
            init = None
            if K[self.pos] == "=":
                self.pos += 1
                init = self._expr()
            return ast.ParamDecl(self._span(first, self.pos - 1), V[name], type_, init, self._span(name, name))
        if k == "if":
            return self._if()
        if k == "assert":
            self.pos += 1
            cond = self._expr()
            message = None
            if K[self.pos] == ",":
                self.pos += 1
                message = self._expr()
            return ast.AssertStmt(self._span(first, self.pos - 1), cond, message)
        if k == "loss":
            return self._loss()
        if k == "train":
            return self._train()
        raise GiveUp

    def _input_item(self):
        name = self._name()
        type_ = None
        if self.K[self.pos] == ":":
            self.pos += 1
            type_ = self._tensor_type()
        return ast.InputItem(self._span(name, self.pos - 1), self.V[name], type_)

    def _tensor_type(self):
        K = self.K
        first = self._name()
        self._expect("[")
        dims = []
        if K[self.pos] != "]":
            dims.append(self._expr())
            while K[self.pos] == ",":  # no trailing comma in a type
                self.pos += 1
                dims.append(self._expr())
        self._expect("]")
        return ast.TensorTypeE(self._span(first, self.pos - 1), self.V[first], dims)

    def _if(self):
        self._deeper()
        first = self.pos
        self.pos += 1
        cond = self._expr()
        then = self._body(None)
        other: list = []
        if self.K[self.pos] == "else":
            self.pos += 1
            if self.K[self.pos] == "if":
                nested = self._if()
                self._else_ifs.add(id(nested))
                other = [nested]
            else:
                other = self._body(None)
        self.nest -= 1
        return ast.IfStmt(self._span(first, self.pos - 1), cond, then, other)

    def _loss(self):
        K = self.K
        first = self.pos
        self.pos += 1
        name = self._name()
        args: list = []
        if K[self.pos] == "(":
            self.pos += 1
            if K[self.pos] != ")":
                args = self._args(")")
            self._expect(")")
        return ast.LossStmt(self._span(first, self.pos - 1), self.V[name], args)

    def _train(self):
        K = self.K
        first = self.pos
        self.pos += 1
        self._expect("{")
        settings = []
        while K[self.pos] != "}":
            name = self._name()
            self._expect("=")
            value = self._expr()
            settings.append(ast.Setting(self._span(name, self.pos - 1), self.V[name], value))
        self.pos += 1
        return ast.TrainDef(self._span(first, self.pos - 1), settings)


def parenthesized(lines: list[str], node) -> bool:
    """Whether `(` comes right before `node` on its line (parentheses leave no node behind)."""
    line = lines[node.span.line - 1] if lines else ""
    return line[:node.span.col - 1].rstrip().endswith("(")


def _check_depth(roots: list[tuple[object, int]], else_ifs: set[int]) -> None:
    """Give up where Lark's tree of these nodes (at these depths) goes past MAX_DEPTH.

    Mirrors the tree Lark builds: a node per AST node, plus the `args`, `params` and `body`
    nodes that become lists, and none for a positional argument or parentheses.
    """
    stack = list(roots)
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise GiveUp
        for child, below in _children(node, else_ifs):
            if child is not None:
                stack.append((child, depth + below))


def _children(node, else_ifs: set[int]) -> list[tuple[object, int]]:
    """The AST children of `node` with how many levels below it Lark's tree puts them."""
    if isinstance(node, ast.Arg):
        return [(node.value, 1)] if node.name is not None else []
    if isinstance(node, (ast.Call, ast.LossStmt, ast.NetworkAlias)):
        head = [(node.func, 1)] if isinstance(node, ast.Call) else []
        return head + [(a if a.name is not None else a.value, 2) for a in node.args]
    if isinstance(node, ast.IfStmt):
        other = 1 if len(node.other) == 1 and id(node.other[0]) in else_ifs else 2
        return [(node.cond, 1)] + [(s, 2) for s in node.then] + [(s, other) for s in node.other]
    if isinstance(node, (ast.BlockDef, ast.NetworkDef)):
        return [(p, 2) for p in node.params] + [(s, 2) for s in node.body]
    out = []
    for value in (getattr(node, f) for f in node.__match_args__):  # every field, inherited ones too
        if isinstance(value, ast.Node):
            out.append((value, 1))
        elif isinstance(value, list):
            out += [(v, 1) for v in value if isinstance(v, ast.Node)]
    return out
