"""Datasets for `netspec train`: the built-in digits, image folders, `.npz` and `.csv` files.

Every loader returns map-style datasets yielding `(input, target)` with the per-item shape
and dtype the network declares, so the training loop never reshapes anything; a network with
several inputs or targets reads a `.npz` holding one array per name and gets tuples. Every
problem with the data is a DataProblem that names the file and the row, line or item, found
before training starts wherever the data can be read up-front: labels are checked against the
network's classes before anything is allocated for them, and only regular files of a bounded
size are read. torch is imported inside the functions.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataProblem
from .memory import refuse_past_memory
from .types import TensorType

DIGITS = Path(__file__).parent / "data" / "digits.csv.gz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_SHOWN_CLASSES = 8

_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
                 "float64": "float64", "int64": "int64", "int32": "int32", "int8": "int8",
                 "uint8": "uint8", "bool": "bool"}
# The largest finite value of each float type (numpy has no bfloat16: its limit is written out).
_FLOAT_MAX = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38,
              "float32": float(np.finfo(np.float32).max), "float64": float(np.finfo(np.float64).max)}


def memory_budget() -> int:
    """Bytes an in-memory dataset may take: half the machine's memory (at least 1 GiB)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(1 << 30, total // 2)


class ItemProblem(DataProblem):
    """A DataProblem met while reading one item, possibly inside a DataLoader worker.

    torch re-raises a worker's exception as `type(e)(message + worker traceback)`; this class
    turns that message back into the original one, so the user sees one line, not a traceback.
    """

    def __init__(self, message, span=None, hint=None, notes=()):
        if isinstance(message, str) and message.startswith(f"Caught {type(self).__name__} "):
            message, hint = _from_worker(message, type(self).__name__)
        super().__init__(message, span, hint, notes)


def _from_worker(text: str, name: str) -> tuple[str, str | None]:
    tail = text.rsplit(f"{name}: ", 1)[-1].strip()
    message, _, hint = tail.partition("\n  hint: ")
    return message.removeprefix("error: ").strip(), (hint.strip() or None)


def load_dataset(data: str | Path | None, input_type: TensorType, target_type: TensorType | None,
                 val_split: float = 0.2, seed: int = 0, normalize=None, n_classes: int | None = None,
                 tensors: bool = True):
    """Return (train, val or None, info) for `data`: None (digits), a folder, `.npz` or `.csv`.

    `tensors=False` gives the digits, a `.npz` or a `.csv` as numpy arrays (`Named` datasets)
    without importing torch, for ONNX Runtime; the checks and the items are the same.

    `normalize` is an optional (mean, std) pair of per-channel sequences for image folders.
    `n_classes`, the width of the classifier's output, bounds the labels (checked up-front).
    info: source, classes (names in label order, or None), num_classes, train_size, val_size,
    and notes (one line per large adaptation of the data to the declared input).
    """
    item = _item_shape(input_type)
    target_type = target_type or TensorType("int64", ("N",))
    if data is None:
        return _digits(item, input_type.dtype, target_type, val_split, seed, n_classes, tensors)
    path = Path(data)
    if not path.exists():
        raise DataProblem(f"dataset '{path}' does not exist",
                          hint="give a folder of class subfolders, a .npz or a .csv file")
    if path.is_dir():
        return _folder(path, item, input_type.dtype, target_type, val_split, seed, normalize)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".npz":
        arrays = read_npz(path)
        keys = sorted(arrays)
        if "x" not in arrays or "y" not in arrays:
            raise DataProblem(f"'{path}' must hold arrays 'x' and 'y', found {keys or 'none'}",
                              hint="numpy.savez(path, x=inputs, y=labels[, x_val=..., y_val=...])")
        if ("x_val" in arrays) != ("y_val" in arrays):
            raise DataProblem(f"'{path}' has only one of 'x_val' and 'y_val'; give both or neither")
        train, val, classes = _in_memory(arrays["x"], arrays["y"], arrays.get("x_val"), arrays.get("y_val"),
                                         item, input_type.dtype, target_type, val_split, seed, str(path),
                                         n_classes, tensors=tensors)
        return train, val, _info(str(path), train, val, classes)
    if path.suffix.lower() == ".csv" or suffixes == ".csv.gz":
        x, y, lines = read_csv(path)
        train, val, classes = _in_memory(x, y, None, None, item, input_type.dtype, target_type, val_split,
                                         seed, str(path), n_classes, lines, tensors=tensors)
        return train, val, _info(str(path), train, val, classes)
    raise DataProblem(f"cannot read dataset '{path}': unknown file type '{path.suffix}'",
                      hint="use a folder of images in class subfolders, a .npz with x and y, or a .csv")


def load_named(data, inputs: list[tuple[str, TensorType]], targets: list[tuple[str, TensorType]],
               val_split: float = 0.2, seed: int = 0, n_classes: dict | None = None, tensors: bool = True):
    """Datasets for a network with several inputs or targets, from a `.npz` with one array per name.

    Items are (tuple of inputs, tuple of targets) in declared order; `NAME_val` arrays, when given
    for every name, make the validation split. `tensors=False` keeps them numpy arrays (no torch).
    """
    names = [n for n, _ in inputs] + [n for n, _ in targets]
    hint = "numpy.savez(path, " + ", ".join(f"{n}=..." for n in names) + ")"
    if data is None or Path(data).suffix.lower() != ".npz" or Path(data).is_dir():
        raise DataProblem(f"a network with {len(inputs)} input(s) and {len(targets)} target(s) "
                          f"({', '.join(names)}) trains on a .npz with one array per name",
                          hint=hint + "; add NAME_val arrays for a validation set of your own")
    path = Path(data)
    if not path.exists():
        raise DataProblem(f"dataset '{path}' does not exist", hint=hint)
    arrays = read_npz(path)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataProblem(f"'{path}' lacks the array(s) {', '.join(missing)}; it holds "
                          f"{', '.join(sorted(arrays)) or 'none'}", hint=hint)
    has_val = [n for n in names if f"{n}_val" in arrays]
    if has_val and len(has_val) != len(names):
        lacking = [f"{n}_val" for n in names if n not in has_val]
        raise DataProblem(f"'{path}' has validation arrays for some names but not {', '.join(lacking)}",
                          hint="give NAME_val for every input and target, or for none")
    n_classes = n_classes or {}

    def build(suffix: str):
        xs = [_fit_items(arrays[n + suffix], _item_shape(t), t.dtype, f"{path} ({n + suffix})", tensors=tensors)
              for n, t in inputs]
        ys = [_targets(arrays[n + suffix], t, f"{path} ({n + suffix})", n_classes.get(n), tensors=tensors)
              for n, t in targets]
        sizes = {n + suffix: len(a) for n, a in zip(names, xs + ys)}
        if len(set(sizes.values())) != 1:
            raise DataProblem(f"'{path}': the arrays hold different numbers of items: "
                              + ", ".join(f"{k} {v}" for k, v in sizes.items()))
        return xs, ys

    xs, ys = build("")
    if len(xs[0]) == 0:
        raise DataProblem(f"'{path}': the dataset is empty")
    if has_val:
        vx, vy = build("_val")
        train, val = Named(xs, ys), Named(vx, vy)
    else:
        tr, va = split_indices(len(xs[0]), val_split, seed)
        train = Named([x[tr] for x in xs], [y[tr] for y in ys])
        val = Named([x[va] for x in xs], [y[va] for y in ys]) if len(va) else None
    first = targets[0][0]
    classes = [str(i) for i in range(n_classes[first])] if first in n_classes else None
    return train, val, _info(str(path), train, val, classes)


class Named:
    """Several named arrays as one dataset: item i is (inputs' items, targets' items)."""

    def __init__(self, inputs: list, targets: list):
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs[0])

    def __getitem__(self, i):
        return tuple(x[i] for x in self.inputs), tuple(y[i] for y in self.targets)


class Augmented:
    """A training split whose items pass through `transform(x, generator)`, seeded by (seed, epoch, index).

    The draws depend on the item, not on the order, the worker or the process reading it, so an
    exact resume replays them; `set_epoch` is called by the loop before each epoch.
    """

    def __init__(self, ds, transform, seed: int):
        self.ds, self.transform, self.seed, self.epoch = ds, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        from .augment import item_generator
        x, y = self.ds[i]
        try:
            return self.transform(x, item_generator(self.seed, self.epoch, int(i))), y
        except ItemProblem:
            raise
        except DataProblem as e:  # as an ItemProblem, it reads the same from a DataLoader worker
            raise ItemProblem(e.diagnostics[0].message, hint=e.diagnostics[0].hint) from None


# ---------------------------------------------------------------- shapes

def _item_shape(t: TensorType) -> tuple[int, ...]:
    """The declared shape of one example: everything after the batch dim, all fixed."""
    if t.rank < 1:
        raise DataProblem(f"the input {t.full()} has no batch dimension",
                          hint="declare the batch first, e.g. float32[N, 1, 28, 28]")
    item = t.shape[1:]
    if any(isinstance(d, str) for d in item):
        raise DataProblem(f"the input {t.full()} has a symbolic dimension besides the batch",
                          hint="training needs fixed item shapes: write numbers after N")
    return tuple(item)


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def split_indices(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle cut into (train, val) indices: the same split for the same seed."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(n * val_split)
    if val_split > 0 and n > 1:
        n_val = min(max(1, n_val), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _where(where: str, i: int, lines=None) -> str:
    """`file:LINE` for a CSV row (counting the header), else `file item I`."""
    if lines is not None:
        return f"{where}:{int(lines[i])}"
    return f"{where} item {i}"


def class_indices(y, where: str, n_classes: int | None, lines=None) -> np.ndarray:
    """Labels as int64 class indices, refusing text, fractions, NaN and values out of range."""
    y = np.asarray(y)
    if y.dtype.kind in "USO":
        kind = "objects" if y.dtype.kind == "O" else "text"
        first = y.reshape(-1)[:1].tolist()
        example = f" such as {str(first[0])[:40]!r}" if first else ""
        raise DataProblem(f"{where}: labels must be class indices (whole numbers), got {kind}{example}",
                          hint="map each class name to 0, 1, 2, ... (the order of your class list)")
    if y.dtype.kind == "c":
        raise DataProblem(f"{where}: labels are complex numbers; class indices are whole numbers")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            i = int(np.argmax(bad.reshape(-1)))
            raise DataProblem(f"{_where(where, i, lines)}: the label is {y.reshape(-1)[i]}",
                              hint="every item needs a class index; drop or fix that row")
        frac = y != np.round(y)
        if frac.any():
            i = int(np.argmax(frac.reshape(-1)))
            raise DataProblem(f"{_where(where, i, lines)}: the label {y.reshape(-1)[i]:g} is not a whole "
                              f"number, so it is no class index",
                              hint="a classifier's labels are 0, 1, 2, ...; for regression use MSE or L1")
    flat = y.reshape(-1)
    if flat.size:
        lo, hi = flat.min(), flat.max()
        if lo < 0 or (n_classes is not None and hi >= n_classes):
            i = int(np.argmax((flat < 0) | ((flat >= n_classes) if n_classes is not None else False)))
            allowed = f"0..{n_classes - 1} (the classifier has {n_classes} outputs)" if n_classes else "0 or more"
            raise DataProblem(f"{_where(where, i, lines)}: label {flat[i]:g} is out of range; labels must be "
                              f"{allowed}",
                              hint=(f"labels reach {hi:g}: if the data really has {int(hi) + 1} classes, "
                                    f"give the network {int(hi) + 1} outputs (e.g. --set classes={int(hi) + 1})"
                                    if lo >= 0 and hi < 1e6 else "fix the labels"))
    return y.astype(np.int64)


def _targets(y: np.ndarray, target_type: TensorType, where: str, n_classes: int | None = None, lines=None,
             tensors: bool = True):
    """Labels as the declared target: class indices, or one-hot rows for a [N, C] float target."""
    t_item = target_type.shape[1:] if target_type.rank >= 1 else ()
    y = np.asarray(y)
    if y.dtype.kind in "USOc" or (y.dtype.kind == "f" and not target_type.dtype.startswith(("float", "bfloat"))):
        y = class_indices(y, where, n_classes, lines)
    if y.ndim >= 1 and tuple(y.shape[1:]) == tuple(t_item):
        if not target_type.dtype.startswith(("float", "bfloat", "bool")):
            y = class_indices(y, where, n_classes, lines)
        elif y.dtype.kind == "f" and not np.isfinite(y).all():
            i = int(np.argmax(~np.isfinite(y.reshape(len(y), -1)).all(axis=1)))
            raise DataProblem(f"{_where(where, i, lines)}: the target holds NaN or infinity")
        return _as(y, target_type.dtype, tensors)
    if y.ndim == 1 and len(t_item) == 1 and isinstance(t_item[0], int) and target_type.dtype.startswith(("float", "bfloat")):
        y = class_indices(y, where + ": to make one-hot targets of " + target_type.full(), t_item[0], lines)
        return _as(np.eye(t_item[0], dtype=np.float32)[y], target_type.dtype, tensors)
    raise DataProblem(f"{where}: targets of shape {_fmt(y.shape[1:])} per item do not fit the "
                      f"declared target {target_type.full()}")


# ---------------------------------------------------------------- in-memory arrays

def _as(a: np.ndarray, dtype: str, tensors: bool):
    """An array as the declared dtype: a torch tensor for training, else numpy (bfloat16 as float32)."""
    if not tensors:
        return a.astype("float32" if dtype == "bfloat16" else dtype, copy=False)
    import torch
    return torch.as_tensor(a).to(getattr(torch, _TORCH_DTYPES[dtype]))


def _in_memory(x, y, x_val, y_val, item, dtype, target_type, val_split, seed, where, n_classes, lines=None,
               tensors: bool = True):
    if tensors:
        from torch.utils.data import TensorDataset
    else:
        def TensorDataset(x, y):  # noqa: N802 - the same shape of dataset, as numpy arrays
            return Named([x], [y])

    x = _fit_items(x, item, dtype, where, lines, tensors)
    y = _targets(y, target_type, where, n_classes, lines, tensors)
    if len(x) != len(y):
        raise DataProblem(f"{where}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataProblem(f"{where}: the dataset is empty")
    classes = _class_names(y, target_type, n_classes)
    if x_val is not None:
        xv = _fit_items(x_val, item, dtype, where + " (x_val)", tensors=tensors)
        yv = _targets(y_val, target_type, where + " (y_val)", n_classes, tensors=tensors)
        if len(xv) != len(yv):
            raise DataProblem(f"{where}: {len(xv)} validation inputs but {len(yv)} labels")
        return TensorDataset(x, y), TensorDataset(xv, yv), classes
    tr, va = split_indices(len(x), val_split, seed)
    val = TensorDataset(x[va], y[va]) if len(va) else None
    return TensorDataset(x[tr], y[tr]), val, classes


def _class_names(y, target_type: TensorType, n_classes: int | None) -> list[str] | None:
    if n_classes is not None:
        return [str(i) for i in range(n_classes)]
    floating = y.is_floating_point() if hasattr(y, "is_floating_point") else y.dtype.kind == "f"
    if floating or y.ndim != 1 or not len(y):
        return None
    top = int(y.max())
    return [str(i) for i in range(top + 1)] if top < 100_000 else None


def _fit_items(x: np.ndarray, item, dtype: str, where: str, lines=None, tensors: bool = True):
    """Arrays whose items already have the declared shape, or flat rows of the same size."""
    x = np.asarray(x)
    if x.ndim < 1:
        raise DataProblem(f"{where}: expected an array of examples, got a scalar")
    if x.dtype.kind not in "biuf":
        raise DataProblem(f"{where}: inputs must be numbers, got an array of {x.dtype}",
                          hint="convert text or objects to numbers before saving the file")
    got = tuple(x.shape[1:])
    if got != tuple(item):
        if len(got) == 1 and got[0] == int(np.prod(item, dtype=np.int64)):
            x = x.reshape((len(x), *item))
        else:
            raise DataProblem(f"{where}: items of shape {_fmt(got)} do not fit the declared input "
                              f"{_fmt(item)}", hint="reshape the array, or change the input declaration")
    if x.dtype.kind == "f":
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1) if len(x) else np.ones(0, bool)
        if not finite.all():
            i = int(np.argmin(finite))
            bad = x.reshape(len(x), -1)[i]
            value = bad[~np.isfinite(bad)][0]
            raise DataProblem(f"{_where(where, i, lines)}: the input holds {value}",
                              hint="fix or drop that item: NaN or infinity in the data makes the loss NaN")
    if dtype in _FLOAT_MAX and x.dtype.kind == "f" and len(x):
        big = float(np.abs(x).max())
        limit = _FLOAT_MAX[dtype]
        if big > limit:
            raise DataProblem(f"{where}: input values reach {big:g}, past what {dtype} holds ({limit:g})",
                              hint="scale the data down (e.g. to [0, 1])")
    return _as(x, dtype, tensors)


# ---------------------------------------------------------------- files

def regular_file(path: Path, limit: int | None = None) -> int:
    """The size of `path`, refusing FIFOs, devices and files past `limit` bytes before reading."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataProblem(f"cannot read '{path}': {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise DataProblem(f"'{path}' is {kind}, not a regular file",
                          hint="give a dataset file or folder (reading it could block or never end)")
    if limit is not None and st.st_size > limit:
        raise DataProblem(f"'{path}' is {st.st_size / 1e9:.1f} GB, more than the {limit / 1e9:.1f} GB that "
                          "fit in memory here", hint="use a folder of images, which loads item by item")
    return st.st_size


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a .npz, refusing pickles, non-zip files and arrays too big to load."""
    regular_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataProblem(f"'{path}' is not a .npz file (a .npz is a zip archive of .npy arrays)",
                          hint="save it with numpy.savez(path, x=inputs, y=labels)")
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataProblem(f"cannot read '{path}' as a .npz: {e}") from None
    if total > memory_budget():
        raise DataProblem(f"'{path}' unpacks to {total / 1e9:.1f} GB, more than the "
                          f"{memory_budget() / 1e9:.1f} GB that fit in memory here",
                          hint="use a smaller file, or a folder of images")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataProblem(f"cannot read '{path}' as a .npz: {e}",
                          hint="save it with numpy.savez(path, x=inputs, y=labels); object arrays are refused") from None


def _read_text(path: Path) -> str:
    limit = memory_budget() // 8  # a text number becomes 8 bytes of float64 and more on the way
    regular_file(path, limit if path.suffix.lower() != ".gz" else None)
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read(limit + 1)
            if len(raw) > limit:
                raise DataProblem(f"'{path}' unpacks to more than {limit / 1e9:.1f} GB",
                                  hint="use a .npz or a folder of images")
        else:
            raw = path.read_bytes()
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataProblem(f"cannot read '{path}': {e}") from None
    except UnicodeDecodeError as e:
        raise DataProblem(f"'{path}' is not UTF-8 text (byte {e.start})", hint="save the CSV as UTF-8") from None


def _numbers(fields: list[str]) -> bool:
    try:
        [float(f) for f in fields]
        return True
    except ValueError:
        return False


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, labels, file line of each row): numbers, the last column the label; a header is skipped.

    A UTF-8 BOM is accepted; a bad value is reported with its line as the file numbers it.
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if numbered and not _numbers(numbered[0][1].split(",")):
        numbered = numbered[1:]  # the header
    if not numbered:
        raise DataProblem(f"'{path}' needs at least one row of inputs followed by a label column")
    width = len(numbered[0][1].split(","))
    try:
        rows = np.loadtxt(io.StringIO("\n".join(line for _, line in numbered)), delimiter=",", ndmin=2,
                          dtype=np.float64)
    except ValueError:
        for n, line in numbered:
            fields = line.split(",")
            if len(fields) != width:
                raise DataProblem(f"{path}:{n}: {len(fields)} values, but the first row has {width}") from None
            for f in fields:
                try:
                    float(f)
                except ValueError:
                    raise DataProblem(f"{path}:{n}: cannot read {f.strip()[:40]!r} as a number",
                                      hint="each row: the input values then the label, comma-separated") from None
        raise DataProblem(f"cannot read '{path}' as numbers") from None
    if rows.shape[1] < 2:
        raise DataProblem(f"'{path}' needs at least one row of inputs followed by a label column")
    return rows[:, :-1], rows[:, -1], np.array([n for n, _ in numbered])


def _info(source, train, val, classes, notes=()) -> dict:
    return {"source": source, "classes": classes, "num_classes": len(classes) if classes else None,
            "train_size": len(train), "val_size": len(val) if val is not None else 0, "notes": list(notes)}


# ---------------------------------------------------------------- built-in digits

def _digits(item, dtype, target_type, val_split, seed, n_classes, tensors: bool = True):
    """UCI hand-written digits (8x8, 0..16), adapted to the declared input shape."""
    x, y, _ = read_csv(DIGITS)
    # The digits are resized in memory all at once: a huge declared input must not reach the allocator.
    refuse_past_memory(len(x) * float(np.prod(item, dtype=np.float64)) * 4 * 2,
                       f"the built-in digits resized to {_fmt(item)} per item",
                       hint="declare a smaller input (e.g. --set size=32), or pass your own data with --data")
    images = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    notes = []
    if item == (64,):
        images = images.reshape(-1, 64)
    elif len(item) == 3 and item[0] in (1, 3):
        c, h, w = item
        if (h, w) != (8, 8):
            images = resize_bilinear(images, h, w)
            notes.append(f"the digits are 8x8 images; resized to {h}x{w}")
        if c == 3:
            notes.append("the digits are grey; the grey channel is repeated into 3 channels")
        images = np.repeat(images, c, axis=1)
    else:
        raise DataProblem(f"the built-in digits dataset cannot feed an input of {_fmt(item)} per item",
                          hint="declare float32[N, 64], float32[N, 1, H, W] or float32[N, 3, H, W], "
                               "or pass your own data with --data")
    if not dtype.startswith(("float", "bfloat")):
        raise DataProblem(f"the built-in digits are images; the input must be a float type, not {dtype}")
    if n_classes is not None and n_classes < 10:
        raise DataProblem(f"the built-in digits have 10 classes (0-9) but the classifier has {n_classes} outputs",
                          hint="give the network 10 outputs (e.g. --set classes=10), or pass your own data with --data")
    train, val, _ = _in_memory(images, y, None, None, item, dtype, target_type, val_split, seed,
                               "digits", None, tensors=tensors)
    info = _info("digits (UCI ML hand-written digits, Alpaydin & Kaynak, CC BY 4.0)", train, val,
                 [str(i) for i in range(10)], notes)
    return train, val, info


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, C, h, w] float32 images resized to height x width, as torch's bilinear interpolate does
    (align_corners=False, no antialias; within 1e-6 of it, and equal for whole-number scales).

    numpy, so that evaluating in ONNX Runtime sees the very items training saw, without torch.
    """
    def taps(n_in: int, n_out: int):
        # Source coordinate of each output pixel's centre, clamped at the first pixel.
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0).astype(np.float32)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo.astype(np.float32)
        return lo, hi, np.float32(1) - frac, frac

    r0, r1, h0, h1 = taps(images.shape[-2], height)
    c0, c1, w0, w1 = taps(images.shape[-1], width)
    h0, h1 = h0[:, None], h1[:, None]
    top = images[..., r0, :][..., c0] * w0 + images[..., r0, :][..., c1] * w1
    bottom = images[..., r1, :][..., c0] * w0 + images[..., r1, :][..., c1] * w1
    return (top * h0 + bottom * h1).astype(np.float32)


# ---------------------------------------------------------------- image folders

class ImageFolder:
    """Images listed up-front but decoded one at a time, when the loader asks for them.

    What is the same for every item (the dtype, the normalization constants, each class's
    target) is made once, on first use, so an item costs little beyond its decode.
    """

    def __init__(self, samples: list[tuple[Path, int]], item, dtype: str, target_type: TensorType,
                 normalize=None):
        self.samples = samples
        self.channels, self.height, self.width = item
        self.dtype = dtype
        self.target_type = target_type
        self.normalize = normalize
        self._consts = None  # (torch dtype, mean, std), made by the process that reads items
        self._label_targets: dict = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self):
        # Workers get the plain description and make their own constants.
        return {**self.__dict__, "_consts": None, "_label_targets": {}}

    def _constants(self):
        import torch
        mean = std = None
        if self.normalize is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32).reshape(-1, 1, 1) for v in self.normalize)
        self._consts = (getattr(torch, _TORCH_DTYPES[self.dtype]), mean, std)
        return self._consts

    def _target(self, label: int, path: Path):
        y = self._label_targets.get(label)
        if y is None:
            try:
                y = _targets(np.array([label]), self.target_type, str(path))[0]
            except DataProblem as e:
                raise ItemProblem(e.diagnostics[0].message, hint=e.diagnostics[0].hint) from None
            self._label_targets[label] = y
        return y.clone()  # the caller may change its item; the cached target stays as it was

    def __getitem__(self, i):
        return self.item(i, tensors=True)

    def item(self, i, tensors: bool = True):
        """Item i as torch tensors (training) or numpy arrays (ONNX Runtime, without torch)."""
        path, label = self.samples[i]
        if not tensors:
            a = read_image(path, self.channels, self.height, self.width)
            x = np.ascontiguousarray(a.reshape(self.height, self.width, -1).transpose(2, 0, 1))
            if self.normalize is not None:
                mean, std = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for v in self.normalize)
                x = (x - mean) / std
            try:
                y = _targets(np.array([label]), self.target_type, str(path), tensors=False)[0]
            except DataProblem as e:
                raise ItemProblem(e.diagnostics[0].message, hint=e.diagnostics[0].hint) from None
            return _as(x, self.dtype, False), y
        import torch
        dtype, mean, std = self._consts or self._constants()
        a = read_image_uint8(path, self.channels, self.height, self.width)
        # One float tensor per item: converted and laid out CHW in one copy, then scaled in place
        # (x / 255 in float32, bitwise what numpy's float32 division gives).
        chw = np.empty((self.channels, self.height, self.width), dtype=np.float32)
        np.copyto(chw, a.reshape(self.height, self.width, -1).transpose(2, 0, 1))  # PIL's array is read-only
        x = torch.from_numpy(chw).div_(255.0)
        if mean is not None:
            x.sub_(mean).div_(std)
        if dtype is not torch.float32:
            x = x.to(dtype)
        return x, self._target(label, path)


def read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """One image as float32 HxW(xC) in [0, 1], converted and resized; an ItemProblem when unreadable."""
    return np.asarray(read_image_uint8(path, channels, height, width), dtype=np.float32) / 255.0


def read_image_uint8(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """One image as uint8 HxW(xC), converted and resized; an ItemProblem when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # A huge image is refused rather than decoded (Pillow warns, then errors, past its limit).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (width, height):
                    im = im.resize((width, height), Image.BILINEAR)
                return np.asarray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ItemProblem(f"cannot read image '{path}': too many pixels to decode safely ({e})",
                          hint="shrink the image, or remove it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ItemProblem(f"cannot read image '{path}': {e}", hint="remove or replace the file") from None


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted subfolders) and (image, label) pairs under `root`."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataProblem(f"'{root}' has no class subfolders",
                          hint="lay images out as DIR/<class>/*.jpg, e.g. DIR/cat/1.jpg and DIR/dog/2.jpg")
    classes = classes or found
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for name in found:
        if name not in index:
            raise DataProblem(f"'{root / name}' is a class missing from the training folders",
                              hint=f"the training classes are {', '.join(classes)}")
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataProblem(f"class folder '{root / name}' has no images",
                              hint=f"accepted: {', '.join(sorted(IMAGE_SUFFIXES))}")
        samples += [(p, index[name]) for p in files]
    return classes, samples


def _adaptation(samples, item) -> list[str]:
    """One line on how the first image differs from the declared input, when it differs a lot."""
    from PIL import Image
    c, h, w = item
    try:
        with Image.open(samples[0][0]) as im:
            size, mode = im.size, im.mode
    except Exception:  # noqa: BLE001 - the loader reports unreadable images with their path
        return []
    notes = []
    colour = mode not in ("L", "1", "I", "I;16", "F", "LA")
    if c == 1 and colour:
        notes.append(f"images such as '{samples[0][0].name}' are colour ({mode}); converted to grey for the 1-channel input")
    if c == 3 and not colour:
        notes.append(f"images such as '{samples[0][0].name}' are grey; the grey channel is repeated into 3 channels")
    if size != (w, h) and (max(size[0] / w, w / size[0]) >= 2 or max(size[1] / h, h / size[1]) >= 2):
        notes.append(f"images such as '{samples[0][0].name}' are {size[0]}x{size[1]}; resized to {w}x{h}")
    return notes


def _folder(root, item, dtype, target_type, val_split, seed, normalize):
    if len(item) != 3 or item[0] not in (1, 3):
        raise DataProblem(f"an image folder feeds inputs of [1, H, W] or [3, H, W] per item, "
                          f"but the input is {_fmt(item)}")
    if not dtype.startswith(("float", "bfloat")):
        raise DataProblem(f"images load as floats in [0, 1]; the input must be a float type, not {dtype}")
    if normalize is not None:
        mean, std = normalize
        if len(mean) != item[0] or len(std) != item[0] or any(s <= 0 for s in std):
            raise DataProblem(f"normalize needs {item[0]} means and {item[0]} positive stds")
    if (root / "train").is_dir():
        classes, samples = _scan(root / "train")
        if (root / "val").is_dir():
            _, val_samples = _scan(root / "val", classes)
            train = ImageFolder(samples, item, dtype, target_type, normalize)
            val = ImageFolder(val_samples, item, dtype, target_type, normalize)
            return train, val, _info(str(root), train, val, classes, _adaptation(samples, item))
    else:
        classes, samples = _scan(root)
    tr, va = split_indices(len(samples), val_split, seed)
    train = ImageFolder([samples[i] for i in tr], item, dtype, target_type, normalize)
    val = ImageFolder([samples[i] for i in va], item, dtype, target_type, normalize) if len(va) else None
    return train, val, _info(str(root), train, val, classes, _adaptation(samples, item))


def show_classes(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_SHOWN_CLASSES])
    return shown + (f", ... ({len(names) - MAX_SHOWN_CLASSES} more)" if len(names) > MAX_SHOWN_CLASSES else "")


__all__ = ["Augmented", "load_dataset", "load_named", "split_indices", "ImageFolder", "ItemProblem", "Named", "DIGITS",
           "read_csv", "read_npz", "read_image", "read_image_uint8", "regular_file", "class_indices", "show_classes"]
