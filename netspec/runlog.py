"""A run's metrics as files: metrics.jsonl, metrics.csv, curves.png and, on request, TensorBoard.

The rows live in memory and every file is rewritten whole (atomically) after each epoch, so a
file never holds half a line, and a new run replaces an older run's history only once its own
first epoch is done.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .errors import DataProblem
from .runfolder import atomic_write, finite_or_none

COLUMNS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


def read_rows(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line that is not a JSON object ends the readable part."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            break  # a torn or edited tail: the checkpoint decides what is kept
        if not isinstance(row, dict):
            break
        rows.append(row)
    return rows


class RunLog:
    """Writes a run's metric files from its rows; `tensorboard` also mirrors them as TB events."""

    def __init__(self, out: Path, rows: list[dict], tensorboard: bool = False):
        self.out = Path(out)
        self.rows = list(rows)
        self.tb = _tensorboard_writer(self.out) if tensorboard else None

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def write(self) -> None:
        atomic_write(self.out / "metrics.jsonl",
                     "".join(json.dumps(finite_or_none(r), allow_nan=False) + "\n" for r in self.rows).encode())
        atomic_write(self.out / "metrics.csv", _csv(self.rows))
        atomic_write(self.out / "curves.png", _plot(self.rows))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _csv(rows: list[dict]) -> bytes:
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for r in rows:
        w.writerow(["" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                    else r[k] for k in keys])
    return buf.getvalue().encode()


def _plot(rows: list[dict]) -> bytes:
    """Loss and accuracy per epoch, train and val, as a PNG (matplotlib's Agg backend, no display)."""
    from matplotlib.figure import Figure

    accuracy = any(r.get("val_accuracy") is not None or r.get("train_accuracy") is not None for r in rows)
    fig = Figure(figsize=(9 if accuracy else 5, 3.6), dpi=100)
    axes = fig.subplots(1, 2 if accuracy else 1, squeeze=False)[0]
    epochs = [r["epoch"] for r in rows]
    for ax, kind in zip(axes, ("loss", "accuracy")):
        for split in ("train", "val"):
            ys = [r.get(f"{split}_{kind}") for r in rows]
            pts = [(e, y) for e, y in zip(epochs, ys) if isinstance(y, (int, float)) and math.isfinite(y)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def require_tensorboard():
    """TensorBoard's SummaryWriter, or a DataProblem saying how to get it (checked before a run starts)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DataProblem("--tensorboard needs the tensorboard package, which is not installed",
                          hint="pip install tensorboard (or netspec[tensorboard]), or drop --tensorboard "
                               "(curves.png and metrics.csv are always written)") from None
    return SummaryWriter


def _tensorboard_writer(out: Path):
    return require_tensorboard()(log_dir=str(out / "tensorboard"))


__all__ = ["RunLog", "read_rows", "require_tensorboard", "COLUMNS"]
