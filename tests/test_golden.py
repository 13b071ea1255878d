"""Golden files, three kinds:

- tests/golden/errors/NAME.net is one user mistake, NAME.err the exact stderr of
  `netspec check NAME.net`, run from that folder so the paths in messages are stable. A case's
  first line may read `# check: ARGS` to pass other arguments than the file name (for example
  `# check: case.net:Network`). Files under lib/ are helpers that cases import.
- tests/golden/specs/NAME.net is a spec that must check and mean one model; NAME.txt is its
  layer dump (`dump` below): each layer's name, op, output shape and parameter count.
- tests/golden/compile/NAME.net checks but cannot be compiled with the options on its first line
  (`# compile: --opset 13`); NAME.err is the exact stderr of `netspec compile`.
- tests/golden/zoo/FILE.NETWORK.txt pins every network of models/*.net the same way: layer
  names are checkpoint keys and ONNX initializer names, so a change to any is a change users see.

After a deliberate change, regenerate the expected files and review the diff:

    NETSPEC_REGEN=1 pytest tests/test_golden.py
"""

import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from netspec.cli import main
from netspec.errors import GraphProblem, LimitProblem, NameProblem, ParamProblem, ShapeProblem, SyntaxProblem
from netspec.loader import Loader
from netspec.parse import MAX_DEPTH
from netspec.spec import load

ERRORS = Path(__file__).parent / "golden" / "errors"
SPECS = Path(__file__).parent / "golden" / "specs"
ZOO_GOLDEN = Path(__file__).parent / "golden" / "zoo"
MODELS = Path(__file__).resolve().parent.parent / "models"
CASES = sorted(ERRORS.glob("*.net"))
REGEN = os.environ.get("NETSPEC_REGEN") == "1"


def _args(case: Path) -> list[str]:
    first = case.read_text(encoding="utf-8").splitlines()[0]
    if first.startswith("# check:"):
        return shlex.split(first.removeprefix("# check:"))
    return [case.name]


def _check(args: list[str], cwd: Path, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, ["check", *args])


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_error_golden(case: Path, monkeypatch):
    result = _check(_args(case), ERRORS, monkeypatch)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "diagnostics go to stderr only"
    expected = case.with_suffix(".err")
    if REGEN:
        expected.write_text(result.stderr, encoding="utf-8")
    assert expected.is_file(), f"no {expected.name}; run NETSPEC_REGEN=1 pytest {__file__}"
    assert result.stderr == expected.read_text(encoding="utf-8")


def test_every_case_has_an_err_file_and_back():
    errs = {p.stem for p in ERRORS.glob("*.err")}
    assert errs == {c.stem for c in CASES}


def dump(spec) -> str:
    """A network's layers, one per line: name, op, output shape(s), trainable parameters."""
    lines = [f"# {spec.name}: {spec.parameters:,} parameters",
             "# inputs: " + ", ".join(f"{n} {t.full()}" for n, t in spec.inputs),
             "# outputs: " + ", ".join(f"{n} {t.full()}" for n, t in spec.outputs)]
    lines += [f"{r['name']}  {r['op']}  {r['shape']}  {r['parameters']}" for r in spec.rows]
    return "\n".join(lines) + "\n"


def _compare(got: str, expected: Path) -> None:
    if REGEN:
        expected.write_text(got, encoding="utf-8")
    assert expected.is_file(), f"no {expected.name}; run NETSPEC_REGEN=1 pytest {__file__}"
    assert got == expected.read_text(encoding="utf-8"), f"{expected.name} differs; if meant, regenerate it"


SPEC_CASES = sorted(SPECS.glob("*.net"))


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.stem for c in SPEC_CASES])
def test_spec_golden(case: Path, monkeypatch):
    monkeypatch.chdir(SPECS)
    _compare(dump(load(case.name)), case.with_suffix(".txt"))


def _zoo_networks() -> list[tuple[Path, str]]:
    loader = Loader()
    return [(f, n) for f in sorted(MODELS.glob("*.net")) for n in loader.load(str(f)).own_networks]


ZOO = _zoo_networks()


@pytest.mark.parametrize("path, network", ZOO, ids=[f"{p.stem}.{n}" for p, n in ZOO])
def test_zoo_layer_names_and_shapes(path: Path, network: str):
    _compare(dump(load(path, network)), ZOO_GOLDEN / f"{path.stem}.{network}.txt")


def test_every_zoo_network_is_pinned_and_back():
    assert {p.name for p in ZOO_GOLDEN.glob("*.txt")} == {f"{p.stem}.{n}.txt" for p, n in ZOO}


COMPILE = Path(__file__).parent / "golden" / "compile"
COMPILE_CASES = sorted(COMPILE.glob("*.net"))


@pytest.mark.parametrize("case", COMPILE_CASES, ids=[c.stem for c in COMPILE_CASES])
def test_compile_error_golden(case: Path, monkeypatch, tmp_path):
    """A spec that checks but cannot be compiled as asked: `# compile: ARGS` gives the options."""
    args = shlex.split(case.read_text(encoding="utf-8").splitlines()[0].removeprefix("# compile:"))
    monkeypatch.chdir(COMPILE)
    result = CliRunner().invoke(main, ["compile", case.name, "-o", str(tmp_path / "out.onnx"), *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr and not (tmp_path / "out.onnx").exists()
    _compare(result.stderr, case.with_suffix(".err"))


# The class of each mistake, so that callers of the library can tell them apart.
KINDS = {
    "syntax_missing_comma": SyntaxProblem,
    "syntax_unexpected_eof": SyntaxProblem,
    "unknown_op": NameProblem,
    "unknown_param": ParamProblem,
    "bad_literal": ParamProblem,
    "out_of_range": ParamProblem,
    "shape_mismatch_add": ShapeProblem,
    "linear_symbolic_dim": ShapeProblem,
    "unused_input": GraphProblem,
    "recursion_mutual": GraphProblem,
    "import_cycle": GraphProblem,
    "import_missing": NameProblem,
    "redefinition": NameProblem,
    "repeat_too_large": LimitProblem,
    "model_too_large": LimitProblem,
    "train_lr_not_positive": ParamProblem,
    "loss_target_typo": NameProblem,
    "shape_symbolic_dim": ShapeProblem,
    "ternary_ambiguous": GraphProblem,
    "value_too_large": LimitProblem,
    "number_overflow": LimitProblem,
    "repeated_squaring": LimitProblem,
    "import_outside": NameProblem,
    "for_statement": SyntaxProblem,
    "unclosed_paren": SyntaxProblem,
    "assert_fails": ParamProblem,
}


@pytest.mark.parametrize("stem, cls", KINDS.items(), ids=list(KINDS))
def test_error_class(stem, cls, monkeypatch):
    monkeypatch.chdir(ERRORS)
    with pytest.raises(cls):
        load(f"{stem}.net")


# Cases too large to commit: generated, they must end in a clean LimitProblem, never a
# RecursionError or a traceback, and quickly.

def _net(expr: str) -> str:
    return f"network Net {{\n    input x: float32[N, 8]\n    output y = x -> {expr}\n}}\n"


def _blocks(depth: int) -> str:
    chain = "".join(f"block B{i}() {{\n    out = in -> B{i + 1}()\n}}\n" for i in range(depth))
    return chain + f"block B{depth}() {{\n    out = in -> ReLU\n}}\n" + _net("B0()")


DEEP = {
    "negation": (_net("Linear(" + "-(" * 5000 + "4" + ")" * 5000 + ")"),
                 f"expressions are nested more than {MAX_DEPTH} levels deep"),
    "lists": (_net("Reshape(" + "[" * 5000 + "4" + "]" * 5000 + ")"),
              f"expressions are nested more than {MAX_DEPTH} levels deep"),
    "blocks": (_blocks(2000), "blocks are nested more than 64 levels deep"),
}


@pytest.mark.parametrize("kind", DEEP, ids=list(DEEP))
def test_deep_nesting_is_a_limit_problem(kind, tmp_path, monkeypatch):
    text, message = DEEP[kind]
    (tmp_path / "deep.net").write_text(text, encoding="utf-8")
    result = _check(["deep.net"], tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert result.stderr.startswith("deep.net:")
    assert f"error: {message}" in result.stderr
    # The excerpt of a 10,000-column line is a window, not the whole line.
    assert max(len(line) for line in result.stderr.splitlines()) < 200
    with pytest.raises(LimitProblem):
        load(tmp_path / "deep.net")


def test_deep_but_legal_specs_still_work(tmp_path, monkeypatch):
    """Long flat chains and blocks nested within the limit are fine."""
    (tmp_path / "long.net").write_text(_net(" -> ".join(["ReLU"] * 2000)), encoding="utf-8")
    assert load(tmp_path / "long.net").graph.number_of_nodes() > 2000
    # Parentheses leave no node in the tree, and the LALR parser keeps its own stack.
    (tmp_path / "parens.net").write_text(_net("(" * 3000 + "ReLU" + ")" * 3000), encoding="utf-8")
    assert [r["op"] for r in load(tmp_path / "parens.net").rows] == ["ReLU"]
    (tmp_path / "nested.net").write_text(_blocks(60), encoding="utf-8")
    spec = load(tmp_path / "nested.net")
    # The single layer, at the bottom of 61 blocks, each numbering its `out` chain under itself.
    assert [r["name"] for r in spec.rows] == ["y" + ".0" * 61]
