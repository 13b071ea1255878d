"""Weights as numpy arrays keyed like a torch state dict: specs, fresh draws, safetensors files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .digraph import DiGraph
from .errors import DataProblem
from .file_kinds import check_input
from .graph import layers, type_of
from .ops import WeightSpec, get_op


def layer_weights(g: DiGraph) -> dict[str, dict[str, WeightSpec]]:
    """Each parameter-bearing layer, in graph order, with its tensors by local name."""
    out = {}
    for name in layers(g):
        node = g.nodes[name]
        ins = [type_of(g, r) for r in node["args"]]
        local = get_op(node["op"]).weights(node["params"], ins)
        if local:
            out[name] = local
    return out


def weight_specs(g: DiGraph) -> dict[str, WeightSpec]:
    """Every tensor of the model's state, keyed `layer.local` like the torch state dict."""
    return {f"{name}.{local}": spec for name, local_specs in layer_weights(g).items()
            for local, spec in local_specs.items()}


def _draw(spec: WeightSpec, rng: np.random.Generator) -> np.ndarray:
    # Floats are drawn straight into float32 and scaled in place: a float64 draw and its
    # conversion would touch three times the memory, which is most of a big model's compile time.
    kind = spec.init[0]
    dtype = np.dtype(spec.dtype)
    if kind == "zeros":
        return np.zeros(spec.shape, dtype)
    if kind == "ones":
        return np.ones(spec.shape, dtype)
    if kind == "constant":
        return np.full(spec.shape, spec.init[1], dtype)
    if kind not in ("uniform", "normal", "trunc_normal"):
        raise ValueError(f"unknown init {spec.init!r}")  # an op's bug, not the user's
    fast = dtype in (np.float32, np.float64)
    draw_dtype = dtype if fast else np.float64
    if kind == "uniform":
        bound = spec.init[1]
        a = np.asarray(rng.random(spec.shape, dtype=draw_dtype))  # a 0-d draw is a scalar
        a *= 2 * bound
        a -= bound
    else:
        a = np.asarray(rng.standard_normal(spec.shape, dtype=draw_dtype))
        if kind == "trunc_normal":
            # Redraw what falls past two standard deviations: ~5% per round.
            out = np.abs(a) > 2
            while out.any():
                a[out] = rng.standard_normal(int(out.sum()), dtype=draw_dtype)
                out = np.abs(a) > 2
        a *= spec.init[1]
    return a if fast else a.astype(dtype)


def init_weights(g: DiGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh weights drawn with numpy from each op's declared init, without torch."""
    rng = np.random.default_rng(seed)
    return {key: _draw(spec, rng) for key, spec in weight_specs(g).items()}


def state_dict_arrays(module) -> dict[str, np.ndarray]:
    """Numpy copies of a module's state dict: floats as float32, counters keep their int type."""
    out = {}
    for key, t in module.state_dict().items():
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        out[key] = t.numpy().copy()
    return out


def _names(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_weights(arrays: dict[str, np.ndarray], g: DiGraph, source: str, hint: str | None = None) -> None:
    """Raise a DataProblem naming the keys when `arrays` does not fit the spec's weights."""
    specs = weight_specs(g)
    missing = specs.keys() - arrays.keys()
    extra = arrays.keys() - specs.keys()
    hint = hint or "was it trained from another spec?"
    if missing:
        raise DataProblem(f"{source} lacks {len(missing)} tensor{'s' if len(missing) > 1 else ''} "
                          f"the spec needs: {_names(missing)}", hint=hint)
    if extra:
        raise DataProblem(f"{source} has {len(extra)} tensor{'s' if len(extra) > 1 else ''} "
                          f"the spec does not know: {_names(extra)}", hint=hint)
    wrong = [f"{k} is {list(arrays[k].shape)}, the spec wants {list(specs[k].shape)}"
             for k in sorted(specs) if tuple(arrays[k].shape) != tuple(specs[k].shape)]
    if wrong:
        raise DataProblem(f"{source} has {len(wrong)} tensor{'s' if len(wrong) > 1 else ''} "
                          f"of the wrong shape: " + "; ".join(wrong[:8]), hint=hint)
    kinds = [f"{k} is {arrays[k].dtype}, the spec wants {specs[k].dtype}"
             for k in sorted(specs) if np.dtype(arrays[k].dtype) != np.dtype(specs[k].dtype)]
    if kinds:
        raise DataProblem(f"{source} has {len(kinds)} tensor{'s' if len(kinds) > 1 else ''} of the wrong "
                          f"dtype: " + "; ".join(kinds[:8]),
                          hint="convert them before saving, e.g. {k: v.astype(numpy.float32) ...}; netspec "
                               "does not change the precision of weights silently")


def load_safetensors(path, g: DiGraph) -> dict[str, np.ndarray]:
    """Read a safetensors file and check it holds exactly the spec's weights."""
    from safetensors.numpy import load_file
    # A FIFO or a device would block or never end.
    check_input(path, hint="give a weights.safetensors that `netspec train` wrote, or its run folder")
    try:
        arrays = load_file(str(path))
    except FileNotFoundError:
        raise DataProblem(f"weights file {path} does not exist") from None
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise DataProblem(f"cannot read weights file {path}: {e}",
                          hint="is it a safetensors file?") from None
    check_weights(arrays, g, _described(path), _run_hint(Path(path).parent))
    return arrays


def _run_hint(folder: Path) -> str | None:
    """For weights inside a run folder: the spec and --set values they were trained with."""
    import json
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        sets = ", ".join(f"{k}={v}" for k, v in run["sets"].items()) or "no --set values"
        return (f"they were trained as {run['network']} with {sets}; `netspec compile {folder} -o MODEL.onnx` "
                "compiles the run with its own spec and values")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _described(path) -> str:
    """The file as a message names it: its path, and the network that wrote it when it says so."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="numpy") as f:
            network = (f.metadata() or {}).get("network")
    except Exception:  # a file that loaded a moment ago: its metadata is a nicety, not a requirement
        network = None
    return f"{path} (weights of {network})" if network else str(path)


def save_safetensors(arrays: dict[str, np.ndarray], path) -> None:
    """Write arrays atomically: a crash leaves either the old file or the new one."""
    from safetensors.numpy import save_file

    from .runfolder import atomic_path
    with atomic_path(Path(path)) as tmp:
        # np.ascontiguousarray would turn a 0-d counter into shape [1].
        save_file({k: np.asarray(v, order="C") for k, v in arrays.items()}, str(tmp))
