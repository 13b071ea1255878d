"""Reading a state dict from a file, without running pickled code.

`.pth`/`.pt` files go through `torch.load(weights_only=True)`; `.safetensors` files are read as
they are; a folder is a netspec run folder. The arrays come back as numpy, floats as float32.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DataProblem


def read_state_dict(source: str) -> tuple[dict[str, np.ndarray], bool, str]:
    """The source's tensors as numpy arrays, whether their order is the module order, and a label.

    A folder is a netspec run folder (its weights.safetensors); `.safetensors` is read as is;
    anything else goes through `torch.load(weights_only=True)`, which never runs pickled code.
    """
    path = Path(source)
    if path.is_dir():
        inner = path / "weights.safetensors"
        if not inner.is_file():
            raise DataProblem(f"{source} is a folder without weights.safetensors",
                              hint="give a run folder of `netspec train`, a .safetensors or a .pth file")
        path = inner
    if not path.is_file():
        raise DataProblem(f"weights file {source} does not exist")
    if path.suffix == ".safetensors":
        # safetensors sorts its tensors by name, so the module order is gone.
        return _read_safetensors(path), False, str(path)
    return _read_torch(path), True, str(path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.torch import load_file
        return {k: _numpy(t) for k, t in load_file(str(path)).items()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise DataProblem(f"cannot read weights file {path}: {e}", hint="is it a safetensors file?") from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    import pickle
    import warnings

    import torch
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a file it then refuses: the refusal says it all.
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found:
            why = re.search(r"Unpickler error:\s*(.+)", str(e))
            why = why.group(1).strip() if why else str(e).strip()[:200]
            if why.startswith("Unsupported operand"):  # torch's words for bytes that are no pickle it reads
                why = "it is not a file that torch.save wrote"
            raise DataProblem(f"cannot read {path} as a PyTorch state dict: {why}",
                              hint="netspec reads .pth/.pt state dicts, .safetensors files and run folders") from None
        raise DataProblem(f"{path} holds a pickled object ({found.group(1)}), not only tensors; netspec loads .pth files "
                          "with torch.load(weights_only=True) and never runs pickled code",
                          hint="save the weights alone: torch.save(model.state_dict(), 'model.pth')") from None
    except Exception as e:
        raise DataProblem(f"cannot read {path} as a PyTorch state dict: {type(e).__name__}: {e}",
                          hint="netspec reads .pth/.pt state dicts, .safetensors files and run folders") from None
    state = _state_dict_in(obj)
    if state is None:
        raise DataProblem(f"{path} holds no state dict (a dict of tensor names to tensors)",
                          hint="save it with torch.save(model.state_dict(), 'model.pth')")
    return {k: _numpy(t) for k, t in state.items()}


def _state_dict_in(obj):
    """The dict of tensors in a loaded file: the file itself, or a training checkpoint's entry."""
    import torch
    if not isinstance(obj, dict):
        return None
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) == len(obj):
        return obj
    for key in ("state_dict", "model_state_dict", "model", "net", "module"):
        inner = _state_dict_in(obj.get(key))
        if inner is not None:
            return inner
    return None


def _numpy(t) -> np.ndarray:
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.float()  # bfloat16 and float16 have no exact numpy twin, float32 holds both
    return t.numpy()  # shares the loaded tensor's memory: a big file is not held twice
