"""What the editor asks about a position: hover, go to definition, completion, and the
conversion of netspec's spans and diagnostics to LSP's ranges."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types as lsp
from pygls.uris import from_fs_path

from .. import ast
from ..errors import Diagnostic, NetspecError, Span
from ..parse import KEYWORDS, parse_file
from .analysis import Analysis, key, split_label

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SOURCE = "netspec"


def to_range(span: Span | None) -> lsp.Range:
    if span is None:
        return lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
    end_line, end_col = (span.end_line, span.end_col) if span.end_line else (span.line, span.col + 1)
    return lsp.Range(lsp.Position(span.line - 1, span.col - 1), lsp.Position(end_line - 1, end_col - 1))


def _contains(span: Span | None, path: str, line: int, col: int) -> bool:
    """Whether a span of `path` covers the 1-based (line, col)."""
    if span is None or key(span.path) != key(path):
        return False
    return (span.line, span.col) <= (line, col) < (span.end_line, span.end_col)


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_col - span.col if span.end_line == span.line else 10**6)


def word_at(text: str, line: int, col: int) -> tuple[str, int] | None:
    """The name under a 0-based LSP position, with its 1-based start column."""
    lines = text.splitlines()
    if line >= len(lines):
        return None
    for m in WORD.finditer(lines[line]):
        if m.start() <= col <= m.end():
            return m.group(), m.start() + 1
    return None


def to_diagnostic(d: Diagnostic, path: str, imports: list) -> lsp.Diagnostic:
    message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
    span = d.span
    if span is not None and key(span.path) != key(path):
        # A mistake inside an imported file: shown on the import that brought it in.
        message = f"{span}: {message}"
        span = imports[0].span if imports else None
    related = [lsp.DiagnosticRelatedInformation(lsp.Location(from_fs_path(str(Path(s.path).resolve())), to_range(s)),
                                                note)
               for note, s in d.notes if s is not None]
    return lsp.Diagnostic(to_range(span), message, severity=lsp.DiagnosticSeverity.Error, source=SOURCE,
                          related_information=related or None)


# What a name means -----------------------------------------------------------------------------

def _enclosing(items: list, path: str, line: int, col: int):
    return next((i for i in items if isinstance(i, (ast.BlockDef, ast.NetworkDef)) and _contains(i.span, path, line, col)),
                None)


def _definitions(items: list, path: str, seen: set | None = None) -> dict[str, object]:
    """Blocks and networks visible in a file: its own and those it imports, by name."""
    seen = seen if seen is not None else set()
    seen.add(key(path))
    found: dict[str, object] = {}
    for item in items:
        if isinstance(item, ast.Import):
            target = Path(path).parent / item.path
            if key(target) in seen or not target.is_file():
                continue
            try:
                other = _definitions(parse_file(target), str(target), seen)
            except NetspecError:
                continue
            found.update(other if item.names is None else {n: other[n] for n, _ in item.names if n in other})
    for item in items:
        if isinstance(item, (ast.BlockDef, ast.NetworkDef, ast.NetworkAlias)):
            found[item.name] = item
    return found


def _signature(item) -> str:
    if isinstance(item, ast.NetworkAlias):
        return f"network {item.name} = {item.target}(...)"
    params = ", ".join(p.name + (" = ..." if p.default is not None else "") for p in item.params)
    kind = "block" if isinstance(item, ast.BlockDef) else "network"
    return f"{kind} {item.name}({params})"


def _op_doc(name: str) -> str:
    from ..ops import REGISTRY
    op = REGISTRY[name]
    fields = []
    for pname, f in op.Params.model_fields.items():
        fields.append(pname if f.is_required() else f"{pname}={f.default!r}")
    return f"**{name}**({', '.join(fields)})\n\n{op.doc or ''}".rstrip()


def _tensor_nodes(a: Analysis, g, item, name: str) -> list[tuple[str, str]]:
    """(instance, node) for the layer that produces tensor `name` in each instance of `item`."""
    last, instances = a.index(g)
    prefixes = [""] if isinstance(item, ast.NetworkDef) else [i + "." for i in instances.get(item.name, [])]
    found = []
    outputs = {n: ref for n, ref, _ in g.graph["outputs"]}
    for prefix in prefixes:
        if not prefix and name in outputs:
            found.append(("", outputs[name].node))
            continue
        node = last.get(prefix + name if name != "out" else prefix[:-1])
        if node is not None:
            found.append((prefix[:-1], node))
    return found


def hover_text(a: Analysis, line: int, col: int) -> str | None:
    """Markdown for what sits under a 0-based position: a layer, a tensor, a block or an op."""
    from ..ops import REGISTRY, get_op, param_count
    from ..graph import type_of
    hit = word_at(a.text, line, col)
    if hit is None:
        return None
    word, _ = hit
    line1, col1 = line + 1, col + 1
    parts = []
    # Layers written here, in every network and block instance that uses this line.
    nodes = [(g, n) for g in a.graphs.values() for n, d in g.nodes(data=True)
             if d["kind"] in ("op", "loss") and _contains(d.get("span"), a.path, line1, col1)]
    if nodes and word in REGISTRY:
        smallest = min(_size(g.nodes[n]["span"]) for g, n in nodes)
        nodes = [(g, n) for g, n in nodes if _size(g.nodes[n]["span"]) == smallest]
        g, n = nodes[0]
        d = g.nodes[n]
        shapes = sorted({" ".join(t.full() for t in g2.nodes[n2]["types"] or []) for g2, n2 in nodes})
        ins = [type_of(g, r) for r in d["args"]]
        count = param_count(get_op(d["op"]), d["params"], ins) if d["kind"] == "op" else 0
        names = sorted({n2 for _, n2 in nodes})
        where = f"`{names[0]}`" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        parts.append(f"**{d['op']}** layer {where}\n\n"
                     f"output: `{'`, `'.join(shapes[:4])}`" + (" ..." if len(shapes) > 4 else "")
                     + f"\n\ninputs: `{', '.join(t.full() for t in ins)}`\n\nparameters: {count:,}")
    if word in REGISTRY:
        parts.append(_op_doc(word))
        return "\n\n---\n\n".join(parts)
    defs = _definitions(a.items, a.path)
    if word in defs and not _is_tensor_here(a, word, line1, col1):
        item = defs[word]
        where = f"{Path(item.span.path).name}:{item.span.line}"
        return f"```netspec\n{_signature(item)}\n```\ndefined at {where}" + _block_call(a, word, line1, col1)
    item = _enclosing(a.items, a.path, line1, col1)
    if item is None:
        return None
    if word in {p.name for p in item.params}:
        p = next(p for p in item.params if p.name == word)
        return f"parameter `{word}` of {_signature(item)}" + ("" if p.default is None else " (has a default)")
    for g in a.graphs.values():
        if isinstance(item, ast.NetworkDef) and g.graph["name"] != item.name and not _alias_of(a, g, item):
            continue
        if word in g.graph["inputs"] or word in g.graph["targets"]:
            t = g.nodes[word]["types"][0] if g.nodes[word]["types"] else None
            kind = "input" if word in g.graph["inputs"] else "target"
            return f"{kind} `{word}`: `{t.full() if t else 'inferred'}`"
        found = _tensor_nodes(a, g, item, word)
        if found:
            shapes = sorted({" ".join(t.full() for t in g.nodes[n]["types"]) for _, n in found})
            shown = ", ".join(f"`{s}`" for s in shapes[:4]) + (" ..." if len(shapes) > 4 else "")
            inst = found[0][1]
            more = f" ({len(found)} instances)" if len(found) > 1 else ""
            return (f"tensor `{word}`: {shown}{more}\n\nmade by `{inst}` "
                    f"({g.nodes[inst]['op']}) in {g.graph['name']}")
    return None


def _block_call(a: Analysis, block: str, line: int, col: int) -> str:
    """For a block called here: each instance's output type and parameter count."""
    from ..graph import type_of
    from ..ops import get_op, param_count
    for g in a.graphs.values():
        last, _ = a.index(g)
        members: dict[str, int] = {}
        for n, d in g.nodes(data=True):
            for label, span in d.get("context") or ():
                name, inst = split_label(label)
                if name == block and _contains(span, a.path, line, col):
                    ins = [type_of(g, r) for r in d["args"]]
                    members[inst] = members.get(inst, 0) + param_count(get_op(d["op"]), d["params"], ins)
        if members:
            rows = [f"`{inst}`: `{' '.join(t.full() for t in g.nodes[last[inst]]['types'])}`, {count:,} parameters"
                    for inst, count in list(members.items())[:6]]
            more = f"\n\nand {len(members) - 6} more" if len(members) > 6 else ""
            return f"\n\nin {g.graph['name']}:\n\n" + "\n\n".join(rows) + more
    return ""


def _alias_of(a: Analysis, g, item) -> bool:
    return any(isinstance(i, ast.NetworkAlias) and i.name == g.graph["name"] and i.target == item.name for i in a.items)


def _is_tensor_here(a: Analysis, word: str, line: int, col: int) -> bool:
    item = _enclosing(a.items, a.path, line, col)
    return item is not None and any(word in names for names in _bound_names(item.body))


def _bound_names(body: list) -> list[list[str]]:
    out = []
    for s in body:
        if isinstance(s, ast.Assign):
            out.append(s.names)
        elif isinstance(s, (ast.OutputDecl, ast.TargetDecl)):
            out.append([s.name])
        elif isinstance(s, ast.InputDecl):
            out.append([i.name for i in s.items])
        elif isinstance(s, ast.IfStmt):
            out += _bound_names(s.then) + _bound_names(s.other)
    return out


def definition(a: Analysis, line: int, col: int) -> lsp.Location | None:
    """Where the name under a 0-based position is defined: a block, a network, a tensor, a file."""
    line1, col1 = line + 1, col + 1
    for item in a.items:
        if isinstance(item, ast.Import) and _contains(item.span, a.path, line1, col1):
            target = (Path(a.path).parent / item.path).resolve()
            hit = word_at(a.text, line, col)
            if item.names and hit and hit[0] in {n for n, _ in item.names} and target.is_file():
                found = _definitions(parse_file(target), str(target)).get(hit[0])
                if found is not None:
                    return _location(found.span)
            if target.is_file():
                return lsp.Location(from_fs_path(str(target)), to_range(Span(str(target), 1, 1, 1, 1)))
    hit = word_at(a.text, line, col)
    if hit is None:
        return None
    word = hit[0]
    item = _enclosing(a.items, a.path, line1, col1)
    if item is not None:
        span = _binding_span(item, word)
        if span is not None:
            return _location(span)
    found = _definitions(a.items, a.path).get(word)
    return _location(found.span) if found is not None else None


def _binding_span(item, word: str) -> Span | None:
    for p in item.params:
        if p.name == word:
            return p.span
    stack = list(item.body)
    while stack:
        s = stack.pop(0)
        if isinstance(s, ast.Assign) and word in s.names:
            return s.name_spans[s.names.index(word)] if s.name_spans else s.span
        if isinstance(s, ast.OutputDecl) and s.name == word:
            return s.name_span or s.span
        if isinstance(s, ast.TargetDecl) and s.name == word:
            return s.span
        if isinstance(s, ast.InputDecl):
            for i in s.items:
                if i.name == word:
                    return i.span
        if isinstance(s, ast.IfStmt):
            stack += s.then + s.other
    return None


def _location(span: Span) -> lsp.Location:
    return lsp.Location(from_fs_path(str(Path(span.path).resolve())), to_range(span))


def completions(a: Analysis, line: int, col: int) -> list[lsp.CompletionItem]:
    """Parameter names inside a call's parentheses; op, block and keyword names elsewhere."""
    from ..ops import REGISTRY
    lines = a.text.splitlines()
    before = "\n".join(lines[:line] + [lines[line][:col] if line < len(lines) else ""])
    callee = open_call(before)
    defs = _definitions(a.items, a.path) if a.items else {}
    if callee is not None:
        names: list[tuple[str, str]] = []
        if callee in REGISTRY:
            names = [(n, f"{callee} parameter") for n in REGISTRY[callee].Params.model_fields]
        elif callee in defs and not isinstance(defs[callee], ast.NetworkAlias):
            names = [(p.name, f"{callee} parameter") for p in defs[callee].params]
        if names:
            return [lsp.CompletionItem(n, kind=lsp.CompletionItemKind.Property, detail=d, insert_text=f"{n}=")
                    for n, d in names]
    items = [lsp.CompletionItem(name, kind=lsp.CompletionItemKind.Function, detail=(op.doc or "op"),
                                documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, _op_doc(name)))
             for name, op in sorted(REGISTRY.items())]
    items += [lsp.CompletionItem(name, kind=lsp.CompletionItemKind.Class, detail=_signature(item))
              for name, item in sorted(defs.items())]
    items += [lsp.CompletionItem(k, kind=lsp.CompletionItemKind.Keyword) for k in sorted(KEYWORDS)]
    return items


def open_call(before: str) -> str | None:
    """The name called by the innermost '(' still open at the end of `before`."""
    depth = 0
    text = re.sub(r"#[^\n]*", "", before)
    for i in range(len(text) - 1, -1, -1):
        ch = text[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            if depth == 0:
                if ch == "[":
                    return None
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", text[:i])
                return m.group(1) if m else None
            depth -= 1
        elif ch in "{}":
            return None
    return None


def document_symbols(items: list) -> list[lsp.DocumentSymbol]:
    """Blocks and networks, with the tensors their bodies bind as children."""
    out = []
    for item in items:
        if not isinstance(item, (ast.BlockDef, ast.NetworkDef, ast.NetworkAlias)):
            continue
        kind = lsp.SymbolKind.Function if isinstance(item, ast.BlockDef) else lsp.SymbolKind.Class
        children = []
        for s in getattr(item, "body", []):
            if isinstance(s, ast.Assign):
                children += [lsp.DocumentSymbol(n, lsp.SymbolKind.Variable, to_range(s.span), to_range(sp))
                             for n, sp in zip(s.names, s.name_spans or [s.span] * len(s.names))]
            elif isinstance(s, ast.OutputDecl):
                sp = s.name_span or s.span
                children.append(lsp.DocumentSymbol(s.name, lsp.SymbolKind.Field, to_range(s.span), to_range(sp)))
        out.append(lsp.DocumentSymbol(item.name, kind, to_range(item.span), to_range(item.span),
                                      detail=_signature(item), children=children or None))
    return out
