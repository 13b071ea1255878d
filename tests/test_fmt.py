"""`netspec fmt`: golden layouts, idempotence, and the same checked graph before and after.

Each tests/golden/fmt/NAME.in is formatted and compared with NAME.out. After a deliberate
change to the layout, regenerate the expected files and review the diff:

    NETSPEC_REGEN=1 pytest tests/test_fmt.py
"""

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspec import ast, fmt
from netspec.cli import main
from netspec.errors import NetspecError, SyntaxProblem
from netspec.fmt import FormatProblem, format_text
from netspec.parse import parse
from netspec.spec import load
from tests.test_fuzz import SOURCES, edit, mangle

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "fmt"
CASES = sorted(GOLDEN.glob("*.in"))
REGEN = os.environ.get("NETSPEC_REGEN") == "1"
# Every spec of the project: the zoo, the examples and the test data.
SPECS = sorted([*ROOT.glob("models/*.net"), *ROOT.glob("examples/**/*.net"), *ROOT.glob("tests/**/*.net")])
# What users read and copy is kept in the one layout; tests/ data keeps the layouts its expected
# diagnostics point into (line and column numbers).
PUBLISHED = sorted([*ROOT.glob("models/*.net"), *ROOT.glob("examples/**/*.net")])


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden_layout(case: Path):
    out = format_text(case.read_text(encoding="utf-8"), str(case))
    expected = case.with_suffix(".out")
    if REGEN:
        expected.write_text(out, encoding="utf-8")
    assert out == expected.read_text(encoding="utf-8")
    assert format_text(out, str(case)) == out


def _parses(path: Path) -> bool:
    try:
        parse(path.read_text(encoding="utf-8"), str(path))
        return True
    except SyntaxProblem:
        return False


@pytest.mark.parametrize("spec", SPECS, ids=_rel)
def test_idempotent_on_every_spec(spec: Path):
    text = spec.read_text(encoding="utf-8")
    if not _parses(spec):
        with pytest.raises(SyntaxProblem):
            format_text(text, str(spec))
        return
    once = format_text(text, str(spec))
    assert format_text(once, str(spec)) == once


def _networks(path: Path) -> list[str]:
    return [i.name for i in parse(path.read_text(encoding="utf-8"), str(path))
            if isinstance(i, (ast.NetworkDef, ast.NetworkAlias))]


def _checked(path: Path, network: str | None):
    """What a spec means: every node's name, kind, op, parameters, inputs and types; or its error."""
    try:
        g = load(str(path), network).graph
    except NetspecError as e:
        return type(e).__name__, [d.message for d in e.diagnostics]
    nodes = [(n, d["kind"], d.get("op"), d.get("params"), d["args"], d["types"], d.get("weight"))
             for n, d in g.nodes(data=True)]
    outputs = [(name, ref) for name, ref, _ in g.graph["outputs"]]
    return nodes, outputs, g.graph["inputs"], g.graph["targets"], g.graph["losses"], g.graph["train"]


def test_meaning_is_kept(tmp_path, monkeypatch):
    """Format a copy of the project, then check every network in both: the same graph or error."""
    # The copy's examples import the copy's models/, which is not netspec's zoo, and helpers under
    # golden lib/ folders import their parents: allow imports anywhere in both trees.
    monkeypatch.setenv("NETSPEC_IMPORT_PATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    copies = {}
    for spec in SPECS:
        target = tmp_path / spec.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(spec, target)
        copies[spec] = target
    for lib in ROOT.glob("tests/golden/**/lib"):  # helpers that golden cases import
        shutil.copytree(lib, tmp_path / lib.relative_to(ROOT), dirs_exist_ok=True)
    for original, copy in copies.items():
        if _parses(original):
            copy.write_text(format_text(original.read_text(encoding="utf-8"), str(original)), encoding="utf-8")
    compared = 0
    for original, copy in copies.items():
        if not _parses(original):
            continue
        for network in _networks(original) or [None]:
            before, after = _checked(original, network), _checked(copy, network)
            if isinstance(before[0], str):  # an error case: the same error, message for message
                after = (after[0], [m.replace(str(tmp_path), str(ROOT)) for m in after[1]])
            assert after == before, f"{_rel(original)}:{network}"
            compared += 1
    assert compared > 60  # every zoo network and every golden error case


def test_project_is_formatted():
    assert PUBLISHED
    unformatted = [_rel(s) for s in PUBLISHED
                   if format_text(s.read_text(encoding="utf-8"), str(s)) != s.read_text(encoding="utf-8")]
    assert unformatted == [], "run `netspec fmt` on these"


def test_unknown_token_is_refused(monkeypatch):
    # A token fmt has no spacing rule for (as a new grammar form would bring) stops it cleanly.
    monkeypatch.setattr(fmt, "PUNCT", fmt.PUNCT - {"?"})
    with pytest.raises(FormatProblem) as e:
        format_text((ROOT / "models/resnet.net").read_text(encoding="utf-8"), "models/resnet.net")
    d = e.value.diagnostics[0]
    assert "no layout rule for '?'" in d.message
    assert (d.span.path, d.span.line, d.span.col) == ("models/resnet.net", 7, 47)


def test_a_layout_that_changes_meaning_is_never_returned(monkeypatch):
    real = fmt._render
    monkeypatch.setattr(fmt, "_render", lambda lines: [x.replace("ReLU", "GELU") for x in real(lines)])
    with pytest.raises(RuntimeError, match="change the meaning"):
        format_text("network N {\n    input x: float32[N, 2]\n    output y = x -> ReLU\n}\n")


def _run(args, **kw):
    return CliRunner().invoke(main, ["fmt", *args], **kw)


def test_cli_writes_checks_and_diffs(tmp_path):
    messy = tmp_path / "a.net"
    messy.write_text("network A{input x:float32[N,2]\noutput y=x->Linear(2)}\n", encoding="utf-8")
    clean = tmp_path / "sub" / "b.net"
    clean.parent.mkdir()
    clean.write_text("network B {\n    input x: float32[N, 2]\n    output y = x -> ReLU\n}\n", encoding="utf-8")
    before = messy.read_text(encoding="utf-8")
    messy.chmod(0o640)

    r = _run(["--check", str(tmp_path)])
    assert r.exit_code == 1 and f"would reformat {messy}" in r.stderr
    assert "1 file would be reformatted, 1 unchanged" in r.stderr
    r = _run(["--diff", str(messy)])
    assert r.exit_code == 0 and "+    output y = x -> Linear(2)" in r.stdout
    assert messy.read_text(encoding="utf-8") == before  # --check and --diff write nothing

    r = _run([str(tmp_path)])
    assert r.exit_code == 0 and f"reformatted {messy}" in r.stderr
    assert messy.read_text(encoding="utf-8") == ("network A {\n    input x: float32[N, 2]\n"
                                                 "    output y = x -> Linear(2)\n}\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.net", "b.net", "sub"]  # no temporaries
    assert messy.stat().st_mode & 0o777 == 0o640  # the file keeps its permissions
    assert _run(["--check", str(tmp_path)]).exit_code == 0


def test_cli_stdin_to_stdout():
    r = _run(["-"], input="network A{input x:float32[N,2] output y=x}")
    assert r.exit_code == 0
    assert r.stdout == "network A {\n    input x: float32[N, 2]\n    output y = x\n}\n"


def test_cli_bad_input_is_a_located_error(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network A {\n    input x: float32[N, 2];\n}\n", encoding="utf-8")
    good = tmp_path / "good.net"
    good.write_text("network  B {\n}\n", encoding="utf-8")
    r = _run([str(bad), str(good)])
    assert r.exit_code == 1
    assert f"{bad}:2:27: error: unexpected character ';'" in r.stderr
    assert bad.read_text(encoding="utf-8").endswith(";\n}\n")  # left alone
    assert good.read_text(encoding="utf-8") == "network B {\n}\n"  # the others are still formatted
    assert "1 failed" in r.stderr
    r = _run([str(tmp_path / "missing.net")])
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_empty_and_comment_only_files():
    assert format_text("") == ""
    assert format_text("\n\n   \n") == ""
    assert format_text("\n# only a comment   \n\n\n# and another\n") == "# only a comment\n\n# and another\n"


def test_a_layout_that_breaks_the_syntax_is_never_returned(monkeypatch):
    real = fmt._render
    monkeypatch.setattr(fmt, "_render", lambda lines: [x.replace("->", "- >") for x in real(lines)])
    with pytest.raises(RuntimeError, match="break the syntax"):
        format_text("network N {\n    input x: float32[N, 2]\n    output y = x -> ReLU\n}\n")


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(SOURCES), edits=st.lists(edit, min_size=1, max_size=3))
def test_a_mangled_spec_formats_or_fails_cleanly(source, edits):
    """Whatever the text: a located error, or a layout that is stable and means the same."""
    text = mangle(source.read_text(encoding="utf-8"), edits)
    try:
        once = format_text(text, "mangled.net")  # the meaning check inside raises on any change
    except NetspecError as e:
        assert "error: " in e.render()
        return
    assert format_text(once, "mangled.net") == once


def _respaced(text: str, rng) -> str:
    """The same program with spaces added and dropped between tokens on each line, at random."""
    out, last, prev = [], 0, None
    for t in fmt._tokens(text):
        gap = text[last:t.pos]
        if "\n" not in gap and t.kind != "COMMENT":
            if rng.random() < 0.3:
                gap += " " * rng.randint(1, 3)
            elif prev is not None and "PUNCT" in (t.kind, prev.kind) and rng.random() < 0.5 \
                    and not {"-", "*"} & {t.text, prev.text}:  # `- -1`, `* *` would change tokens
                gap = ""
        out.append(gap + t.text)
        last, prev = t.pos + len(t.text), t
    return "".join(out) + text[last:]


@pytest.mark.parametrize("spec", [s for s in SPECS if s.parent.name != "errors"] + CASES, ids=_rel)
def test_spacing_within_a_line_never_matters(spec):
    import random
    rng = random.Random(spec.name)
    text = spec.read_text(encoding="utf-8")
    if "fmt: off" in text:
        pytest.skip("lines under `# fmt: off` keep their spacing by design")
    expected = format_text(text, str(spec))
    for _ in range(5):
        assert format_text(_respaced(text, rng), str(spec)) == expected
