"""What kind of thing a path the user names is, and what files lie near a missing one.

Every writer of netspec renames a temporary over its output, which would replace a device
node or a FIFO with a regular file (as root, `-o /dev/null` would break the system), and a
reader that opens a FIFO blocks forever. So outputs and inputs are checked here, in one place,
before anything is opened. No torch, no numpy: `netspec check` and `fmt` use this.
"""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

from .errors import DataProblem


def kind_of(mode: int) -> str:
    """`st_mode` as a phrase: 'a regular file', 'a folder', 'a FIFO', 'a character device', ..."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def special_kind(path, folder_ok: bool = False) -> str | None:
    """None when `path` is missing, a regular file (or, with folder_ok, a folder); else what it is.

    Symlinks are followed: a link to /dev/zero is as endless to read as /dev/zero.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing, a dangling link, or unreachable: the open or write that follows says why
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    return kind_of(mode)


def check_output(path, folder_ok: bool = False) -> None:
    """Refuse to write over anything but a regular file (or, with folder_ok, a folder)."""
    kind = special_kind(path, folder_ok)
    if kind is not None:
        wanted = "a folder" if folder_ok else "a regular file"
        raise DataProblem(f"'{path}' is {kind}, not {wanted}: not writing over it",
                          hint="give another output path (netspec renames a new file over the old one, "
                               "which would replace it)")


def check_input(path, hint: str | None = None) -> None:
    """Refuse to read a FIFO, device or socket (reading could block or never end) or a folder."""
    kind = special_kind(path)
    if kind is not None:
        raise DataProblem(f"'{path}' is {kind}, not a regular file",
                          hint=hint or "give a regular file (reading this one could block or never end)")


def neighbour_hint(path, suffixes: tuple[str, ...], what: str, folders: bool = False) -> str:
    """A did-you-mean among the files with `suffixes` next to the missing `path` (never `path` itself)."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return f"the folder '{folder}' does not exist either"
    try:
        entries = list(folder.iterdir())
    except OSError:
        return f"the folder '{folder}' cannot be listed"
    names = sorted(p.name for p in entries if p.name != path.name and not p.name.startswith(".")
                   and ((p.suffix in suffixes and p.is_file()) or (folders and p.is_dir())))
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{folder / close[0]}'?"
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") if names else f"no {what}"
    return f"'{folder}' holds: {shown}"


__all__ = ["check_input", "check_output", "kind_of", "neighbour_hint", "special_kind"]
