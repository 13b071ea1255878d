"""What a run checks and decides before its first step: the data against the spec, frozen layers,
initial weights, and the one-paragraph statement of the effective settings.

Every mismatch between the data and the network is a user error here, naming both sides and
the fix, so that none reaches torch and comes back as an internal error.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from .data import load_dataset, load_named, show_classes
from .errors import DataProblem, ParamProblem, did_you_mean
from .spec import CLASSIFICATION_LOSSES


def outputs_of_classes(spec) -> dict[str, tuple[str, int, object]]:
    """target name -> (output name, class count, output span) for each classification loss."""
    g = spec.graph
    by_ref = {ref: (name, span) for name, ref, span in g.graph["outputs"]}
    found = {}
    for loss in g.graph["losses"]:
        node = g.nodes[loss]
        if node["op"] not in CLASSIFICATION_LOSSES:
            continue
        pred, target = node["args"][0], node["args"][1].node
        out = by_ref.get(pred)
        shape = g.nodes[pred.node]["types"][pred.port].shape
        if out is None or len(shape) < 2 or not isinstance(shape[1], int):
            continue
        found.setdefault(target, (out[0], shape[1], out[1]))
    return found


def load_data(spec, data, cfg, classes_of: dict):
    """(train, val, info) for the spec's inputs and targets, labels bounded by the class counts."""
    n_classes = {t: c for t, (_, c, _) in classes_of.items()}
    if len(spec.inputs) == 1 and len(spec.targets) == 1:
        (_, in_type), (tgt_name, tgt_type) = spec.inputs[0], spec.targets[0]
        return load_dataset(data, in_type, tgt_type, cfg.val_split, cfg.seed,
                            n_classes=n_classes.get(tgt_name))
    if not spec.targets:
        raise DataProblem(f"'{spec.name}' has no loss, so there is nothing to train",
                          hint="add a loss, e.g. `loss CrossEntropy(logits, label)`")
    return load_named(data, spec.inputs, spec.targets, cfg.val_split, cfg.seed, n_classes)


def check_classes(spec, data, info: dict, classes_of: dict, sets: dict, train_ds=None) -> None:
    """The data's classes against the classifier's outputs: a mismatch names both and the fix."""
    names = info.get("classes")
    if not classes_of or names is None or data is None or not Path(str(data)).is_dir():
        _check_single_class(info)
        _check_single_label(info, classes_of, train_ds)
        return
    out, width, span = next(iter(classes_of.values()))
    k = len(names)
    if k == 1:
        raise DataProblem(f"'{data}' has one class ({names[0]}); a classifier needs at least two",
                          hint="add a folder of images for each other class")
    if k != width:
        fix = _classes_fix(spec, sets, out, k)
        raise DataProblem(f"{data} has {k} classes ({show_classes(names)}) but {out} has {width} outputs"
                          + (f": add `--set classes={k}`" if fix else ""), span,
                          hint=None if fix else f"give the layer that makes {out} {k} outputs")


def _check_single_class(info: dict) -> None:
    names = info.get("classes")
    if names is not None and len(names) == 1:
        raise DataProblem(f"{info['source']} has one class; a classifier needs at least two")


def _check_single_label(info: dict, classes_of: dict, train_ds) -> None:
    """Labels read from a file that are all one class: a classifier cannot learn from them."""
    tensors = getattr(train_ds, "tensors", None)
    if not classes_of or tensors is None or len(tensors) != 2:
        return
    y = tensors[1]
    if y.dim() == 1 and not y.is_floating_point() and len(y) and bool((y == y[0]).all()):
        raise DataProblem(f"{info['source']}: every training label is {int(y[0])}, so the data has one class; "
                          "a classifier needs at least two", hint="check the label column")


def _classes_fix(spec, sets: dict, out: str, k: int) -> bool:
    """Whether `--set classes=K` really gives the output K classes (tried, not guessed)."""
    from .errors import NetspecError
    from .spec import load
    try:
        trial = load(spec.path, spec.name, {**sets, "classes": str(k)})
    except (NetspecError, OSError):
        return False
    return any(n == out and t.rank >= 2 and t.shape[1] == k for n, t in trial.outputs)


def apply_freeze(model, patterns) -> tuple[list, list]:
    """Fix the parameters of layers matching `patterns`; return (trainable params, frozen BatchNorms)."""
    import torch

    if not patterns:
        return [p for p in model.parameters()], []
    layers = sorted({k.rsplit(".", 1)[0] for k, _ in model.named_parameters()})
    matched = set()
    for pattern in patterns:
        hits = {name for name in layers if fnmatch.fnmatchcase(name, pattern)
                or fnmatch.fnmatchcase(name, pattern + ".*")}
        if not hits:
            raise ParamProblem(f"freeze: the pattern {pattern!r} matches no layer with parameters",
                               hint=did_you_mean(pattern, layers) or f"layers: {', '.join(layers[:12])}"
                               + (" ..." if len(layers) > 12 else ""))
        matched |= hits
    trainable = []
    for key, p in model.named_parameters():
        if key.rsplit(".", 1)[0] in matched:
            p.requires_grad_(False)
        else:
            trainable.append(p)
    if not trainable:
        raise ParamProblem(f"freeze: the patterns {list(patterns)} freeze every layer; nothing would train",
                           hint="freeze the backbone only, e.g. freeze = [\"features.*\"]")
    bns = [m for name, m in model.named_modules()
           if name in matched and isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    return trainable, bns


def init_from(model, spec, source: str, say) -> dict:
    """Load `source` (a run folder, a safetensors file, or what netspec.transfer reads) into `model`."""
    import numpy as np
    import torch

    from .transfer import init_arrays

    arrays, fresh = init_arrays(spec, str(source), say)
    state = model.state_dict()
    for key, a in arrays.items():
        if key not in state:
            raise DataProblem(f"--init: '{key}' is not a tensor of {spec.name}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DataProblem(f"--init {source}: the tensor '{key}' holds NaN or infinity",
                              hint="these weights are broken (a diverged run?); use others")
        state[key] = torch.as_tensor(np.asarray(a)).to(state[key].dtype)
    model.load_state_dict(state)
    if fresh:
        say(f"--init: {len(fresh)} layer(s) keep their fresh initialisation (shapes differ or absent "
            f"in the source): {', '.join(fresh[:8])}{' ...' if len(fresh) > 8 else ''}")
    return {"source": str(source), "loaded": len(arrays), "fresh": list(fresh)}


def input_record(spec, data) -> dict:
    """run.json's "input": how a later user (or predict.py) must prepare an item for the network."""
    name, t = spec.inputs[0]
    item = t.shape[1:]
    image = len(item) == 3 and all(isinstance(d, int) for d in item) and item[0] in (1, 3)
    from_images = data is None or Path(str(data)).is_dir()
    return {"name": name, "dtype": t.dtype, "shape": list(t.shape),
            "layout": "NCHW" if image else None,
            "channels": item[0] if image else None,
            "height": item[1] if image else None,
            "width": item[2] if image else None,
            "value_range": [0, 1] if from_images else None,
            # The loader does not normalise: a Normalize layer in the spec does, inside the model.
            "mean": None, "std": None}


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def describe_settings(spec, cfg, device, info: dict, n_params: int, n_train: int, out,
                      threads_chosen: bool = False) -> str:
    """The effective settings, once, at the start of a run."""
    def call(obj) -> str:
        d = obj.model_dump()
        name = d.pop("name")
        default = type(obj)().model_dump() if name != "MultiStep" else {}
        args = ", ".join(f"{k}={v}" for k, v in d.items() if default.get(k) != v or k == "lr")
        return f"{name}({args})"

    lines = [f"training {spec.name} into {out}",
             f"  optimizer {call(cfg.optimizer)}, schedule {call(cfg.schedule)}, {cfg.epochs} epoch{'' if cfg.epochs == 1 else 's'}, "
             f"batch {cfg.batch_size}, seed {cfg.seed}, device {device}"
             + (f" ({_threads()} thread{'s' if _threads() != 1 else ''}"
                f"{', chosen from the model size and the free cores' if threads_chosen else ''})"
                if device.type == "cpu" else ""),
             f"  data {info['source']}: {info['train_size']:,} train, {info['val_size']:,} val"
             + (f", {len(info['classes'])} classes ({show_classes(info['classes'])})" if info.get("classes") else ""),
             f"  parameters {n_params:,}" + (f" ({n_train:,} train, {n_params - n_train:,} frozen)"
                                             if n_train != n_params else "")
             + f"; keep {cfg.keep} by {cfg.monitor}"
             + (f"; early stopping after {cfg.early_stopping_patience} epochs without improvement"
                if cfg.early_stopping_patience else "")]
    if cfg.augment:
        lines.append(f"  augment {cfg.augment.describe()} (training split only)")
    if cfg.freeze:
        lines.append(f"  freeze {', '.join(cfg.freeze)} (BatchNorm of frozen layers in eval mode)")
    return "\n".join(lines)


__all__ = ["apply_freeze", "check_classes", "describe_settings", "init_from", "input_record", "load_data",
           "outputs_of_classes"]
