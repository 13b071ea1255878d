"""Weights from elsewhere onto a spec: a PyTorch state dict matched to the layers by structure.

Names rarely match (torchvision's `layer1.0.conv1` is netspec's `x.4.0.main.0`), so the match
is by structure. Both sides become a list of *units*, one per parameter-bearing module: the
spec's layers in graph order, and the source's modules in state-dict order (a module is a key's
prefix; nn.MultiheadAttention's `out_proj` stays inside its module, as it does in the op). A
unit's signature is its tensors' local names and shapes (a unit of one tensor, like ViT's
`class_token`, is known by its shape alone). The two lists are aligned in order by signature
(difflib's matcher, which finds the longest runs that agree); units left over on both sides that
share a signature are then paired in order, which places a module that a source defines
elsewhere (torchvision's GoogLeNet keeps its aux heads before `fc`, its ViT the class token
before the patch convolution). Whatever is left cannot be placed: strict import refuses it,
naming both sides; the lenient import for fine-tuning leaves those layers freshly initialised.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from .errors import DataProblem
from .state_dicts import read_state_dict
from .weights import check_weights, layer_weights, weight_specs

BATCHNORM_STATS = ("weight", "bias", "running_mean", "running_var")


@dataclass
class Unit:
    """One parameter-bearing module: its name, and its tensors' shapes by local name."""

    name: str
    shapes: dict[str, tuple[int, ...]]
    keys: dict[str, str] = field(default_factory=dict)  # local name -> source key
    kind: str = ""  # the op, for the spec's layers

    @property
    def signature(self) -> tuple:
        if len(self.shapes) == 1:
            return (("", next(iter(self.shapes.values()))),)
        return tuple(sorted(self.shapes.items()))

    def describe(self) -> str:
        shown = ", ".join(f"{local} {list(shape)}" for local, shape in self.shapes.items())
        return f"{self.name} ({self.kind + ': ' if self.kind else ''}{shown})"


@dataclass
class Match:
    """How a source's units map onto a spec's layers."""

    pairs: list[tuple[Unit, Unit]]  # (source, layer), in the spec's order
    fresh: list[Unit]  # the spec's layers nothing matched
    unused: list[Unit]  # the source's modules nothing took
    reordered: int  # pairs placed by signature after the in-order alignment
    filled: int = 0  # BatchNorm modules given the num_batches_tracked they lack


# ---- units -------------------------------------------------------------------------------------

def spec_units(g) -> list[Unit]:
    """The spec's parameter-bearing layers in graph order."""
    return [Unit(name, {local: tuple(s.shape) for local, s in specs.items()}, kind=g.nodes[name]["op"])
            for name, specs in layer_weights(g).items()]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def source_units(shapes: dict[str, tuple[int, ...]], ordered: bool, layers: list[Unit]) -> list[Unit]:
    """The source's modules, in state-dict order (or natural key order when the file lost it)."""
    keys = list(shapes) if ordered else sorted(shapes, key=_natural)
    groups: dict[str, dict[str, str]] = {}
    for key in keys:
        prefix, _, local = key.rpartition(".")
        groups.setdefault(prefix, {})[local] = key
    # A module that holds tensors of its own and of a child (nn.MultiheadAttention's out_proj)
    # is one unit when a spec layer has that very layout.
    nested = {frozenset(u.shapes) for u in layers if any("." in local for local in u.shapes)}
    for layout in nested:
        children = {local.split(".", 1)[0] for local in layout if "." in local}
        for prefix in list(groups):
            if prefix not in groups:
                continue
            merged = dict(groups[prefix])
            for child in children:
                for local, key in groups.get(_join(prefix, child), {}).items():
                    merged[f"{child}.{local}"] = key
            if set(merged) == layout:
                groups[prefix] = merged
                for child in children:
                    groups.pop(_join(prefix, child), None)
    units = []
    for prefix, locals_ in groups.items():
        # A module's own parameter (`class_token`, `encoder.pos_embedding`) is named in full.
        lone = len(locals_) == 1 and next(iter(locals_)) not in ("weight", "bias")
        name = next(iter(locals_.values())) if lone else prefix or "(top level)"
        units.append(Unit(name, {local: tuple(shapes[key]) for local, key in locals_.items()}, dict(locals_)))
    return units


def _natural(key: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def _with_batch_count(units: list[Unit], layers: list[Unit]) -> int:
    """Give BatchNorm modules saved before PyTorch 0.4.1 the counter they lack; return how many."""
    wanted = {frozenset(u.shapes) for u in layers if "num_batches_tracked" in u.shapes}
    count = 0
    for u in units:
        if set(u.shapes) == set(BATCHNORM_STATS) and frozenset([*BATCHNORM_STATS, "num_batches_tracked"]) in wanted:
            u.shapes["num_batches_tracked"] = ()  # torch's BatchNorm loads such files with 0
            count += 1
    return count


# ---- matching ----------------------------------------------------------------------------------

def match_units(sources: list[Unit], layers: list[Unit], ordered: bool = True) -> Match:
    """Align the source's modules with the spec's layers by signature (see the module docstring).

    When the source lost its module order (`ordered` false), aligning the whole sequence would
    pair look-alike layers across blocks; only the pairing per signature is done.
    """
    a = [u.signature for u in sources]
    b = [u.signature for u in layers]
    taken: dict[int, int] = {}  # layer index -> source index
    if ordered:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for i, j, n in matcher.get_matching_blocks():
            for k in range(n):
                taken[j + k] = i + k
    used = set(taken.values())
    left_src: dict[tuple, list[int]] = {}
    for i, sig in enumerate(a):
        if i not in used:
            left_src.setdefault(sig, []).append(i)
    left_dst: dict[tuple, list[int]] = {}
    for j, sig in enumerate(b):
        if j not in taken:
            left_dst.setdefault(sig, []).append(j)
    reordered = 0
    for sig, js in left_dst.items():
        is_ = left_src.get(sig, [])
        if len(is_) == len(js):  # the same count on both sides: their order says which is which
            for i, j in zip(is_, js):
                taken[j] = i
                used.add(i)
                reordered += 1
    pairs = [(sources[taken[j]], layers[j]) for j in sorted(taken)]
    return Match(pairs, [layers[j] for j in range(len(layers)) if j not in taken],
                 [sources[i] for i in range(len(sources)) if i not in used], reordered)


# ---- the public API ----------------------------------------------------------------------------

def plan(spec, shapes: dict[str, tuple[int, ...]], ordered: bool = True) -> Match:
    """How a state dict of these key shapes (in module order unless `ordered` is false) maps onto `spec`."""
    layers = spec_units(spec.graph)
    sources = source_units(shapes, ordered, layers)
    filled = _with_batch_count(sources, layers)
    m = match_units(sources, layers, ordered)
    m.filled = filled
    return m


def import_state_dict(spec, source: str, log=print) -> dict[str, np.ndarray]:
    """Every weight of `spec` from `source`, matched by structure; refuse what does not line up."""
    arrays, fresh = _import(spec, source, log, strict=True)
    check_weights(arrays, spec.graph, source)
    return arrays


def init_arrays(spec, source: str, log=print) -> tuple[dict[str, np.ndarray], list[str]]:
    """The weights of `spec` that `source` provides, and the layers it cannot (left fresh).

    For fine-tuning: a layer whose shapes differ (a new 2-class head) is left out of the arrays
    and named in the list; the caller keeps its fresh initialisation.
    """
    return _import(spec, source, log, strict=False)


def _import(spec, source: str, log, strict: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    g = spec.graph
    arrays, ordered, label = read_state_dict(source)
    specs = weight_specs(g)
    layers = spec_units(g)
    if set(arrays) == set(specs):
        return _by_name(arrays, specs, layers, label, log, strict)
    m = plan(spec, {k: tuple(v.shape) for k, v in arrays.items()}, ordered)
    if strict and (m.fresh or m.unused):
        raise _mismatch(m, label, len(m.pairs) + len(m.unused), len(layers))
    if not m.pairs:
        raise DataProblem(f"no layer of {spec.name} matches a module of {label}",
                          hint="is it the weights of this architecture? compare `netspec check` with the file's keys")
    out = {}
    width = max(len(s.name) for s, _ in m.pairs)
    log(f"{label} -> {spec.name}: {len(m.pairs)} of {len(layers)} layers matched by structure")
    for src, dst in m.pairs:
        for local, shape in dst.shapes.items():
            key = src.keys.get(local) if len(dst.shapes) > 1 else next(iter(src.keys.values()))
            value = arrays[key] if key is not None else np.zeros((), np.int64)
            want = specs[f"{dst.name}.{local}"].dtype
            out[f"{dst.name}.{local}"] = _as_dtype(value, want, key or local, label).reshape(shape)
        log(f"  {src.name:<{width}} -> {dst.name}")
    if not ordered:
        log("  (the file does not keep the module order: modules were paired in key order within each "
            "kind and shape; check the mapping)")
    elif m.reordered:
        log(f"  ({m.reordered} placed by kind and shape where the source orders its modules otherwise)")
    if m.filled:
        log(f"  {m.filled} BatchNorm layers lack num_batches_tracked (saved before PyTorch 0.4.1): set to 0")
    _report_leftovers(m, log)
    return out, [u.name for u in m.fresh]


def _as_dtype(value, want, key: str, label: str) -> np.ndarray:
    """`value` as the spec's dtype when that loses nothing (float16 -> float32, a counter's int
    width); otherwise refused, as compile refuses it: a quantized or narrowed tensor is not a weight."""
    value, want = np.asarray(value), np.dtype(want)
    have = value.dtype
    lossless = have == want or (have.kind == want.kind == "f" and have.itemsize <= want.itemsize) \
        or (have.kind in "iu" and want.kind in "iu")
    if not lossless:
        raise DataProblem(f"{label}: {key} is {have}, the spec wants {want}",
                          hint="convert them before saving, e.g. {k: v.float() ...}; netspec does not change "
                               "the precision of weights silently")
    return value.astype(want, copy=False)


def _by_name(arrays, specs, layers, label, log, strict):
    """A file with this spec's own layer names (a netspec run): load by name."""
    if strict:  # check_weights, run by the caller, names any tensor of the wrong shape
        log(f"{label}: the spec's own layer names; all {len(layers)} layers loaded by name")
        return {k: _as_dtype(arrays[k], specs[k].dtype, k, label) for k in specs}, []
    out, fresh = {}, []
    for u in layers:
        keys = [f"{u.name}.{local}" for local in u.shapes]
        if all(tuple(arrays[k].shape) == tuple(specs[k].shape) for k in keys):
            out.update((k, _as_dtype(arrays[k], specs[k].dtype, k, label)) for k in keys)
        else:
            fresh.append(u)
    log(f"{label}: the spec's own layer names; {len(layers) - len(fresh)} of {len(layers)} layers loaded by name")
    for u in fresh:
        file_shapes = ", ".join(f"{local} {list(arrays[f'{u.name}.{local}'].shape)}" for local in u.shapes)
        log(f"  left fresh: {u.describe()}; the file has {file_shapes}")
    return out, [u.name for u in fresh]


def _report_leftovers(m: Match, log) -> None:
    for u in m.fresh:
        log(f"  left fresh: {u.describe()}")
    if m.unused:
        log(f"  not used from the source: {', '.join(u.describe() for u in m.unused[:6])}"
            + (f", ... ({len(m.unused) - 6} more)" if len(m.unused) > 6 else ""))


def _mismatch(m: Match, label: str, n_src: int, n_dst: int) -> DataProblem:
    if len(m.fresh) == len(m.unused):
        lines = [f"layer {layer.describe()} vs {label}: {src.describe()}"
                 for layer, src in zip(m.fresh[:8], m.unused[:8])]
        more = len(m.fresh) - len(lines)
    else:
        lines = [f"layer {u.describe()} has no match in {label}" for u in m.fresh[:6]]
        lines += [f"{label}: {u.describe()} has no layer in the spec" for u in m.unused[:6]]
        more = len(m.fresh) + len(m.unused) - len(lines)
    if more > 0:
        lines.append(f"... and {more} more")
    counts = f"{label} has {n_src} parameter-bearing modules, the spec {n_dst}"
    return DataProblem(f"cannot map {label} onto the spec by structure ({counts}; {len(m.pairs)} matched):\n  "
                       + "\n  ".join(lines),
                       hint="a network parameter may differ (--set classes=..., depths, aux); to keep the "
                            "matched layers and leave these fresh, import leniently (--lenient, train --init)")
