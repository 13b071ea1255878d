"""Shell completion of spec arguments: .net files, then `FILE:Network` names and `--network` values.

click's completion machinery (`_NETSPEC_COMPLETE=bash_source netspec`) calls these; they parse
the file only, so a TAB stays fast and never fails loudly.
"""

from __future__ import annotations

from pathlib import Path

from click.shell_completion import CompletionItem


def _networks(path: str) -> list[str]:
    from . import ast
    from .errors import NetspecError
    from .parse import parse_file
    if not path.endswith(".net") or not Path(path).is_file():
        return []
    try:
        items = parse_file(path)
    except NetspecError:
        return []
    return [i.name for i in items if isinstance(i, (ast.NetworkDef, ast.NetworkAlias))]


def complete_spec(ctx, param, incomplete: str) -> list[CompletionItem]:
    """`FILE:Net<TAB>` offers the file's networks; anything else is left to the shell's file completion."""
    path, sep, prefix = incomplete.rpartition(":")
    if sep:
        return [CompletionItem(f"{path}:{n}") for n in _networks(path) if n.startswith(prefix)]
    return [CompletionItem(incomplete, type="file")]


def complete_network(ctx, param, incomplete: str) -> list[CompletionItem]:
    """`--network <TAB>` offers the networks of the spec already on the command line."""
    # With the option's value still missing, click leaves the spec among the unparsed args.
    words = [ctx.params.get("spec") or "", *ctx.args]
    spec = next((w for w in words if ".net" in w), "")
    spec = spec.rpartition(":")[0] if ":" in spec and not spec.endswith(".net") else spec
    return [CompletionItem(n) for n in _networks(spec) if n.startswith(incomplete)]
