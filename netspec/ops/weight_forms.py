"""A layer's weights in the form its ONNX nodes consume them.

With folding (the default) the rearranged weight is stored as an initializer of its own,
computed when the model is written; without it, nodes rearrange the state dict's tensor at run
time, so the initializers stay the state dict one for one. See `netspec.fold`.
"""

from __future__ import annotations

import functools


def transposed(ctx, local: str) -> str:
    """This layer's 2-d weight `local`, transposed: [out, in] -> [in, out], as MatMul takes it."""
    import numpy as np
    if ctx.fold:
        rows, cols = ctx.weight_shape(local)
        return ctx.derived(f"{local}/T", np.transpose, [local], (cols, rows))
    return ctx.node("Transpose", [ctx.weight(local)], perm=[1, 0])[0]


def reshaped(ctx, local: str, shape: tuple[int, ...]) -> str:
    """This layer's weight `local` reshaped to `shape` (static, no -1), e.g. [C] -> [C, 1, 1]."""
    import numpy as np
    if ctx.fold:
        return ctx.derived(f"{local}/reshaped", functools.partial(np.reshape, shape=shape), [local], shape)
    return ctx.node("Reshape", [ctx.weight(local), ctx.const(np.array(shape, np.int64), "shape")])[0]


def _stack_gates(*arrays, gates: int, order: tuple[int, ...], per_dir: int):
    import numpy as np
    stacked = []
    for i in range(0, len(arrays), per_dir):
        parts = []
        for a in arrays[i:i + per_dir]:
            chunks = np.split(a, gates, axis=0)
            parts += [chunks[j] for j in order]
        stacked.append(np.concatenate(parts, axis=0))
    return np.stack(stacked)


def stacked_gates(ctx, groups: list[list[str]], gates: int, order: tuple[int, ...], name: str) -> str:
    """torch's per-direction gate tensors, gates reordered and concatenated per direction, stacked: [dirs, ...].

    `groups` holds one list of weight names per direction; `order` the ONNX gate order as
    indices into torch's.
    """
    import numpy as np
    if ctx.fold:
        first = ctx.weight_shape(groups[0][0])
        shape = (len(groups), first[0] * len(groups[0]), *first[1:])
        fn = functools.partial(_stack_gates, gates=gates, order=order, per_dir=len(groups[0]))
        return ctx.derived(name, fn, [k for g in groups for k in g], shape)
    axes = ctx.const(np.array([0], dtype=np.int64), "axes")
    per_dir = []
    for group in groups:
        parts = []
        for key in group:
            chunks = ctx.node("Split", [ctx.weight(key)], n_out=gates, axis=0)
            parts += [chunks[i] for i in order]
        (cat,) = ctx.node("Concat", parts, axis=0)
        per_dir.append(ctx.node("Unsqueeze", [cat, axes])[0])
    return per_dir[0] if len(per_dir) == 1 else ctx.node("Concat", per_dir, axis=0)[0]
