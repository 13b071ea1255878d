"""`netspec lsp`, driven over stdio by pygls' real LSP client, as an editor would."""

import asyncio
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

from netspec.cli import main
from netspec.lsp import analyze, completions, hover_text, open_call

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60

LIB = """\
# Residual blocks, imported by main.net.
block Res(width) {
    main = in -> Conv2d(width, 3, padding=1) -> ReLU
    out  = Add(main, in)
}
"""

# `b` has 8 channels and `a` 16: the Add is a shape mistake.
BROKEN = """\
from "lib.net" import Res

network Net(classes = 10) {
    input image: float32[N, 3, 32, 32]
    a = image -> Conv2d(16, 3, padding=1) -> Res(16)
    b = image -> Conv2d(8, 3, padding=1)
    s = Add(a, b)
    output logits = s -> GlobalAvgPool -> Flatten -> Linear(classes)
}
"""
FIXED = BROKEN.replace("Conv2d(8, 3", "Conv2d(16, 3")


def _pos(text: str, needle: str, offset: int = 0) -> lsp.Position:
    before = text[: text.index(needle) + offset]
    return lsp.Position(before.count("\n"), len(before) - (before.rfind("\n") + 1))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "lib.net").write_text(LIB, encoding="utf-8")
    main_net = tmp_path / "main.net"
    main_net.write_text(BROKEN, encoding="utf-8")
    return tmp_path


class Session:
    """A client talking to `python -m netspec lsp`, collecting the diagnostics it publishes."""

    def __init__(self):
        self.client = LanguageClient("netspec-tests", "1")
        self.diagnostics: asyncio.Queue = asyncio.Queue()
        self.messages: list = []

        @self.client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def publish(params: lsp.PublishDiagnosticsParams):
            self.diagnostics.put_nowait(params)

        @self.client.feature(lsp.WINDOW_SHOW_MESSAGE)
        def show(params):
            self.messages.append(params)

    async def start(self, root: Path):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        await self.client.start_io(sys.executable, "-m", "netspec", "lsp", env=env, cwd=str(root))
        result = await asyncio.wait_for(self.client.initialize_async(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(), root_uri=from_fs_path(str(root)))), TIMEOUT)
        self.client.initialized(lsp.InitializedParams())
        return result.capabilities

    async def next_diagnostics(self, uri: str) -> list[lsp.Diagnostic]:
        while True:
            params = await asyncio.wait_for(self.diagnostics.get(), TIMEOUT)
            if params.uri == uri:
                return list(params.diagnostics)

    async def stop(self):
        await asyncio.wait_for(self.client.shutdown_async(None), TIMEOUT)
        self.client.exit(None)
        await self.client.stop()


def test_an_editing_session(files):
    uri = from_fs_path(str(files / "main.net"))

    async def session():
        s = Session()
        caps = await s.start(files)
        try:
            assert caps.hover_provider and caps.definition_provider and caps.document_formatting_provider
            assert caps.completion_provider is not None
            c = s.client
            c.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "netspec", 1, BROKEN)))
            broken = await s.next_diagnostics(uri)

            c.text_document_did_change(lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=2, uri=uri),
                [lsp.TextDocumentContentChangeWholeDocument(text=FIXED)]))
            fixed = await s.next_diagnostics(uri)

            doc = lsp.TextDocumentIdentifier(uri)
            hover_a = await c.text_document_hover_async(lsp.HoverParams(doc, _pos(FIXED, "s = Add(a", 8)))
            hover_op = await c.text_document_hover_async(lsp.HoverParams(doc, _pos(FIXED, "Conv2d(16, 3, padding=1) ->", 2)))
            to_block = await c.text_document_definition_async(lsp.DefinitionParams(doc, _pos(FIXED, "Res(16)", 1)))
            to_tensor = await c.text_document_definition_async(lsp.DefinitionParams(doc, _pos(FIXED, "Add(a, b)", 4)))
            to_file = await c.text_document_definition_async(lsp.DefinitionParams(doc, _pos(FIXED, '"lib.net"', 2)))
            in_call = await c.text_document_completion_async(lsp.CompletionParams(doc, _pos(FIXED, "padding=1) -> Res", 8)))
            anywhere = await c.text_document_completion_async(lsp.CompletionParams(doc, _pos(FIXED, "    s = Add", 8)))

            symbols = await c.text_document_document_symbol_async(lsp.DocumentSymbolParams(doc))
            messy = FIXED.replace("a = image -> Conv2d(16, 3, padding=1)", "a=image->Conv2d(16,3,padding=1)")
            c.text_document_did_change(lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=3, uri=uri),
                [lsp.TextDocumentContentChangeWholeDocument(text=messy)]))
            assert await s.next_diagnostics(uri) == []
            edits = await c.text_document_formatting_async(lsp.DocumentFormattingParams(
                doc, lsp.FormattingOptions(tab_size=4, insert_spaces=True)))
        finally:
            await s.stop()
        return broken, fixed, hover_a, hover_op, to_block, to_tensor, to_file, in_call, anywhere, symbols, edits

    (broken, fixed, hover_a, hover_op, to_block, to_tensor, to_file, in_call, anywhere, symbols,
     edits) = asyncio.run(session())

    # The same diagnostic as `netspec check`, at the same place.
    assert len(broken) == 1
    d = broken[0]
    check = CliRunner().invoke(main, ["check", str(files / "main.net")])
    assert check.exit_code == 1
    head = check.stderr.splitlines()[0]  # FILE:LINE:COL: error: MESSAGE
    assert head == f"{files / 'main.net'}:{d.range.start.line + 1}:{d.range.start.character + 1}: error: {d.message.splitlines()[0]}"
    assert d.range.start == _pos(BROKEN, "Add(a, b)") and d.range.end == _pos(BROKEN, "Add(a, b)", 9)
    assert "Add" in d.message and "[N,16,32,32]" in d.message and "[N,8,32,32]" in d.message
    assert d.severity == lsp.DiagnosticSeverity.Error and d.source == "netspec"
    assert fixed == []

    assert "tensor `a`: `float32[N,16,32,32]`" in hover_a.contents.value
    assert "**Conv2d** layer `a.0`" in hover_op.contents.value
    assert "output: `float32[N,16,32,32]`" in hover_op.contents.value
    assert "parameters: 448" in hover_op.contents.value  # 16 * 3 * 3 * 3 + 16
    assert "2-d convolution" in hover_op.contents.value  # the op's documentation

    assert to_block.uri == from_fs_path(str(files / "lib.net"))
    assert to_block.range.start == lsp.Position(1, 0)  # `block Res(width) {`
    assert to_tensor.uri == from_fs_path(str(files / "main.net"))
    assert to_tensor.range.start == _pos(FIXED, "a = image")
    assert to_file.uri == from_fs_path(str(files / "lib.net"))

    labels = [i.label for i in in_call.items]
    assert labels == ["out_channels", "kernel", "stride", "padding", "dilation", "groups", "bias", "padding_mode"]
    labels = {i.label for i in anywhere.items}
    assert {"Conv2d", "BatchNorm2d", "CrossEntropy", "Res", "Net", "network", "block"} <= labels

    assert [(s.name, [c.name for c in s.children]) for s in symbols] == [("Net", ["a", "b", "s", "logits"])]

    assert len(edits) == 1 and edits[0].new_text == FIXED


def test_several_networks_several_diagnostics(tmp_path):
    text = ("network A {\n    input x: float32[N, 4]\n    output y = x -> Linear(0)\n}\n\n"
            "network B {\n    input x: float32[N, 4]\n    output y = x -> Flaten\n}\n")
    a = analyze(str(tmp_path / "two.net"), text)
    assert [(d.span.line, d.span.col) for d in a.problems] == [(3, 28), (8, 21)]
    assert "did you mean 'Flatten'?" in a.problems[1].hint


def test_unsaved_import_is_read_from_the_editor(tmp_path):
    (tmp_path / "lib.net").write_text(LIB, encoding="utf-8")
    path = str(tmp_path / "main.net")
    broken_lib = LIB.replace("Add(main, in)", "Add(main, in, in, in) -> Flatten -> Linear(0)")
    a = analyze(path, FIXED, {str(tmp_path / "lib.net"): broken_lib})
    assert len(a.problems) == 1 and a.problems[0].span.path.endswith("lib.net")


def test_hover_and_completion_helpers():
    path = str(ROOT / "models" / "resnet.net")
    text = Path(path).read_text(encoding="utf-8")
    a = analyze(path, text)
    assert a.problems == [] and "ResNet152" in a.graphs
    pos = _pos(text, "skip = stride > 1 or in.shape[1] != width * 4")
    shown = hover_text(a, pos.line, pos.character)
    assert "tensor `skip`" in shown and "float32[N,256,56,56]" in shown
    pos = _pos(text, "Stage(64 * 2", 1)  # one call in a list makes all four stages
    shown = hover_text(a, pos.line, pos.character)
    assert "block Stage(width, units, stride, bottleneck)" in shown
    assert "`x.6`: `float32[N,256,14,14]`, 2,099,712 parameters" in shown  # ResNet's (18's) third stage
    assert open_call("x -> Conv2d(64, kernel=3, ") == "Conv2d"
    assert open_call("x -> Conv2d(64, kernel=[3, ") is None
    assert open_call("x -> Conv2d(64) -> ") is None
    pos = _pos(text, "Stage(64 * 2", 6)
    names = [i.label for i in completions(a, pos.line, pos.character)]
    assert names == ["width", "units", "stride", "bottleneck"]


def test_the_parser_recovers_for_several_syntax_errors(tmp_path):
    text = ("network A {\n    input x: float32[N, 8];\n    y = x -> Linear(4 bias=false)\n"
            "    output z = y => ReLU\n}\n")
    bad = tmp_path / "bad.net"
    bad.write_text(text, encoding="utf-8")
    problems = analyze(str(bad), text).problems
    assert [(d.span.line, d.span.col) for d in problems] == [(2, 27), (3, 23), (4, 18)]
    assert [d.hint.split(":")[0] for d in problems] == [
        "statements need no ';'", "is a ',' missing between the arguments?", "layers are chained with '->', not '=>'"]
    # The first is exactly check's.
    check = CliRunner().invoke(main, ["check", str(bad)])
    assert check.stderr.splitlines()[0].endswith("2:27: error: unexpected character ';'")
