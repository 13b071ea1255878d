"""Spec files as text: only regular files of sane size are read, so a FIFO, a device or a
symlink to /dev/zero is refused at once instead of blocking or filling memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import LimitProblem, Span, SyntaxProblem, clip

MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec is text a person writes; past this it is not a spec


def read_spec(path: str | Path, span: Span | None = None) -> str:
    """The text of a spec file: a regular UTF-8 file of at most MAX_SPEC_BYTES, BOM dropped."""
    shown = clip(str(path), 300)
    try:
        st = os.stat(path)  # follows symlinks: a link to /dev/zero is a character device
    except FileNotFoundError:
        raise SyntaxProblem(f"{shown}: no such file", span) from None
    except OSError as e:
        raise SyntaxProblem(f"{shown}: cannot read ({e.strerror})", span) from None
    if stat.S_ISDIR(st.st_mode):
        raise SyntaxProblem(f"{shown}: is a directory, not a .net file", span)
    if not stat.S_ISREG(st.st_mode):
        raise SyntaxProblem(f"{shown}: not a regular file (a pipe, device or socket), so not read", span,
                            hint="save the spec to a file and name that file")
    if st.st_size > MAX_SPEC_BYTES:
        raise LimitProblem(f"{shown}: {st.st_size:,} bytes is too large for a spec "
                           f"(at most {MAX_SPEC_BYTES:,})", span)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SyntaxProblem(f"{shown}: cannot read ({e.strerror})", span) from None
    if len(data) > MAX_SPEC_BYTES:  # it grew since the stat
        raise LimitProblem(f"{shown}: too large for a spec (at most {MAX_SPEC_BYTES:,} bytes)", span)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise SyntaxProblem(f"{shown}: not UTF-8 text ({e.reason} at byte {e.start})", span) from None
