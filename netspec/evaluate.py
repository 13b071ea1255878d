"""Run a compiled ONNX model in ONNX Runtime over a dataset split and measure its accuracy."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import DataProblem
from .spec import CLASSIFICATION_LOSSES


def session(model_path: str, provider: str | None = None):
    """An ONNX Runtime session on `provider`, or on the best one this machine has."""
    import onnxruntime as ort
    if not Path(model_path).is_file():
        raise DataProblem(f"ONNX model '{model_path}' does not exist", hint="write one with `netspec compile`")
    available = ort.get_available_providers()
    if provider is not None and provider not in available:
        raise DataProblem(f"ONNX Runtime has no provider '{provider}' here",
                          hint="available: " + ", ".join(available))
    preferred = [provider] if provider else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                             if p in available]
    try:
        return ort.InferenceSession(model_path, providers=preferred)
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable models
        raise DataProblem(f"ONNX Runtime cannot load '{model_path}': {str(e).splitlines()[0]}") from None


def _arrays(ds):
    """(inputs, labels) of a dataset as numpy arrays."""
    tensors = getattr(ds, "tensors", None)
    if tensors is not None:
        return tensors[0].numpy(), tensors[1].numpy()
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return np.stack([np.asarray(x) for x in xs]), np.asarray([np.asarray(y) for y in ys])


def evaluate_onnx(spec, model_path: str, data=None, split: str = "val", provider: str | None = None,
                  batch_size: int = 256) -> dict:
    """Accuracy of the ONNX model on the split that `netspec train` held out (same seed)."""
    from .data import load_dataset
    if len(spec.inputs) != 1 or len(spec.targets) != 1:
        raise DataProblem("evaluation reads one input and one target")
    cfg = spec.train_config
    out_name = spec.classifier_output
    if out_name is None:
        raise DataProblem(f"'{spec.name}' has no classification loss ({' or '.join(CLASSIFICATION_LOSSES)}),"
                          " so accuracy is not defined for it")
    train_ds, val_ds, _ = load_dataset(data, spec.inputs[0][1], spec.targets[0][1], cfg.val_split, cfg.seed)
    ds = val_ds if split == "val" else train_ds
    if ds is None or len(ds) == 0:
        raise DataProblem("the dataset has no held-out split", hint="set val_split in the train block")
    sess = session(model_path, provider)
    in_name = sess.get_inputs()[0].name
    x, y = _arrays(ds)
    start = time.perf_counter()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = sess.run([out_name], {in_name: x[i:i + batch_size]})[0]
        correct += int((logits.argmax(axis=1) == y[i:i + batch_size]).sum())
    return {"items": len(x), "accuracy": correct / len(x), "seconds": time.perf_counter() - start,
            "provider": sess.get_providers()[0]}
