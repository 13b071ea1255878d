"""How much memory this machine has, and refusing work that cannot fit in it before it starts."""

from __future__ import annotations

import os

from .errors import DataProblem


def physical_memory() -> int | None:
    """Bytes of RAM, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _size(n: float) -> str:
    for unit, step in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= step:
            return f"{n / step:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def refuse_past_memory(needed: float, what: str, hint: str) -> None:
    """A DataProblem when `needed` bytes exceed the machine's RAM: an allocation that would end in
    the OOM killer or a MemoryError mid-run is refused while nothing has started."""
    total = physical_memory()
    if total is not None and needed > total:
        raise DataProblem(f"{what} needs about {_size(needed)}, more than this machine's {_size(total)} of memory",
                          hint=hint)


def training_bytes(spec, batch_size: int) -> int:
    """A lower bound on training's memory: every layer's output for one batch, kept for the backward
    pass and matched by its gradient, plus weights, gradients and two optimizer moments."""
    g = spec.graph
    per_item = sum(t.per_item_numel() * t.itemsize() for n in g.nodes for t in g.nodes[n].get("types") or ())
    return 2 * per_item * batch_size + 16 * spec.parameters


__all__ = ["physical_memory", "refuse_past_memory", "training_bytes"]
