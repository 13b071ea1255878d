"""A Pygments lexer for .net files, registered as the `netspec` entry point, so that pygmentize,
Sphinx and MkDocs highlight ```netspec blocks and *.net files.

Keywords and dtypes come from the parser and the type module, so the lexer follows the language.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

from .parse import KEYWORDS
from .types import DTYPES

_CONSTANTS = {"true", "false"}
_OPERATORS = {"and", "or", "not"}


class NetspecLexer(RegexLexer):
    name = "netspec"
    aliases = ["netspec"]
    filenames = ["*.net"]
    mimetypes = ["text/x-netspec"]
    url = "https://pypi.org/project/netspec/"

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            (r"#.*?$", Comment.Single),
            (r'"[^"\n]*"|\'[^\'\n]*\'', String),
            (r"\b(block|network)(\s+)([A-Za-z_]\w*)", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (words(sorted(_CONSTANTS), suffix=r"\b"), Keyword.Constant),
            (words(sorted(_OPERATORS), suffix=r"\b"), Operator.Word),
            (words(sorted(KEYWORDS - _CONSTANTS - _OPERATORS), suffix=r"\b"), Keyword),
            (words(DTYPES, suffix=r"\b"), Keyword.Type),
            (r"\bin\b", Name.Builtin.Pseudo),  # a block's input tensor
            (r"[A-Z]\w*(?=\s*\()", Name.Function),  # an op or block called with parameters
            (r"[A-Z]\w*", Name.Function),  # ops and blocks are capitalised by convention
            (r"[A-Za-z_]\w*(?=\s*=(?!=))", Name.Variable),
            (r"[A-Za-z_]\w*", Name),
            (r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", Number),
            (r"->", Operator),
            (r"\*\*|//|==|!=|<=|>=|[-+*/%<>?:=.]", Operator),
            (r"[()\[\]{},]", Punctuation),
            (r".", Text),
        ],
    }
