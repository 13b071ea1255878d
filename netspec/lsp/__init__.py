"""The language server, `netspec lsp` (stdio): diagnostics as the user types, hover, go to
definition, completion and formatting for .net files, on pygls.

Each change re-checks the buffer with the same pipeline as `netspec check` (parse, elaborate,
infer), reading open buffers instead of the files on disk, so its diagnostics are check's:
the same messages, ranges, hints and notes. Every network of the file is checked, so a file
shows one diagnostic per broken network (and one per broken block they share).
"""

from .analysis import Analysis, analyze, more_syntax_errors
from .navigate import completions, definition, document_symbols, hover_text, open_call, to_diagnostic


def main() -> None:
    """Serve over stdio until the editor says exit."""
    from .server import server
    server.start_io()


__all__ = ["Analysis", "analyze", "completions", "definition", "document_symbols", "hover_text", "main",
           "more_syntax_errors", "open_call", "to_diagnostic"]
