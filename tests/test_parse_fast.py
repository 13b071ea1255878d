"""The two readers of the grammar agree: netspec/descent.py builds Lark's tree, spans and all.

Lark (grammars/netspec.lark) is the authoritative reader; the hand-written one may only give up,
never accept a text Lark rejects or read one differently. Checked on every spec in the
repository, the specs inside the tests and docs, and seeded random texts over the whole grammar
and their one-token mutations.
"""

from __future__ import annotations

import ast as pyast
import dataclasses
import random
import re
from pathlib import Path

import pytest

from netspec import descent
from netspec.errors import LimitProblem, NetspecError, Span
from netspec.lark_reader import parser
from netspec.parse import KEYWORDS, MAX_DEPTH, parse, parse_with_lark

ROOT = Path(__file__).resolve().parent.parent


def dump(node):
    """Everything a node holds, spans included (dataclass equality leaves spans out)."""
    if isinstance(node, Span):
        return ("Span", node.path, node.line, node.col, node.end_line, node.end_col)
    if isinstance(node, (list, tuple)):
        return (type(node).__name__, [dump(x) for x in node])
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple((f.name, dump(getattr(node, f.name)))
                                              for f in dataclasses.fields(node))
    return (type(node).__name__, node)


def both(text: str, start: str = "start"):
    """(Lark's dump or its error, the fast reader's dump or None where it gave up)."""
    text = text.removeprefix("\ufeff")
    try:
        lark = dump(parse_with_lark(text, "t.net", start))
    except NetspecError as e:
        lark = e
    try:
        fast = dump(descent.read(text, "t.net", start))
    except descent.GiveUp:
        fast = None
    return lark, fast


def agree(text: str, start: str = "start", must_read: bool = False) -> bool:
    """Assert the readers agree on `text`; True where Lark accepted it."""
    lark, fast = both(text, start)
    if isinstance(lark, NetspecError):
        assert fast is None, f"the fast reader accepts what Lark rejects ({lark}):\n{text}"
        return False
    if fast is None:
        assert not must_read, f"the fast reader gave up on:\n{text}"
        return True
    assert fast == lark, f"the readers disagree on:\n{text}"
    return True


# The specs of the repository -----------------------------------------------------------------

SPEC_FILES = sorted(p for folder in ("models", "examples", "tests", "docs") for p in (ROOT / folder).rglob("*.net"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(ROOT)) for p in SPEC_FILES])
def test_every_spec_file_reads_alike(path):
    agree(path.read_text(encoding="utf-8"))


def test_the_model_zoo_never_needs_lark():
    # The fast reader is the one that reads real specs; falling back on them would hide a gap.
    for path in sorted((ROOT / "models").glob("*.net")) + sorted((ROOT / "examples").glob("*.net")):
        text = path.read_text(encoding="utf-8")
        agree(text, must_read=True)
        agree(text.replace("\n", "\r\n"), must_read=True)  # as saved on Windows
        agree(text.replace("    ", "\t"), must_read=True)


def _embedded_specs() -> list[str]:
    """Spec texts inside the docs' ```netspec blocks and the tests' string constants."""
    texts = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        texts += re.findall(r"```netspec\n(.*?)```", md.read_text(encoding="utf-8"), re.S)
    for py in sorted((ROOT / "tests").glob("test_*.py")):
        for node in pyast.walk(pyast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, pyast.Constant) and isinstance(node.value, str) \
                    and re.search(r"\b(network|block)\s+\w+", node.value) and "{" in node.value:
                texts.append(node.value)
    return texts


def test_specs_in_docs_and_tests_read_alike():
    texts = _embedded_specs()
    assert len(texts) > 100
    accepted = sum(agree(t) for t in texts)
    assert accepted > len(texts) // 2


# Seeded random texts over the whole grammar --------------------------------------------------

NAMES = ["x", "h", "in", "Linear", "_a1", "conv2", "ifx", "notes", "orbit", "andy", "asx", "form", "trueish"]
NUMBERS = ["0", "16", "1.5", "1.", ".5", "1e5", "2.5E-3", "007", "3e+2"]
STRINGS = ['"relu"', "'a b'", '""', '"# not a comment"', "'x->y'"]
# Between tokens: blanks, newlines, comments and form feeds (which Python's splitlines, used for
# the ternary's parentheses check, splits at but Lark does not).
GAPS = [" ", " ", " ", "  ", "\n", " \t", "\n    ", "  # note\n", "\r\n", "\f "]
TIGHT_LEFT = {"(", "[", ",", "{"}
TIGHT_RIGHT = {")", "]", ",", "}"}


class Gen:
    """Token lists of grammatical text, by the grammar's rules from the loosest binding down."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def pick(self, xs):
        return self.r.choice(xs)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def sep_list(self, item, n_max: int, trailing: bool) -> list[str]:
        out = item()
        for _ in range(self.r.randrange(n_max)):
            out += [","] + item()
        if trailing and self.chance(0.3):
            out.append(",")
        return out

    def expr(self, d: int) -> list[str]:
        if d > 0 and self.chance(0.1):
            return self.chain(d - 1) + ["?"] + self.expr(d - 1) + [":"] + self.expr(d - 1)
        return self.chain(d)

    def chain(self, d: int) -> list[str]:
        out = self.or_test(d)
        if d > 0 and self.chance(0.25):
            for _ in range(self.r.randint(1, 3)):
                out += ["->"] + self.or_test(d - 1)
        return out

    def joined(self, ops, operand, d: int, p: float) -> list[str]:
        out = operand(d)
        while d > 0 and self.chance(p):
            out += [self.pick(ops)] + operand(d - 1)
        return out

    def or_test(self, d):
        return self.joined(["or"], self.and_test, d, 0.1)

    def and_test(self, d):
        return self.joined(["and"], self.not_test, d, 0.1)

    def not_test(self, d):
        if d > 0 and self.chance(0.08):
            return ["not"] + self.not_test(d - 1)
        return self.comparison(d)

    def comparison(self, d):
        out = self.sum(d)
        if d > 0 and self.chance(0.1):
            out += [self.pick(["==", "!=", "<=", ">=", "<", ">"])] + self.sum(d - 1)
        return out

    def sum(self, d):
        return self.joined(["+", "-"], self.term, d, 0.2)

    def term(self, d):
        return self.joined(["*", "/", "//", "%"], self.factor, d, 0.2)

    def factor(self, d):
        if d > 0 and self.chance(0.1):
            return ["-"] + self.factor(d - 1)
        out = self.postfix(d)
        if d > 0 and self.chance(0.08):
            out += ["**"] + self.factor(d - 1)
        return out

    def postfix(self, d):
        out = self.atom(d)
        while d > 0 and self.chance(0.3):
            d -= 1
            kind = self.r.randrange(4)
            if kind == 0:
                out += ["("] + (self.args(d) if self.chance(0.8) else []) + [")"]
            elif kind == 1:
                out += ["["] + self.sep_list(lambda: self.subscript(d), 3, True) + ["]"]
            elif kind == 2:
                out += [".", self.pick(NAMES)]
            else:
                out += ["as", self.pick(NAMES)]
        return out

    def subscript(self, d):
        if not self.chance(0.4):
            return self.expr(d)
        part = lambda: self.expr(d) if self.chance(0.5) else []  # noqa: E731
        out = part() + [":"] + part()
        if self.chance(0.4):
            out += [":"] + part()
        return out

    def args(self, d):
        def arg():
            if self.chance(0.3):
                return [self.pick(NAMES), "="] + self.expr(d)
            return self.expr(d)
        return self.sep_list(arg, 3, True)

    def atom(self, d):
        kind = self.r.randrange(9 if d > 0 else 5)
        if kind == 0:
            return [self.pick(NAMES)]
        if kind == 1:
            return [self.pick(NUMBERS)]
        if kind == 2:
            return [self.pick(STRINGS)]
        if kind == 3:
            return [self.pick(["true", "false"])]
        if kind == 4:
            return [self.pick(NAMES)]
        if kind in (5, 6):
            return ["("] + self.expr(d - 1) + [")"]
        if kind == 7:
            return ["["] + (self.sep_list(lambda: self.expr(d - 1), 4, True) if self.chance(0.85) else []) + ["]"]
        out = ["["] + self.expr(d - 1) + ["for"] + self.sep_list(lambda: [self.pick(NAMES)], 2, False)
        out += ["in"] + self.or_test(d - 1)
        if self.chance(0.4):
            out += ["if"] + self.or_test(d - 1)
        return out + ["]"]

    # statements and items

    def tensor_type(self):
        dims = self.sep_list(lambda: self.expr(1), 3, False) if self.chance(0.9) else []
        return [self.pick(["float32", "int64"]), "["] + dims + ["]"]

    def stmt(self, d: int) -> list[str]:
        kind = self.r.randrange(12)
        if kind <= 3:
            return self.sep_list(lambda: [self.pick(NAMES)], 2, False) + ["="] + self.expr(3)
        if kind == 4:
            return ["input"] + self.sep_list(
                lambda: [self.pick(NAMES)] + ([":"] + self.tensor_type() if self.chance(0.7) else []), 2, False)
        if kind == 5:
            return ["target", self.pick(NAMES), ":"] + self.tensor_type()
        if kind == 6:
            return ["output", self.pick(NAMES)] + (["="] + self.expr(2) if self.chance(0.6) else [])
        if kind == 7:
            return ["param", self.pick(NAMES), ":"] + self.tensor_type() + (["="] + self.expr(1) if self.chance(0.5) else [])
        if kind == 8 and d > 0:
            out = ["if"] + self.expr(2) + self.body(d - 1)
            if self.chance(0.5):
                out += ["else"] + (self.stmt_if(d - 1) if self.chance(0.4) else self.body(d - 1))
            return out
        if kind == 9:
            return ["assert"] + self.expr(2) + ([","] + [self.pick(STRINGS)] if self.chance(0.5) else [])
        if kind == 10:
            return self.loss()
        return self.train()

    def stmt_if(self, d):
        return ["if"] + self.expr(1) + self.body(d)

    def body(self, d):
        out = ["{"]
        for _ in range(self.r.randrange(4)):
            out += self.stmt(d)
        return out + ["}"]

    def loss(self):
        out = ["loss", self.pick(["cross_entropy", "mse"])]
        if self.chance(0.6):
            out += ["("] + (self.args(1) if self.chance(0.7) else []) + [")"]
        return out

    def train(self):
        out = ["train", "{"]
        for _ in range(self.r.randrange(3)):
            out += [self.pick(["epochs", "lr"]), "="] + self.expr(1)
        return out + ["}"]

    def params(self):
        if not self.chance(0.8):
            return []
        return self.sep_list(lambda: [self.pick(NAMES)] + (["="] + self.expr(1) if self.chance(0.5) else []), 3, True)

    def item(self) -> list[str]:
        kind = self.r.randrange(8)
        if kind == 0:
            return ["import", self.pick(STRINGS)]
        if kind == 1:
            return ["from", self.pick(STRINGS), "import"] + self.sep_list(lambda: [self.pick(NAMES)], 3, False)
        if kind == 2:
            return ["block", "B", "("] + self.params() + [")"] + self.body(2)
        if kind == 3:
            head = ["network", "N"] + (["("] + self.params() + [")"] if self.chance(0.5) else [])
            return head + self.body(2)
        if kind == 4:
            return ["network", "A", "=", "N", "("] + (self.args(1) if self.chance(0.7) else []) + [")"]
        if kind == 5:
            return self.loss()
        if kind == 6:
            return self.train()
        return ["network", "M"] + self.body(2)

    def text(self, tokens: list[str]) -> str:
        out = [tokens[0]] if tokens else []
        for left, right in zip(tokens, tokens[1:]):
            tight = left in TIGHT_LEFT or right in TIGHT_RIGHT
            out.append(("" if tight and self.chance(0.5) else self.pick(GAPS)) + right)
        return "".join(out)


def test_random_expressions_read_alike():
    g = Gen(20261127)
    accepted = 0
    for _ in range(1000):
        text = g.text(["k", "="] + g.expr(3) + [","] + g.expr(2))
        accepted += agree(text, start="args", must_read=True)
    assert accepted == 1000


def test_random_files_read_alike():
    g = Gen(7)
    seen = set()
    for _ in range(150):
        tokens = []
        for _ in range(g.r.randint(0, 4)):
            tokens += g.item()
        seen.update(tokens)
        text = g.text(tokens) if tokens else g.pick(["", "\n", "# only a comment\n"])
        if g.chance(0.1):
            text = "\ufeff" + text
        agree(text, must_read=True)
    # The generator reaches every keyword and operator of the grammar.
    literals = {t.pattern.value for t in parser().terminals if t.pattern.type == "str"}
    assert literals | {"**", "//", "%", "<=", "!="} <= seen


def _mutants(texts: list[str], seed: int, n: int) -> list[str]:
    """Each text with one token deleted, doubled or replaced by another token."""
    r = random.Random(seed)
    vocabulary = sorted(descent._KIND) + NAMES[:3] + NUMBERS[:3] + STRINGS[:2] + ["in", "!", ";", '"open', "#", "\n"]
    out = []
    for _ in range(n):
        text = r.choice(texts)
        spans = [m.span(2) for m in descent._TOKEN.finditer(text) if m[2] != "\n"]
        if not spans:
            continue
        a, b = r.choice(spans)
        how = r.randrange(3)
        if how == 0:
            out.append(text[:a] + text[b:])
        elif how == 1:
            out.append(text[:b] + " " + text[a:b] + text[b:])
        else:
            out.append(text[:a] + r.choice(vocabulary) + text[b:])
    return out


def test_mutated_texts_are_never_accepted_where_lark_refuses():
    g = Gen(99)
    texts = [g.text(g.item() + g.item()) for _ in range(60)]
    texts += [(ROOT / "models" / name).read_text(encoding="utf-8") for name in ("mlp.net", "lenet5.net", "convnext.net")]
    refused = 0
    for text in _mutants(texts, 5, 700):
        refused += not agree(text)
    assert refused > 200  # the mutations do break the syntax, mostly


# Limits and corner cases -------------------------------------------------------------------------

def _net(expr: str) -> str:
    return "network N {\n    input x: float32[N, 4]\n    y = " + expr + "\n    output y\n}\n"


@pytest.mark.parametrize("n", range(MAX_DEPTH - 8, MAX_DEPTH + 1))
def test_the_depth_limit_holds_to_the_level(n):
    # Left-nested sums nest Lark's tree without nesting brackets; lists nest both; `else if`
    # nests one level a branch, `else { if` two. Lark refuses past MAX_DEPTH; the fast reader
    # must read exactly what Lark accepts.
    agree(_net("x" + " + x" * n), must_read=True)
    agree(_net("[" * (n // 2) + "x" + "]" * (n // 2)), must_read=True)
    agree("k=" + "1 - " * n + "1", start="args", must_read=True)
    agree("k=1, " + "1 - " * (n + 1) + "1", start="args", must_read=True)  # a positional argument
    # Ten `else if` branches (one level each) or ten `else { if` (two each), then a sum.
    for branch, levels in ((" else if x { y = x }@", 10), (" else { if x { y = x }@ }", 20)):
        text = "if x { y = x }" + "@"
        for _ in range(10):
            text = text.replace("@", branch)
        text = text.replace("@", " else { y = x" + " + x" * (n - 2 - levels) + " }")
        agree("network N {\n input x\n " + text + "\n output y\n}", must_read=True)


def test_deep_brackets_and_unary_chains_go_to_lark():
    # Deeply parenthesised is legal (parentheses leave no node); the fast reader hands it on.
    assert agree(_net("(" * 3000 + "x" + ")" * 3000))
    assert not agree(_net("-" * 3000 + "x"))
    assert not agree(_net("not " * 3000 + "x"))


@pytest.mark.parametrize("text", [
    _net("in -> Linear(4)"), _net("[i for in in in]"), _net("x as in"),
    _net("x.y"), _net("x .y"), _net("x[1:]"), _net("x[::]"), _net("x[:, 1:-1:2, ]"),
    _net("a ** -b ** c"), _net("-a ** b"), _net("not a == b and c or d"), _net("a // b / c % d * e"),
    _net("c ? x -> ReLU : x -> Sigmoid"), _net("c ? x : (x -> Sigmoid)"), _net("c ? x :\f(x -> Y)"),
    _net("c ? a : b ? d : e"), _net("(x) -> (y)"), _net("((x)) + (y)"), _net("f(a=(x), (y),)"),
    _net("1.e5 + .5e-3 + 007"), _net("x\r\n -> y"), "\ufeff" + _net("x"), "network N {\n input x: in[3]\n}",
    _net('f("é ü", \'#\') # ünïcödé'), _net("x -> Linear(4) # c\r\n  -> ReLU"), "", "# only\n# comments",
])
def test_corner_cases_read_alike(text):
    agree(text, must_read=True)


@pytest.mark.parametrize("text", [
    _net("a < b < c"), _net("a == not b"), _net("- not a"), _net("x.5"), "network N {\n input x\n h = as\n}", _net("input"),
    _net("[y for y inx]"), _net("f(,)"), _net("x[]"), _net("()"), _net("\"open"), _net("x ! y"),
    _net("x; y"), _net("x\v"), _net("x\u00a0"), _net("٣"), _net("1" + "0" * 5000),
    "network N {\n input x: float32[1,]\n}",
    "network N {\n for = x\n}", "block B {}", "network {}",
])
def test_what_the_fast_reader_leaves_to_lark(text):
    lark, fast = both(text)
    assert fast is None


def test_the_keywords_are_the_grammars():
    terminals = parser().terminals
    words = {t.pattern.value for t in terminals if t.pattern.type == "str" and t.pattern.value.isidentifier()}
    # `in` is a name to the fast reader except where a comprehension expects it, as to Lark.
    assert words == KEYWORDS | {"in"}
    punctuation = {t.pattern.value for t in terminals if t.pattern.type == "str" and not t.pattern.value.isidentifier()}
    assert punctuation <= descent._PUNCTUATION
    # The fast reader takes `in` for a name wherever it is not after a comprehension's names;
    # that holds while no state of Lark's parser accepts both (its lexer then reads a name).
    for start in ("start", "args"):
        for actions in parser(start).parser.parser.parser.parse_table.states.values():
            assert not ("IN" in actions and "NAME" in actions)


def test_parse_takes_the_fast_path_and_falls_back(monkeypatch):
    import netspec.parse as parse_mod
    text = (ROOT / "models" / "resnet.net").read_text(encoding="utf-8")
    expected = dump(parse_with_lark(text, "resnet.net"))
    monkeypatch.setattr(parse_mod, "parse_with_lark", lambda *a, **k: pytest.fail("Lark was used"))
    assert dump(parse(text, "resnet.net")) == expected
    monkeypatch.undo()
    with pytest.raises(NetspecError, match="unexpected"):
        parse(_net("a < b < c"), "bad.net")
    assert parse("network N {\n input x\n h = as\n}", "quirk.net")  # what only Lark accepts, Lark reads


def test_an_over_long_integer_is_a_located_error():
    # Python refuses to convert more than 4,300 digits; that was a crash (exit 3) in Lark's path.
    with pytest.raises(LimitProblem, match="an integer of 5001 digits") as e:
        parse(_net("x * 1" + "0" * 5000), "long.net")
    span = e.value.diagnostics[0].span
    assert (span.path, span.line, span.col, span.end_col) == ("long.net", 3, 13, 13 + 5001)
