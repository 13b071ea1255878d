"""Load: spec files -> one scope per file. Reads files safely, parses each once, follows
imports (confined to the spec's folder tree and the zoo), refuses cycles.

A file's scope holds what the file defines and what it imports, nothing else: a block
resolves every name in the scope of the file that defines it (lexical scoping), whoever
imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import ast
from .errors import GraphProblem, NameProblem, Span, clip, did_you_mean
from .ops import REGISTRY
from .parse import parse
from .sources import MAX_SPEC_BYTES, read_spec  # noqa: F401  (MAX_SPEC_BYTES: part of this API)

IMPORT_PATH_ENV = "NETSPEC_IMPORT_PATH"  # extra folders imports may read, os.pathsep-separated


def zoo_folder() -> Path | None:
    here = Path(__file__).resolve().parent
    for candidate in (here / "models", here.parent / "models"):
        if candidate.is_dir():
            return candidate
    return None


@dataclass
class FileScope:
    """What one file defines and imports: the names its blocks and networks can see."""

    path: str
    defs: dict = field(default_factory=dict)  # name -> BlockDef | NetworkDef | NetworkAlias
    own_networks: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # top-level loss statements of this file
    trains: list = field(default_factory=list)


class Loader:
    """Loads a spec and its imports, each file once, into FileScopes."""

    def __init__(self, roots: list[Path] | None = None, read=None):
        self.files: dict[str, FileScope] = {}
        self.loading: list[str] = []
        self.roots = roots  # folders imports may read; None: decided by the first file loaded
        # path -> its items, instead of the file's; the language server reads unsaved buffers so.
        self.read = read

    def _allowed_roots(self, first: Path) -> list[Path]:
        roots = [first.parent]
        zoo = zoo_folder()
        if zoo is not None:
            roots.append(zoo)
        roots += [Path(p).resolve() for p in os.environ.get(IMPORT_PATH_ENV, "").split(os.pathsep) if p]
        return roots

    def load(self, path: str, span: Span | None = None) -> FileScope:
        resolved = Path(path).resolve()
        key = str(resolved)
        if self.roots is None:
            self.roots = self._allowed_roots(resolved)
        if key in self.files:
            return self.files[key]
        if key in self.loading:
            cycle = " -> ".join(Path(p).name for p in self.loading[self.loading.index(key):] + [key])
            raise GraphProblem(f"import cycle: {cycle}", span)
        self.loading.append(key)
        try:
            scope = self._read(path, span)
        finally:
            self.loading.pop()
        self.files[key] = scope
        return scope

    def _read(self, path: str, span: Span | None) -> FileScope:
        items = self.read(path) if self.read else parse(read_spec(path, span), str(path))
        scope = FileScope(str(path))
        for item in items:
            if isinstance(item, ast.Import):
                self._import(scope, item, path)
        for item in items:
            if isinstance(item, (ast.BlockDef, ast.NetworkDef, ast.NetworkAlias)):
                item.scope = scope
                self._define(scope, item.name, item, item.span)
                if not isinstance(item, ast.BlockDef):
                    scope.own_networks.append(item.name)
            elif isinstance(item, ast.LossStmt):
                scope.losses.append(item)
            elif isinstance(item, ast.TrainDef):
                scope.trains.append(item)
        if len(scope.trains) > 1:
            raise NameProblem("a file may have one top-level train block", scope.trains[1].span,
                              notes=(("the first is here", scope.trains[0].span),))
        return scope

    def release(self) -> None:
        """Forget the files read, breaking the cycles between each file scope and its
        definitions (`item.scope`), so the syntax trees are freed as soon as nothing else holds
        them, by reference counting, instead of by a collection that must first walk all of
        them (a spec written line by line has tens of objects per statement)."""
        for scope in self.files.values():
            scope.defs.clear()
            scope.losses.clear()
            scope.trains.clear()
        self.files.clear()

    @staticmethod
    def _define(scope: FileScope, name: str, item, span: Span) -> None:
        if name in REGISTRY:
            raise NameProblem(f"'{name}' is already the name of an op", span,
                              hint="give the block or network another name")
        old = scope.defs.get(name)
        if old is not None and old is not item:
            raise NameProblem(f"'{name}' is defined twice", span, notes=(("first defined here", old.span),))
        scope.defs[name] = item

    def _import(self, scope: FileScope, item: ast.Import, importer: str) -> None:
        target = Path(importer).parent / item.path
        if not target.exists():
            raise NameProblem(f"cannot import \"{clip(item.path, 300)}\": no such file", item.span)
        resolved = target.resolve()
        if not any(resolved.is_relative_to(r) for r in self.roots):
            raise NameProblem(f"cannot import \"{clip(item.path, 300)}\": outside the spec's folder and the zoo",
                              item.span, hint=f"imports read the folder of the spec you check (and below) and "
                              f"netspec's models/; add a folder to {IMPORT_PATH_ENV} to widen that")
        other = self.load(str(target), item.span)
        if item.names is None:
            for name, d in other.defs.items():
                self._define(scope, name, d, item.span)
            return
        for name, span in item.names:
            if name not in other.defs:
                raise NameProblem(f"\"{clip(item.path, 300)}\" defines no block or network '{name}'", span,
                                  hint=did_you_mean(name, other.defs))
            self._define(scope, name, other.defs[name], span)
