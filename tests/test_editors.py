"""Editor support that needs no editor: the TextMate grammar, the VS Code extension folder, the
Pygments lexer and shell completion."""

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from pygments import highlight, lex
from pygments.formatters import HtmlFormatter
from pygments.token import Comment, Error, Keyword, Name, Number

from netspec.lexer import NetspecLexer
from netspec.ops import REGISTRY
from netspec.parse import KEYWORDS

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
SPECS = sorted([*ROOT.glob("models/*.net"), *ROOT.glob("examples/*.net")])


def _grammar() -> dict:
    return json.loads((VSCODE / "syntaxes" / "netspec.tmLanguage.json").read_text(encoding="utf-8"))


def _rules(grammar: dict, pattern: dict) -> list[dict]:
    """The flat list of match rules a pattern stands for, includes followed."""
    if "include" in pattern:
        return _rules(grammar, grammar["repository"][pattern["include"][1:]])
    if "patterns" in pattern:
        return [r for p in pattern["patterns"] for r in _rules(grammar, p)]
    return [pattern]


def textmate_tokens(text: str) -> list[tuple[str, str]]:
    """Tokenize as a TextMate engine does with single-line `match` rules: at each point the rule
    matching earliest wins, the first listed on a tie; captures scope their groups."""
    g = _grammar()
    rules = [(re.compile(r["match"]), r) for p in g["patterns"] for r in _rules(g, p)]
    out = []
    for line in text.splitlines():
        pos = 0
        while pos < len(line):
            best = None
            for rx, rule in rules:
                m = rx.search(line, pos)
                if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                    best = (m, rule)
            if best is None:
                break
            m, rule = best
            if "captures" in rule:
                out += [(m.group(int(k)), c["name"]) for k, c in rule["captures"].items() if m.group(int(k))]
            else:
                out.append((m.group(), rule["name"]))
            pos = m.end()
    return out


def test_extension_folder_is_complete():
    pkg = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    lang = pkg["contributes"]["languages"][0]
    assert lang["extensions"] == [".net"] and (VSCODE / lang["configuration"]).is_file()
    grammar = pkg["contributes"]["grammars"][0]
    assert grammar["scopeName"] == _grammar()["scopeName"] and (VSCODE / grammar["path"]).is_file()
    assert (VSCODE / pkg["main"]).is_file() and "vscode-languageclient" in pkg["dependencies"]
    assert pkg["contributes"]["configuration"]["properties"]["netspec.command"]["default"] == ["netspec", "lsp"]
    config = json.loads((VSCODE / "language-configuration.json").read_text(encoding="utf-8"))
    assert config["comments"]["lineComment"] == "#"
    assert 'require("vscode-languageclient/node")' in (VSCODE / "extension.js").read_text(encoding="utf-8")


def test_textmate_grammar_knows_every_keyword():
    scoped = dict(textmate_tokens("\n".join(sorted(KEYWORDS - {"in"}))))
    assert set(scoped) == KEYWORDS - {"in"}, "add the parser's new keywords to the TextMate grammar"
    assert all(s.split(".")[0] in ("keyword", "constant", "storage") for s in scoped.values())


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_textmate_grammar_on_the_zoo(spec):
    text = spec.read_text(encoding="utf-8")
    toks = textmate_tokens(text)
    kinds = {}
    for value, scope in toks:
        kinds.setdefault(value, set()).add(scope)
    for op in set(REGISTRY) & set(kinds):
        assert kinds[op] == {"entity.name.function.netspec"}, op
    comments = [v for v, s in toks if s.startswith("comment")]
    assert comments == re.findall(r"#.*$", text, re.M)
    assert kinds.get("->") == {"keyword.operator.chain.netspec"}
    assert "entity.name.type.netspec" in {s for v, s in toks}  # a block or network name


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_pygments_lexer_on_the_zoo(spec):
    text = spec.read_text(encoding="utf-8")
    toks = list(lex(text, NetspecLexer()))
    assert "".join(v for _, v in toks) == text
    assert not [v for t, v in toks if t is Error]
    kinds = {}
    for t, v in toks:
        kinds.setdefault(v, set()).add(t)
    for op in set(REGISTRY) & set(kinds):
        assert kinds[op] <= {Name.Function, Name.Class}, op
    assert kinds.get("network", {Keyword.Declaration}) == {Keyword.Declaration}
    assert kinds.get("float32") == {Keyword.Type}
    assert any(t in Comment for t, _ in toks) and any(t in Number for t, _ in toks)
    assert '<span class="k' in highlight(text, NetspecLexer(), HtmlFormatter())


def test_pygments_finds_the_lexer_by_its_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = project["project"]["entry-points"]["pygments.lexers"]["netspec"]
    assert target == "netspec.lexer:NetspecLexer"
    installed = {e.name: e.value for e in metadata.entry_points(group="pygments.lexers")}
    if "netspec" not in installed:
        pytest.skip("this checkout's netspec is not pip-installed, so its entry points are not registered")
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
    assert isinstance(get_lexer_by_name("netspec"), NetspecLexer)
    assert isinstance(get_lexer_for_filename("resnet.net"), NetspecLexer)


# What the installed `netspec` script runs; click names the completion variable after the program.
NETSPEC = [sys.executable, "-c", "from netspec.cli import main; main(prog_name='netspec')"]


def _complete(shell: str, words: str, cword: int) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), _NETSPEC_COMPLETE=f"{shell}_complete",
               COMP_WORDS=words, COMP_CWORD=str(cword))
    out = subprocess.run(NETSPEC, capture_output=True, text=True, env=env, cwd=ROOT)
    return out.stdout.splitlines()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts(shell):
    env = dict(os.environ, PYTHONPATH=str(ROOT), _NETSPEC_COMPLETE=f"{shell}_source")
    out = subprocess.run(NETSPEC, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "_NETSPEC_COMPLETE" in out.stdout


def test_shell_completion_of_commands_files_and_networks():
    commands = [line.split(",")[1] for line in _complete("bash", "netspec ", 1)]
    assert {"check", "compile", "train", "evaluate", "fmt", "graph", "lsp"} <= set(commands)
    networks = [line.split(",")[1] for line in _complete("bash", "netspec check models/resnet.net:Res", 2)]
    assert networks == [f"models/resnet.net:{n}" for n in
                        ("ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152")]
    files = _complete("bash", "netspec graph models/", 2)
    assert "file,models/" in files
    assert [line.split(",")[1] for line in _complete("bash", "netspec check models/googlenet.net -n Goo", 4)] == \
        ["GoogLeNet", "GoogLeNetNoAux"]
