"""The pygls server: keeps each open buffer's last check and answers the editor from it."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from .. import __version__, ast
from ..errors import NetspecError
from .analysis import Analysis, analyze, key
from .navigate import completions, definition, document_symbols, hover_text, to_diagnostic


class NetspecServer(LanguageServer):
    def __init__(self):
        super().__init__("netspec", __version__)
        self.analyses: dict[str, Analysis] = {}
        self.last_good: dict[str, Analysis] = {}  # the last check that parsed, for completion mid-edit

    def buffers(self) -> dict[str, str]:
        return {key(to_fs_path(uri)): doc.source for uri, doc in self.workspace.text_documents.items()}

    def check(self, uri: str) -> Analysis:
        doc = self.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        a = analyze(path, doc.source, self.buffers())
        self.analyses[uri] = a
        if a.items:
            self.last_good[uri] = a
        imports = [i for i in a.items if isinstance(i, ast.Import)]
        diags = [to_diagnostic(d, path, imports) for d in a.problems]
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, diags, version=doc.version))
        return a

    def analysis(self, uri: str) -> Analysis:
        return self.analyses.get(uri) or self.check(uri)


server = NetspecServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: NetspecServer, params: lsp.DidOpenTextDocumentParams):
    ls.check(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: NetspecServer, params: lsp.DidChangeTextDocumentParams):
    ls.check(params.text_document.uri)
    # Open files that import this one see the unsaved change too (those that name it, that is).
    name = Path(to_fs_path(params.text_document.uri) or params.text_document.uri).name
    for uri, other in list(ls.analyses.items()):
        if uri != params.text_document.uri and name in other.text:
            ls.check(uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: NetspecServer, params: lsp.DidSaveTextDocumentParams):
    ls.check(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: NetspecServer, params: lsp.DidCloseTextDocumentParams):
    ls.analyses.pop(params.text_document.uri, None)
    ls.last_good.pop(params.text_document.uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(params.text_document.uri, []))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: NetspecServer, params: lsp.HoverParams):
    a = ls.analysis(params.text_document.uri)
    text = hover_text(a, params.position.line, params.position.character)
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text)) if text else None


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def goto_definition(ls: NetspecServer, params: lsp.DefinitionParams):
    return definition(ls.analysis(params.text_document.uri), params.position.line, params.position.character)


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["(", ",", " "]))
def complete(ls: NetspecServer, params: lsp.CompletionParams):
    doc = ls.workspace.get_text_document(params.text_document.uri)
    good = ls.last_good.get(params.text_document.uri) or Analysis(doc.path, doc.source)
    a = Analysis(good.path, doc.source, good.items, good.graphs)
    return lsp.CompletionList(is_incomplete=False, items=completions(a, params.position.line, params.position.character))


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def outline(ls: NetspecServer, params: lsp.DocumentSymbolParams):
    """The file's blocks and networks, for an editor's outline and symbol search."""
    a = ls.last_good.get(params.text_document.uri) or ls.analysis(params.text_document.uri)
    return document_symbols(a.items)


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: NetspecServer, params: lsp.DocumentFormattingParams):
    from ..fmt import format_text
    doc = ls.workspace.get_text_document(params.text_document.uri)
    try:
        new = format_text(doc.source, doc.path)
    except NetspecError as e:
        ls.window_show_message(lsp.ShowMessageParams(lsp.MessageType.Warning, f"netspec fmt: {e.diagnostics[0].message}"))
        return None
    if new == doc.source:
        return []
    lines = doc.source.splitlines()
    end = lsp.Position(len(lines), 0)
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), new)]
