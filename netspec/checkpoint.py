"""The checkpoint: one safetensors file that is the truth of a run, and the files derived from it.

``checkpoint.safetensors`` holds ``model.*`` (the weights at the saved epoch), ``best.*`` (the
best epoch's weights, when that is an earlier epoch) and ``optim.*`` tensors; every other piece
of state (epoch, best, optimizer groups, scheduler, RNG, config, network) is JSON in its
metadata, so the one atomic file is always self-consistent. ``weights.safetensors``,
``last.safetensors`` and ``checkpoint.json`` are derived from it, after it, and re-derived when
a run resumes, so a kill between two writes never leaves them disagreeing for good.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
from pathlib import Path

import numpy as np

from .errors import DataProblem
from .runfolder import atomic_path, atomic_write, json_bytes

FORMAT = "netspec-checkpoint-1"
MAX_CHECKPOINT_SHOWN = 6  # tensor names quoted in a mismatch message


def cpu_state(module) -> dict:
    """Detached CPU copies of a module's state dict (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def cpu_view(module) -> dict:
    """The state dict on the CPU without a copy where it already is there (for writing at once)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def _write_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Stream tensors into `path` atomically: no serialized copy of the whole file in memory."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    with atomic_path(path) as tmp:
        try:
            save_file(_unshared(tensors), str(tmp), metadata=metadata)
        except SafetensorError as e:
            # safetensors reports a full disk in its own words ("... (os error 28)"): make it an OSError.
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


def _unshared(tensors: dict) -> dict:
    """`tensors` as safetensors takes them: a tensor whose memory another one already uses (tied
    weights) is copied, every other one is passed as it is, without a copy."""
    seen: set = set()
    out = {}
    for k, v in tensors.items():
        where = (v.device, v.untyped_storage().data_ptr())
        out[k] = v.clone() if where in seen and v.numel() else v
        seen.add(where)
    return out


def non_finite(state: dict) -> list[str]:
    """Names of the floating tensors in `state` that hold a NaN or an infinity."""
    import torch
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save(out: Path, network: str, model_state: dict, best_state: dict | None, optimizer, scheduler,
         scaler, config: dict, state: dict) -> dict:
    """Write checkpoint.safetensors (the truth) and return its metadata."""
    import torch

    tensors = {f"model.{k}": v for k, v in model_state.items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt = optimizer.state_dict()
    opt_meta: dict = {}
    for idx, entry in opt["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                opt_meta.setdefault(str(idx), {})[k] = v
    meta = {
        "format": FORMAT,
        "network": network,
        "epoch": state["epoch"],
        "best": state["best"],  # {"epoch", "value", "metrics"} or None
        "bad_epochs": state["bad_epochs"],
        "data_position": {"epoch": state["epoch"], "batch": 0, "sampler_seed": config["seed"]},
        "optimizer": {"param_groups": opt["param_groups"], "state": opt_meta},
        "scheduler": _jsonable(scheduler.state_dict()),
        "scaler": _jsonable(scaler.state_dict()),
        "rng": _rng_state(),
        "config": config,
    }
    text = json.dumps(meta, allow_nan=False)
    _write_tensors(out / "checkpoint.safetensors", tensors, {"netspec": text})
    return meta


def derive(out: Path, meta: dict, tensors: dict, keep: str) -> None:
    """Write weights.safetensors, last.safetensors and checkpoint.json from the checkpoint's content."""
    last = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or last
    best_epoch = (meta.get("best") or {}).get("epoch", meta["epoch"])
    kept, kept_epoch = (best, best_epoch) if keep == "best" else (last, meta["epoch"])
    info = {"format": "pt", "network": meta.get("network", ""), "epoch": str(kept_epoch)}
    if keep == "best":
        _write_tensors(out / "last.safetensors", last, {**info, "epoch": str(meta["epoch"])})
    _write_tensors(out / "weights.safetensors", kept, info)
    atomic_write(out / "checkpoint.json", json_bytes(meta))


def read(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a checkpoint file, or a DataProblem saying why it cannot be used."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        raw = path.read_bytes()
        tensors = load(raw)
        # The safetensors header: 8 bytes of length, then JSON holding our metadata.
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        text = (header.get("__metadata__") or {}).get("netspec")
        if text is None:
            raise ValueError("it has no netspec metadata (is it a weights file, not a checkpoint?)")
        meta = json.loads(text)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        _check_meta(meta)
    except (OSError, SafetensorError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataProblem(f"cannot resume from '{path}': {e}",
                          hint="drop --resume (with --force) to start a new run") from None
    return meta, tensors


def _is_int(v, lo: int, hi: float = float("inf")) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_meta(meta: dict) -> None:
    """Refuse (ValueError) metadata that is not what `save` writes: an edited file must not resume."""
    expected = {"network": str, "optimizer": dict, "scheduler": dict, "rng": dict, "config": dict,
                "data_position": dict}
    for key, kind in expected.items():
        if key not in meta:
            raise ValueError(f"its metadata lacks '{key}'")
        if not isinstance(meta[key], kind):
            raise ValueError(f"its metadata's '{key}' is not a {kind.__name__}")
    if not _is_int(meta.get("epoch"), 1):
        raise ValueError(f"its epoch {meta.get('epoch')!r} is not a whole number >= 1")
    epoch = meta["epoch"]
    if not _is_int(meta.get("bad_epochs"), 0, epoch):
        raise ValueError(f"its bad_epochs {meta.get('bad_epochs')!r} is not a whole number in 0..{epoch}")
    if meta.get("scaler") is not None and not isinstance(meta["scaler"], dict):
        raise ValueError("its 'scaler' entry is not a dict")
    if "best" not in meta:
        raise ValueError("its metadata lacks 'best'")
    best = meta["best"]
    if best is not None:
        if not isinstance(best, dict) or not _is_int(best.get("epoch"), 1, epoch) \
                or isinstance(best.get("value"), bool) or not isinstance(best.get("value"), (int, float)) \
                or not isinstance(best.get("metrics", {}), dict):
            raise ValueError(f"its 'best' entry {json.dumps(best)[:80]} is not {{epoch: 1..{epoch}, value: a number, "
                             "metrics: {...}}")
    opt = meta["optimizer"]
    if not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list) \
            or not all(isinstance(g, dict) for g in opt["param_groups"]):
        raise ValueError("its optimizer entry lacks a state dict and a list of param_groups")


def restore(path: Path, meta: dict, tensors: dict, model, optimizer, scheduler, scaler, network: str):
    """Load the checkpoint into the run's objects; the new config's hyperparameters win over the saved ones.

    Returns the best epoch's weights (or None when they are the model's own).
    """
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    _check_fits(path, meta, model_state, model.state_dict(), network)
    # Hyperparameters (lr, momentum, weight decay...) come from this run's settings, so that
    # `--resume --lr X` really trains with X; the optimizer's buffers come from the checkpoint.
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        model.load_state_dict(model_state)
        opt_state: dict = {}
        for key, v in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = v
        for idx, entry in meta["optimizer"]["state"].items():
            opt_state.setdefault(int(idx), {}).update(entry)
        groups = meta["optimizer"]["param_groups"]
        if len(groups) != len(fresh):
            raise ValueError(f"{len(groups)} parameter groups, this run has {len(fresh)}")
        groups = [{**g, **f} for g, f in zip(groups, fresh)]
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        scheduler.load_state_dict(meta["scheduler"])
        scheduler.base_lrs = [f["initial_lr"] for f in fresh]
        for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * fn(scheduler.last_epoch)
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        if scaler.is_enabled() and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        _set_rng_state(meta["rng"])
        int(meta["epoch"]), int(meta["bad_epochs"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        what = f"its metadata lacks {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise DataProblem(f"cannot resume from '{path}': {what}",
                          hint="the checkpoint was damaged or edited; drop --resume (with --force) "
                               "to start a new run") from None
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return best or None


def _check_fits(path: Path, meta: dict, saved: dict, wanted: dict, network: str) -> None:
    missing = sorted(wanted.keys() - saved.keys())
    extra = sorted(saved.keys() - wanted.keys())
    wrong = [f"{k} is {list(saved[k].shape)}, this network's is {list(wanted[k].shape)}"
             for k in sorted(wanted.keys() & saved.keys()) if tuple(saved[k].shape) != tuple(wanted[k].shape)]
    if not (missing or extra or wrong):
        return
    theirs = meta.get("network")
    head = (f"the checkpoint '{path}' was written for {theirs}, not {network}" if theirs and theirs != network
            else f"the checkpoint '{path}' does not fit this {network} (another --set, or an edited spec?)")
    parts = []
    if missing:
        parts.append(f"it lacks {len(missing)} tensor(s) of {network}: {', '.join(missing[:MAX_CHECKPOINT_SHOWN])}")
    if extra:
        parts.append(f"it has {len(extra)} tensor(s) {network} does not: {', '.join(extra[:MAX_CHECKPOINT_SHOWN])}")
    if wrong:
        parts.append("; ".join(wrong[:MAX_CHECKPOINT_SHOWN]))
    raise DataProblem(head + ": " + "; ".join(parts),
                      hint="resume with the spec and --set values that wrote it, or give another --out")


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _b64(t) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _rng_state() -> dict:
    import torch
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    def tensor(s):
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([tensor(s) for s in saved])


__all__ = ["FORMAT", "cpu_state", "cpu_view", "derive", "non_finite", "read", "restore", "save"]
