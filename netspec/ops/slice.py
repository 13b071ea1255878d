"""Slice: Python's `x[start:end:step]` along chosen dims (negative indices count from the end,
out-of-range bounds clamp), as ONNX Slice does."""

from __future__ import annotations

from pydantic import model_validator

from ..errors import OpError
from ..types import TensorType
from .registry import Call, Int, Op, Params, distinct_axes, register

INT64_MAX = 2**63 - 1  # ONNX Slice's "to the end"
INT64_MIN = -2**63


def slice_tensor(x, cuts):
    """Apply `cuts`, (axis, start, stop, step) with stop exclusive and step >= 1 after flips.

    torch slicing has no negative step: such an axis arrives as (axis, start, stop, -step) on
    the flipped tensor, marked by a negative step here.
    """
    for axis, start, stop, step in cuts:
        if step < 0:
            x = x.flip(axis)
            step = -step
        x = x.narrow(axis, start, stop - start) if step == 1 else \
            x[(slice(None),) * axis + (slice(start, stop, step),)]
    return x


class _Cut:
    """One axis' slice, resolved against its size (None when the size is symbolic)."""

    def __init__(self, axis: int, start, end, step: int):
        self.axis, self.start, self.end, self.step = axis, start, end, step

    def full(self) -> bool:
        return self.step == 1 and self.start in (None, 0) and self.end is None

    def length(self, n: int) -> int:
        return len(range(*slice(self.start, self.end, self.step).indices(n)))

    def torch_cut(self, n: int) -> tuple[int, int, int, int]:
        r = range(*slice(self.start, self.end, self.step).indices(n))
        if self.step > 0:
            return self.axis, r.start, r.start + (len(r) - 1) * r.step + 1, r.step
        # On the flipped axis, element i sits at n - 1 - i.
        first = n - 1 - r.start
        return self.axis, first, first + (len(r) - 1) * -r.step + 1, r.step


@register
class Slice(Op):
    doc = ("Keep `starts[i]:ends[i]:steps[i]` of dim `axes[i]`, with Python's rules (negative indices count "
           "from the end, bounds clamp, an end of none runs to the end): Slice([2, 3], [4, 4], [-4, -4]) "
           "crops 4 pixels off each side.")
    positional = ("axes", "starts", "ends", "steps")

    class Params(Params):
        axes: list[Int]
        starts: list[Int]
        ends: list[Int | None]
        steps: list[Int] | None = None

        @model_validator(mode="after")
        def _consistent(self):
            n = len(self.axes)
            if n == 0:
                raise ValueError("axes is empty: name at least one dim to slice")
            lengths = {"starts": len(self.starts), "ends": len(self.ends)}
            if self.steps is not None:
                lengths["steps"] = len(self.steps)
            for name, k in lengths.items():
                if k != n:
                    raise ValueError(f"{name} has {k} entries but axes has {n}: give one per axis")
            if self.steps is not None and 0 in self.steps:
                raise ValueError(f"a step cannot be 0, got steps={self.steps}")
            return self

    @staticmethod
    def _cuts(p, x: TensorType) -> list[_Cut]:
        steps = p.steps or [1] * len(p.axes)
        return [_Cut(axis, start, end, step)
                for axis, start, end, step in zip(distinct_axes(p.axes, x, "axes", twice="sliced twice"), p.starts, p.ends, steps)]

    @staticmethod
    def shape(p, ins):
        (x,) = ins
        dims = list(x.shape)
        for cut in Slice._cuts(p, x):
            n = dims[cut.axis]
            if isinstance(n, str):
                if cut.full():
                    continue
                raise OpError(f"cannot slice dim {cut.axis} of {x}: its size {n} is only known at run time, "
                              "so the result's size would be too", param="starts",
                              hint="slice fixed dims only; the whole range (start 0, end none) keeps a symbolic dim")
            size = cut.length(n)
            if size == 0:
                raise OpError(f"{cut.start}:{'' if cut.end is None else cut.end}:{cut.step} selects nothing "
                              f"from dim {cut.axis} of size {n} in {x}", param="starts")
            dims[cut.axis] = size
        return [x.with_shape(dims)]

    @staticmethod
    def torch(p, ins):
        x = ins[0]
        cuts = tuple(c.torch_cut(x.shape[c.axis]) for c in Slice._cuts(p, x) if not isinstance(x.shape[c.axis], str))
        return Call(slice_tensor, {"cuts": cuts})

    @staticmethod
    def onnx(ctx):
        import numpy as np
        cuts = [c for c in Slice._cuts(ctx.params, ctx.in_types[0]) if not c.full()]
        if not cuts:
            ctx.node("Identity", ctx.inputs, ctx.outputs)
            return

        def arr(values):
            return np.array(values, dtype=np.int64)

        starts = [c.start if c.start is not None else (0 if c.step > 0 else INT64_MAX) for c in cuts]
        ends = [c.end if c.end is not None else (INT64_MAX if c.step > 0 else INT64_MIN) for c in cuts]
        ctx.node("Slice", [ctx.inputs[0], ctx.const(arr(starts), "starts"), ctx.const(arr(ends), "ends"),
                           ctx.const(arr([c.axis for c in cuts]), "axes"),
                           ctx.const(arr([c.step for c in cuts]), "steps")], ctx.outputs)
