"""Run a compiled ONNX model in ONNX Runtime over a dataset split: accuracy, per-class scores, confusion.

Everything that can be checked is checked before the first batch runs: the model's inputs and
outputs against the spec, and the dataset's classes against the model's.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import DataProblem
from .predict import model_metadata, session
from .spec import CLASSIFICATION_LOSSES

ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
              "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16"}


def _shown(name: str, dtype: str, shape) -> str:
    return f"{name}: {dtype}[{','.join(str(d) for d in shape)}]"


def _dims_agree(model_shape, spec_shape) -> bool:
    if len(model_shape) != len(spec_shape):
        return False
    # A symbolic dim on either side (the batch) agrees with anything; fixed dims must be equal.
    return all(not isinstance(m, int) or not isinstance(s, int) or m == s for m, s in zip(model_shape, spec_shape))


def check_model_fits(spec, sess, model_path: str) -> None:
    """Refuse a model whose inputs or classifier output differ from what the spec declares."""
    where = f"the spec's network {spec.name} ({spec.path})"
    meta = model_metadata(sess)
    other = meta.get("network")
    made_from = f" (made from network {other})" if other and other != spec.name else ""
    model_inputs = {i.name: i for i in sess.get_inputs()}
    for name, t in spec.inputs:
        got = model_inputs.get(name)
        if got is None:
            raise DataProblem(f"the model '{model_path}'{made_from} has no input '{name}', which {where} declares; "
                              f"its inputs: {', '.join(model_inputs) or 'none'}",
                              hint="evaluate the model with the spec (and --set values) it was compiled from")
        dtype = ORT_DTYPES.get(got.type, got.type)
        if dtype != t.dtype or not _dims_agree(got.shape, t.shape):
            raise DataProblem(f"the model '{model_path}'{made_from} takes {_shown(name, dtype, got.shape)}, "
                              f"but {where} declares {t.full()}",
                              hint="evaluate the model with the spec (and --set values) it was compiled from")
    out_name = spec.classifier_output
    spec_out = dict(spec.outputs)[out_name]
    model_outputs = {o.name: o for o in sess.get_outputs()}
    got = model_outputs.get(out_name)
    if got is None:
        raise DataProblem(f"the model '{model_path}'{made_from} has no output '{out_name}', which {where} "
                          f"classifies with; its outputs: {', '.join(model_outputs)}")
    if not _dims_agree(got.shape, spec_out.shape):
        raise DataProblem(f"the model '{model_path}'{made_from} gives {_shown(out_name, ORT_DTYPES.get(got.type, got.type), got.shape)}, "
                          f"but {where} declares {spec_out.full()}",
                          hint="give the --set values (e.g. classes=...) the model was compiled with")


def check_classes(model_classes: list[str] | None, width: int, info: dict, model_path: str) -> None:
    """Refuse a dataset whose classes are not the model's: names when both have them, else counts."""
    data_classes = info.get("classes")
    source = info.get("source")
    if data_classes is None:
        return  # regression or one-hot targets: nothing to compare
    # Folders name their classes; .npz, .csv and the digits number them ("0", "1", ...).
    data_named = not all(c.isdigit() for c in data_classes)
    if data_named and model_classes is not None and list(data_classes) != list(model_classes):
        raise DataProblem(f"the dataset {source} has classes {', '.join(data_classes)}, but the model "
                          f"'{model_path}' was trained on {', '.join(model_classes)}",
                          hint="class folders must be the training ones, with the same names")
    if len(data_classes) > width or (data_named and len(data_classes) != width):
        raise DataProblem(f"the dataset {source} has {len(data_classes)} classes, but the model "
                          f"'{model_path}' scores {width}",
                          hint="evaluate on data of the model's classes, or compile with --set classes=...")


def _arrays(ds):
    """(inputs, labels) of a dataset as numpy arrays."""
    tensors = getattr(ds, "tensors", None)
    if tensors is not None:
        return tensors[0].numpy(), tensors[1].numpy()
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return np.stack([np.asarray(x) for x in xs]), np.asarray([np.asarray(y) for y in ys])


def scores(confusion: np.ndarray, names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true labels)."""
    out = []
    for i, name in enumerate(names):
        tp = int(confusion[i, i])
        predicted, actual = int(confusion[:, i].sum()), int(confusion[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return out


def evaluate_onnx(spec, model_path: str, data=None, split: str = "val", provider: str | None = None,
                  batch_size: int = 256) -> dict:
    """Accuracy (top-5 too past 5 classes), per-class scores and the confusion matrix on a split.

    The split is the one `netspec train` held out (same seed), or its training part.
    """
    from .data import load_dataset
    if len(spec.inputs) != 1 or len(spec.targets) != 1:
        raise DataProblem("evaluation reads one input and one target")
    out_name = spec.classifier_output
    if out_name is None:
        raise DataProblem(f"'{spec.name}' has no classification loss ({' or '.join(CLASSIFICATION_LOSSES)}),"
                          " so accuracy is not defined for it")
    sess = session(model_path, [provider] if provider else None)
    check_model_fits(spec, sess, model_path)
    width = dict(spec.outputs)[out_name].shape[-1]
    model_classes = model_metadata(sess).get("classes")
    cfg = spec.train_config
    meta_input = model_metadata(sess).get("input") or {}
    normalize = (meta_input["mean"], meta_input["std"]) if meta_input.get("mean") is not None else None
    train_ds, val_ds, info = load_dataset(data, spec.inputs[0][1], spec.targets[0][1], cfg.val_split, cfg.seed,
                                          normalize=normalize)
    check_classes(model_classes, width, info, model_path)
    ds = val_ds if split == "val" else train_ds
    if ds is None or len(ds) == 0:
        raise DataProblem("the dataset has no held-out split", hint="set val_split in the train block")
    in_name = spec.inputs[0][0]
    x, y = _arrays(ds)
    if y.ndim == 2:
        y = y.argmax(axis=1)  # one-hot targets
    start = time.perf_counter()
    confusion = np.zeros((width, width), dtype=np.int64)
    top5 = 0
    for i in range(0, len(x), batch_size):
        try:
            logits = sess.run([out_name], {in_name: x[i:i + batch_size]})[0]
        except Exception as e:  # onnxruntime's own error types; the checks above should prevent it
            raise DataProblem(f"ONNX Runtime failed to run '{model_path}': {str(e).splitlines()[0]}") from None
        truth = y[i:i + batch_size].astype(np.int64)
        np.add.at(confusion, (truth, logits.argmax(axis=1)), 1)
        if width > 5:
            best5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
            top5 += int((best5 == truth[:, None]).any(axis=1).sum())
    names = list(model_classes) if model_classes else [str(i) for i in range(width)]
    result = {"model": str(model_path), "network": spec.name, "split": split, "items": len(x),
              "accuracy": float(np.trace(confusion) / len(x)), "classes": names,
              "per_class": scores(confusion, names), "confusion": confusion.tolist(),
              "seconds": time.perf_counter() - start, "provider": sess.get_providers()[0]}
    if width > 5:
        result["top5_accuracy"] = top5 / len(x)
    return result


def plot_confusion(result: dict, path) -> None:
    """Write the confusion matrix as an image (rows: true class, columns: predicted)."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    m = np.asarray(result["confusion"])
    names = result["classes"]
    size = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 6 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['network']}: accuracy {result['accuracy']:.4f} ({result['split']} split)")
    if len(names) <= 30:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > m.max() / 2 else "black")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
