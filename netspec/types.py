"""Tensor types: a dtype and a shape whose dims are ints or symbolic names such as `N`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

Dim = Union[int, str]

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int8": 1,
            "uint8": 1, "bool": 1}


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def itemsize(self) -> int:
        """Bytes of one element."""
        return ITEMSIZE[self.dtype]

    def per_item_numel(self) -> int:
        """Elements with every symbolic dim counted as 1: per batch item, when only N is symbolic."""
        n = 1
        for d in self.shape:
            if isinstance(d, int):
                n *= d
        return n

    def numel(self) -> int | None:
        """Element count, or None when a dim is symbolic."""
        n = 1
        for d in self.shape:
            if isinstance(d, str):
                return None
            n *= d
        return n

    def __str__(self) -> str:
        return "[" + ",".join(str(d) for d in self.shape) + "]"

    def full(self) -> str:
        return f"{self.dtype}{self}"


def is_float(t: TensorType) -> bool:
    return t.dtype in FLOAT_DTYPES


def norm_axis(axis: int, rank: int) -> int | None:
    """Map a possibly negative axis into [0, rank), or None when out of range."""
    a = axis + rank if axis < 0 else axis
    return a if 0 <= a < rank else None
