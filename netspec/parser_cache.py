"""Lark's LALR tables, cached as JSON in the user's cache folder so `check` does not rebuild them.

Building the tables is most of the parser's start-up. Lark's own cache is a pickle (loading one
runs code) kept in the shared temporary folder; this one is data only. A cache is used only when
it is this user's own file, in a folder only this user can write, and its first line is the key
of exactly this grammar, these options, this Lark and this format; anything else (stale, foreign,
damaged, unreadable) is ignored and the tables are rebuilt. Files are written atomically; a
folder that cannot be written just means no cache. NETSPEC_NO_CACHE=1 turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import lark
from lark import Lark

FORMAT = 1  # bump when the file's layout changes


def cache_folder() -> Path | None:
    if os.environ.get("NETSPEC_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netspec"


def load_or_build(grammar: str, options: dict, folder: Path | None = None) -> Lark:
    """A Lark LALR parser for `grammar` with `options`, from the cache when it can be trusted."""
    folder = cache_folder() if folder is None else folder
    if folder is None:
        return Lark(grammar, **options)
    key = hashlib.sha256(json.dumps({"grammar": grammar, "options": options, "lark": lark.__version__,
                                     "format": FORMAT}, sort_keys=True).encode()).hexdigest()
    path = folder / f"parser-{key[:32]}.json"
    cached = _read(path, key)
    if cached is not None:
        return cached
    parser = Lark(grammar, **options)
    _write(folder, path, key, parser)
    return parser


def _private(st: os.stat_result) -> bool:
    """Owned by this user and writable by no one else (where the OS has owners)."""
    if not hasattr(os, "getuid"):
        return True
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read(path: Path, key: str) -> Lark | None:
    try:
        if not _private(os.stat(path.parent)):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not _private(st):
                return None
            first, _, body = f.read().partition(b"\n")
        if first.decode("ascii") != key:
            return None
        return Lark.load(json.loads(body, object_hook=_decode))
    except Exception:  # a missing, damaged or foreign cache is rebuilt, whatever the failure
        return None


def _write(folder: Path, path: Path, key: str, parser: Lark) -> None:
    from lark.grammar import Rule
    from lark.lexer import TerminalDef
    try:
        data, memo = parser.memo_serialize([TerminalDef, Rule])
        body = json.dumps(_encode({"data": data, "memo": memo}), separators=(",", ":"))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.stat(folder)):
            return
        fd, tmp = tempfile.mkstemp(prefix=".parser-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key + "\n" + body)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, TypeError, ValueError):
        pass  # no cache this time; the parser itself is fine


# JSON has neither tuples nor non-string keys, and Lark's tables have both.
def _encode(x):
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x) and not {"__items__", "__tuple__"} & x.keys():
            return {k: _encode(v) for k, v in x.items()}
        return {"__items__": [[_encode(k), _encode(v)] for k, v in x.items()]}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"cannot cache a {type(x).__name__}")


def _decode(o: dict):
    if len(o) == 1 and "__tuple__" in o:
        return tuple(o["__tuple__"])
    if len(o) == 1 and "__items__" in o:
        return {_hashable(k): v for k, v in o["__items__"]}
    return o


def _hashable(k):
    return tuple(_hashable(v) for v in k) if isinstance(k, list) else k
