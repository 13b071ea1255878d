"""The run folder: the record of one training run, and the rules that keep it whole.

A run folder holds everything a later command needs (`run.json`: the spec's text, the `--set`
values, the resolved settings, the class names, the input preprocessing) next to the weights,
the checkpoint and the metrics. This module owns its naming (`runs/NETWORK`, `-2`, `-3`, ...),
the refusal to overwrite an older run, the exclusive lock a training process holds on it,
the removal of temporaries left by killed processes, and atomic, umask-honouring writes.
No torch here: `netspec check RUN` reads run.json through this module.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import math
import os
import socket
import stat
import tempfile
from pathlib import Path

from .errors import DataProblem
from .file_kinds import check_output, special_kind

FORMAT = "netspec-run-1"
RUN_JSON = "run.json"
SPEC_COPY = "spec.net"  # the spec's text as trained, for when the original file changes or moves
LOCK = ".netspec.lock"
# Files a run writes; a folder holding any of them holds a run.
RUN_FILES = ("run.json", "checkpoint.safetensors", "checkpoint.json", "weights.safetensors",
             "last.safetensors", "metrics.jsonl", "metrics.csv", "curves.png", SPEC_COPY)
MAX_RUN_JSON = 64 << 20  # bytes; a spec text is small, a bigger run.json is not ours


# ---------------------------------------------------------------- writing files

def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temporary path beside `path` to write to; renamed over `path` when the block succeeds.

    For writers that stream to a file themselves (safetensors' save_file), so that a big
    checkpoint is not first built as one more copy in memory.
    """
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a torn one.

    The file gets the mode `open` would give it (0666 less the umask), not mkstemp's 0600. A
    failure (a full disk, a read-only folder, Ctrl-C) removes the temporary and leaves the old file.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def finite_or_none(obj):
    """`obj` with every NaN and infinity replaced by None, so strict JSON readers accept it."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def json_bytes(obj, indent: int | None = 1) -> bytes:
    """Strict JSON (no NaN, no Infinity: they become null)."""
    return (json.dumps(finite_or_none(obj), indent=indent, allow_nan=False) + "\n").encode()


def write_failed(path: Path, e: OSError, saved: str | None = None) -> DataProblem:
    """A DataProblem for a write that the disk refused, saying what is still intact."""
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only",
           errno.EPERM: "permission denied"}.get(e.errno, e.strerror or str(e))
    tail = f"; {saved}" if saved else ""
    return DataProblem(f"cannot write '{path}': {why}{tail}",
                       hint="free some space or choose another --out; `--resume` continues from the "
                            "last saved checkpoint" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                       else "choose a folder you can write to with --out")


# ---------------------------------------------------------------- naming

def holds_run(folder: Path) -> list[str]:
    """The run files in `folder` (empty when it holds no run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [name for name in RUN_FILES if (folder / name).exists()]


def default_folder(network: str, resume: bool, root: Path = Path("runs")) -> Path:
    """`runs/NETWORK`, or the next free `runs/NETWORK-2`, `-3`, ...; with resume, the newest taken."""
    base = root / network
    taken = [base] if holds_run(base) else []
    k = 2
    while holds_run(root / f"{network}-{k}"):
        taken.append(root / f"{network}-{k}")
        k += 1
    if resume:
        return taken[-1] if taken else base
    if not taken and not _occupied(base):
        return base
    while _occupied(root / f"{network}-{k}"):
        k += 1
    return root / f"{network}-{k}"


def _occupied(folder: Path) -> bool:
    """A folder that exists and holds something besides a lock file."""
    return folder.exists() and any(p.name != LOCK for p in folder.iterdir())


def check_out(folder: Path, resume: bool, force: bool) -> None:
    """Refuse an --out that is a file, or that holds a run and neither --resume nor --force is given."""
    folder = Path(folder)
    kind = special_kind(folder, folder_ok=True) or ("a file" if folder.exists() and not folder.is_dir() else None)
    if kind is not None:
        raise DataProblem(f"--out '{folder}' is {kind}, not a folder",
                          hint="give a folder for the run's files (it is created if missing)")
    files = holds_run(folder)
    if files and not (resume or force):
        raise DataProblem(f"'{folder}' already holds a run ({describe(folder)})",
                          hint="`--resume` continues it, `--force` replaces it, or give another --out")


def describe(folder: Path) -> str:
    """One phrase saying what run a folder holds: network, epochs, best metric."""
    folder = Path(folder)
    parts = []
    with contextlib.suppress(OSError, ValueError, DataProblem):
        run = read_run(folder)
        parts.append(run.get("network") or "?")
    with contextlib.suppress(OSError, ValueError, TypeError):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        if rows:
            n = rows[-1].get("epoch")
            parts.append(f"{n} epoch{'' if n == 1 else 's'} trained")
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        # Rows past the checkpoint (checkpoint_every > 1, or a kill between the two writes) are
        # trained but not kept: --resume starts from the checkpoint.
        saved = json.loads((folder / "checkpoint.json").read_text()).get("epoch")
        if isinstance(saved, int) and parts and not parts[-1].startswith(f"{saved} epoch"):
            parts.append(f"checkpoint at epoch {saved}")
    if not parts:
        parts.append(", ".join(holds_run(folder)))
    return ", ".join(str(p) for p in parts)


# ---------------------------------------------------------------- the lock

class Lock:
    """An exclusive lock on a run folder, held by one training process for the whole run.

    `flock` is released by the kernel when its holder dies, so a lock left by a killed process
    is taken at once; its file still names the dead PID, which `stale` reports.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.fd: int | None = None
        self.stale: str | None = None  # what a dead holder's lock file said
        self.created = False  # whether acquiring made the folder

    def acquire(self) -> "Lock":
        import fcntl
        try:
            self.created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise write_failed(self.folder, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_fd(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataProblem(f"'{self.folder}' is in use by another training run ({_holder(holder)})",
                                  hint="wait for it to finish, stop it, or give another --out") from None
            raise DataProblem(f"cannot lock '{self.path}': {e.strerror}") from None
        old = _read_fd(fd)
        if old.get("pid") and old.get("pid") != os.getpid():
            self.stale = _holder(old)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise write_failed(self.path, e) from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)  # a clean exit leaves no holder to report
            if not holds_run(self.folder):
                # A run that failed before writing anything leaves no trace, not even its folder.
                self.path.unlink()
                if self.created:
                    self.folder.rmdir()
        os.close(self.fd)  # closing releases the flock
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_fd(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw) if raw.strip() else {}
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _holder(info: dict) -> str:
    if not info:
        return "a process that did not say who it is"
    return f"PID {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"


def remove_stale_temps(folder: Path) -> list[str]:
    """Delete the `.NAME.*.tmp` files in `folder`: with the lock held, only dead writers left them."""
    removed = []
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p.name)
    return sorted(removed)


# ---------------------------------------------------------------- run.json

def spec_record(path: str) -> dict:
    """{"path", "sha256", "text"} of the spec file a run trains."""
    raw = Path(path).read_bytes()
    return {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
            "text": raw.decode("utf-8", errors="replace")}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("netspec", "torch", "onnx", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def write_run(folder: Path, run: dict) -> None:
    atomic_write(Path(folder) / RUN_JSON, json_bytes(run))


def read_run(folder: Path) -> dict:
    """run.json, checked enough that its readers can index it."""
    path = Path(folder) / RUN_JSON
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RUN_JSON:
            raise DataProblem(f"'{path}' is not a run.json that netspec wrote (not a regular file "
                              f"under {MAX_RUN_JSON >> 20} MB)")
        run = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataProblem(f"cannot read '{path}': {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataProblem(f"'{path}' is not valid JSON: {e}",
                          hint="was it edited by hand? retrain, or restore it from the checkpoint's folder") from None
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        got = run.get("format") if isinstance(run, dict) else type(run).__name__
        raise DataProblem(f"'{path}' has format {got!r}, not {FORMAT!r}")
    for key, kind in (("network", str), ("spec", dict), ("sets", dict), ("train", dict)):
        if not isinstance(run.get(key), kind):
            raise DataProblem(f"'{path}' lacks a valid '{key}' entry",
                              hint="was it edited by hand? retrain to write a new one")
    if not isinstance(run["spec"].get("text"), str):
        raise DataProblem(f"'{path}' lacks the spec's text")
    return run


__all__ = ["FORMAT", "RUN_JSON", "Lock", "atomic_path", "atomic_write", "check_out", "default_folder", "describe",
           "finite_or_none", "holds_run", "json_bytes", "read_run",
           "remove_stale_temps", "spec_record", "versions", "write_failed", "write_run"]
