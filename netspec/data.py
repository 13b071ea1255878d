"""Datasets for `netspec train`: the built-in digits, image folders, `.npz` and `.csv` files.

Every loader returns map-style datasets yielding `(input, target)` with the per-item shape
and dtype the network declares, so the training loop never reshapes anything. torch is
imported inside the functions: `netspec check` imports nothing from here, but keeping the
module light costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataProblem
from .types import TensorType

DIGITS = Path(__file__).parent / "data" / "digits.csv.gz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}

_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
                 "float64": "float64", "int64": "int64", "int32": "int32", "int8": "int8",
                 "uint8": "uint8", "bool": "bool"}


def load_dataset(data: str | Path | None, input_type: TensorType, target_type: TensorType | None,
                 val_split: float = 0.2, seed: int = 0, normalize=None):
    """Return (train, val or None, info) for `data`: None (digits), a folder, `.npz` or `.csv`.

    `normalize` is an optional (mean, std) pair of per-channel sequences for image folders.
    """
    item = _item_shape(input_type)
    target_type = target_type or TensorType("int64", ("N",))
    if data is None:
        return _digits(item, input_type.dtype, target_type, val_split, seed)
    path = Path(data)
    if not path.exists():
        raise DataProblem(f"dataset '{path}' does not exist",
                          hint="give a folder of class subfolders, a .npz or a .csv file")
    if path.is_dir():
        return _folder(path, item, input_type.dtype, target_type, val_split, seed, normalize)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".npz":
        return _npz(path, item, input_type.dtype, target_type, val_split, seed)
    if path.suffix.lower() == ".csv" or suffixes == ".csv.gz":
        x, y = _read_csv(path)
        train, val = _in_memory(x, y, None, None, item, input_type.dtype, target_type, val_split, seed,
                                str(path))
        return train, val, _info(str(path), train, val, _class_names(y))
    raise DataProblem(f"cannot read dataset '{path}': unknown file type '{path.suffix}'",
                      hint="use a folder of images in class subfolders, a .npz with x and y, or a .csv")


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


def _targets(y: np.ndarray, target_type: TensorType, where: str):
    """Labels as the declared target: class indices, or one-hot rows for a [N, C] float target."""
    import torch

    t_item = target_type.shape[1:] if target_type.rank >= 1 else ()
    dtype = getattr(torch, _TORCH_DTYPES[target_type.dtype])
    y = np.asarray(y)
    if y.ndim >= 1 and tuple(y.shape[1:]) == tuple(t_item):
        return torch.as_tensor(y).to(dtype)
    if y.ndim == 1 and len(t_item) == 1 and isinstance(t_item[0], int) and target_type.dtype.startswith(("float", "bfloat")):
        if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= t_item[0])):
            raise DataProblem(f"{where}: labels must be class indices in 0..{t_item[0] - 1} "
                              f"to make one-hot targets of {target_type.full()}")
        return torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.long), t_item[0]).to(dtype)
    raise DataProblem(f"{where}: targets of shape {_fmt(y.shape[1:])} per item do not fit the "
                      f"declared target {target_type.full()}")


# ---------------------------------------------------------------- in-memory arrays

def _in_memory(x, y, x_val, y_val, item, dtype, target_type, val_split, seed, where):
    from torch.utils.data import TensorDataset

    x = _fit_items(x, item, dtype, where)
    y = _targets(y, target_type, where)
    if len(x) != len(y):
        raise DataProblem(f"{where}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataProblem(f"{where}: the dataset is empty")
    if x_val is not None:
        xv = _fit_items(x_val, item, dtype, where + " (x_val)")
        yv = _targets(y_val, target_type, where + " (y_val)")
        if len(xv) != len(yv):
            raise DataProblem(f"{where}: {len(xv)} validation inputs but {len(yv)} labels")
        return TensorDataset(x, y), TensorDataset(xv, yv)
    tr, va = split_indices(len(x), val_split, seed)
    val = TensorDataset(x[va], y[va]) if len(va) else None
    return TensorDataset(x[tr], y[tr]), val


def _fit_items(x: np.ndarray, item, dtype: str, where: str):
    """Arrays whose items already have the declared shape, or flat rows of the same size."""
    import torch

    x = np.asarray(x)
    if x.ndim < 1:
        raise DataProblem(f"{where}: expected an array of examples, got a scalar")
    got = tuple(x.shape[1:])
    if got != tuple(item):
        if len(got) == 1 and got[0] == int(np.prod(item, dtype=np.int64)):
            x = x.reshape((len(x), *item))
        else:
            raise DataProblem(f"{where}: items of shape {_fmt(got)} do not fit the declared input "
                              f"{_fmt(item)}", hint="reshape the array, or change the input declaration")
    if x.dtype.kind not in "biuf":
        raise DataProblem(f"{where}: inputs must be numbers, got an array of {x.dtype}")
    return torch.as_tensor(x).to(getattr(torch, _TORCH_DTYPES[dtype]))


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of numbers, the last column the label; one header line is skipped if present."""
    last = None
    for skip in (0, 1):
        try:
            rows = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
            break
        except (ValueError, OSError, EOFError) as e:
            last = e
    else:
        raise DataProblem(f"cannot read '{path}' as numbers: {last}",
                          hint="each row: the input values then the label, comma-separated")
    if rows.shape[0] == 0 or rows.shape[1] < 2:
        raise DataProblem(f"'{path}' needs at least one row of inputs followed by a label column")
    labels = rows[:, -1]
    if np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    return rows[:, :-1].astype(np.float32), labels


def _npz(path, item, dtype, target_type, val_split, seed):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise DataProblem(f"cannot read '{path}' as a .npz: {e}",
                          hint="save it with numpy.savez(path, x=inputs, y=labels); object arrays are refused") from None
    keys = sorted(arrays)
    if "x" not in arrays or "y" not in arrays:
        raise DataProblem(f"'{path}' must hold arrays 'x' and 'y', found {keys or 'none'}",
                          hint="numpy.savez(path, x=inputs, y=labels[, x_val=..., y_val=...])")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DataProblem(f"'{path}' has only one of 'x_val' and 'y_val'; give both or neither")
    train, val = _in_memory(arrays["x"], arrays["y"], arrays.get("x_val"), arrays.get("y_val"),
                            item, dtype, target_type, val_split, seed, str(path))
    return train, val, _info(str(path), train, val, _class_names(arrays["y"]))


def _class_names(y) -> list[str] | None:
    y = np.asarray(y)
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and y.size and y.min() >= 0:
        return [str(i) for i in range(int(y.max()) + 1)]
    return None


def _info(source, train, val, classes) -> dict:
    return {"source": source, "classes": classes, "num_classes": len(classes) if classes else None,
            "train_size": len(train), "val_size": len(val) if val is not None else 0}


# ---------------------------------------------------------------- built-in digits

def _digits(item, dtype, target_type, val_split, seed):
    """UCI hand-written digits (8x8, 0..16), adapted to the declared input shape."""
    import torch

    x, y = _read_csv(DIGITS)
    images = torch.as_tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    if item == (64,):
        images = images.reshape(-1, 64)
    elif len(item) == 3 and item[0] in (1, 3):
        c, h, w = item
        if (h, w) != (8, 8):
            images = torch.nn.functional.interpolate(images, size=(h, w), mode="bilinear",
                                                     align_corners=False)
        images = images.repeat(1, c, 1, 1)
    else:
        raise DataProblem(f"the built-in digits dataset cannot feed an input of {_fmt(item)} per item",
                          hint="declare float32[N, 64], float32[N, 1, H, W] or float32[N, 3, H, W], "
                               "or pass your own data with --data")
    if not dtype.startswith(("float", "bfloat")):
        raise DataProblem(f"the built-in digits are images; the input must be a float type, not {dtype}")
    train, val = _in_memory(images.numpy(), y, None, None, item, dtype, target_type, val_split, seed,
                            "digits")
    info = _info("digits (UCI ML hand-written digits, Alpaydin & Kaynak, CC BY 4.0)", train, val,
                 [str(i) for i in range(10)])
    return train, val, info


# ---------------------------------------------------------------- image folders

class ImageFolder:
    """Images listed up-front but decoded one at a time, when the loader asks for them."""

    def __init__(self, samples: list[tuple[Path, int]], item, dtype: str, target_type: TensorType,
                 normalize=None):
        self.samples = samples
        self.channels, self.height, self.width = item
        self.dtype = dtype
        self.target_type = target_type
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        import torch
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                if im.size != (self.width, self.height):
                    im = im.resize((self.width, self.height), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataProblem(f"cannot read image '{path}': {e}",
                              hint="remove or replace the file") from None
        x = torch.from_numpy(a.reshape(self.height, self.width, -1)).permute(2, 0, 1).contiguous()
        if self.normalize is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32).reshape(-1, 1, 1) for v in self.normalize)
            x = (x - mean) / std
        x = x.to(getattr(torch, _TORCH_DTYPES[self.dtype]))
        y = _targets(np.array([label]), self.target_type, str(path))[0]
        return x, y


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
            return train, val, _info(str(root), train, val, classes)
    else:
        classes, samples = _scan(root)
    tr, va = split_indices(len(samples), val_split, seed)
    train = ImageFolder([samples[i] for i in tr], item, dtype, target_type, normalize)
    val = ImageFolder([samples[i] for i in va], item, dtype, target_type, normalize) if len(va) else None
    return train, val, _info(str(root), train, val, classes)


__all__ = ["load_dataset", "split_indices", "ImageFolder", "DIGITS"]
