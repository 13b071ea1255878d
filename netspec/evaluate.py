"""Run a compiled ONNX model in ONNX Runtime over a dataset split: accuracy, per-class scores, confusion.

Everything that can be checked is checked before the first batch runs: the model's inputs and
outputs against the spec (and a run folder's class names), and the dataset's classes against the
model's. A run folder without a model is compiled in memory from its best weights, through the
same lowering as `netspec compile`. Every declared input and target is read by name, as `train`
reads them; each classification output gets its own report, and every loss term is computed in
numpy. Nothing here imports torch, the built-in digits included.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import DataProblem
from .predict import PREFERRED_PROVIDERS, model_metadata, session
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
    model_outputs = {o.name: o for o in sess.get_outputs()}
    for out_name in dict.fromkeys(t.prediction for t in spec.losses):
        spec_out = dict(spec.outputs)[out_name]
        got = model_outputs.get(out_name)
        if got is None:
            raise DataProblem(f"the model '{model_path}'{made_from} has no output '{out_name}', which {where} "
                              f"scores with a loss; its outputs: {', '.join(model_outputs)}")
        if not _dims_agree(got.shape, spec_out.shape):
            raise DataProblem(f"the model '{model_path}'{made_from} gives {_shown(out_name, ORT_DTYPES.get(got.type, got.type), got.shape)}, "
                              f"but {where} declares {spec_out.full()}",
                              hint="give the --set values (e.g. classes=...) the model was compiled with")


def check_run_classes(meta: dict, run: dict, run_dir: str, model_path: str) -> None:
    """A model given with a run folder must name the classes the run trained on."""
    model_classes, run_classes = meta.get("classes"), run.get("classes")
    if model_classes is None or run_classes is None or list(model_classes) == list(run_classes):
        return
    raise DataProblem(f"the model '{model_path}' names its classes {', '.join(model_classes)}, but the run "
                      f"folder '{run_dir}' trained on {', '.join(run_classes)}",
                      hint=f"compile this run (`netspec compile {run_dir} -o model.onnx`), or leave MODEL out "
                           "to evaluate the run's own weights")


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


def run_session(spec, provider: str | None = None):
    """An ONNX Runtime session on a run folder's best weights, compiled in memory as `compile RUN` does."""
    import onnxruntime as ort
    from .weights import load_safetensors
    available = ort.get_available_providers()
    if provider is not None and provider not in available:
        raise DataProblem(f"ONNX Runtime has no provider {provider!r} here", hint="available: " + ", ".join(available))
    chosen = [provider] if provider else [p for p in PREFERRED_PROVIDERS if p in available]
    path = Path(spec.run_dir) / "weights.safetensors"
    if not path.is_file():
        raise DataProblem(f"the run folder '{spec.run_dir}' has no weights.safetensors (the best epoch's weights)",
                          hint="the run ended before its first epoch: train it on (`--resume`), or give "
                               "MODEL.onnx")
    arrays = load_safetensors(path, spec.graph)
    bad = [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise DataProblem(f"the weights in '{path}' hold inf or NaN in {len(bad)} tensor(s), e.g. {bad[0]}: "
                          "every prediction would be meaningless", hint="the training diverged: retrain with a lower --lr")
    proto = spec.to_onnx(weights=arrays, metadata=spec.metadata(run=spec.run))
    if proto.ByteSize() >= 2**31:
        raise DataProblem(f"the model compiled from '{path}' is over 2 GB, more than ONNX Runtime reads from memory",
                          hint=f"compile it to a file (`netspec compile {spec.run_dir} -o m.onnx`) "
                               f"and give that: `netspec evaluate {spec.run_dir} m.onnx`")
    try:
        return ort.InferenceSession(proto.SerializeToString(), providers=chosen)
    except Exception as e:  # onnxruntime's own untyped errors
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataProblem(f"ONNX Runtime cannot load the model compiled from '{path}': {first}") from None


def _batches(ds, size: int):
    """(inputs, targets) lists of numpy arrays, `size` items at a time, in the dataset's order."""
    if hasattr(ds, "inputs"):  # Named: arrays already
        for i in range(0, len(ds), size):
            yield [x[i:i + size] for x in ds.inputs], [y[i:i + size] for y in ds.targets]
    else:  # image folders: decoded a batch at a time
        for i in range(0, len(ds), size):
            xs, ys = zip(*(ds.item(j, tensors=False) for j in range(i, min(i + size, len(ds)))))
            yield [np.stack(xs)], [np.stack(ys)]


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


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def loss_sums(op: str, params, pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(sum, count) of a loss term's per-element values, so that sum/count over a split is its mean."""
    pred = pred.astype(np.float64)
    if op in ("MSE", "L1", "BCEWithLogits"):
        y = target.astype(np.float64)
        if op == "MSE":
            values = (pred - y) ** 2
        elif op == "L1":
            values = np.abs(pred - y)
        else:  # torch: (1 - y) x + (1 + (pos_weight - 1) y) softplus(-x), softplus written not to overflow
            softplus = np.maximum(-pred, 0) + np.log1p(np.exp(-np.abs(pred)))
            pw = 1.0 if params.pos_weight is None else np.asarray(params.pos_weight, dtype=np.float64)
            values = (1 - y) * pred + (1 + (pw - 1) * y) * softplus
        return float(values.sum()), float(values.size)
    if op in CLASSIFICATION_LOSSES:
        logp = _log_softmax(pred) if op == "CrossEntropy" else pred
        t = target.astype(np.int64)
        kept = t != (-100 if params.ignore_index is None else params.ignore_index)
        picked = np.take_along_axis(logp, np.expand_dims(np.where(kept, t, 0), 1), axis=1)[:, 0]
        values = -picked
        eps = getattr(params, "label_smoothing", 0.0)
        if eps:
            values = (1 - eps) * values + eps * -logp.mean(axis=1)
        return float(values[kept].sum()), float(kept.sum())
    raise DataProblem(f"evaluate cannot compute the loss {op}", hint="file an issue: every loss op should be here")


def _heads(spec) -> list[tuple[str, str, int]]:
    """(output, target, class count) for each output a classification loss reads, in loss order."""
    outputs = dict(spec.outputs)
    found = {}
    for term in spec.losses:
        if term.op in CLASSIFICATION_LOSSES and term.prediction not in found:
            found[term.prediction] = (term.prediction, term.target, outputs[term.prediction].shape[1])
    return list(found.values())


def _load(spec, data, heads, normalize):
    """(train, val, info) as numpy arrays, read by name as `train` reads them."""
    from .data import load_dataset, load_named
    cfg = spec.train_config
    if len(spec.inputs) == 1 and len(spec.targets) == 1:
        return load_dataset(data, spec.inputs[0][1], spec.targets[0][1], cfg.val_split, cfg.seed,
                            normalize=normalize, tensors=False)
    if not spec.targets:
        raise DataProblem(f"'{spec.name}' has no loss, so there is nothing to evaluate it against",
                          hint="add a loss, e.g. `loss CrossEntropy(logits, label)`")
    n_classes = {target: width for _, target, width in heads if isinstance(width, int)}
    return load_named(data, spec.inputs, spec.targets, cfg.val_split, cfg.seed, n_classes, tensors=False)


def evaluate_onnx(spec, model_path: str | None = None, data=None, split: str = "val", provider: str | None = None,
                  batch_size: int = 256) -> dict:
    """Per classification output: accuracy (top-5 too past 5 classes), per-class scores and the
    confusion matrix; every loss term's mean. On the split `netspec train` held out (same seed),
    or its training part. Without `model_path`, `spec` must come from a run folder: its best
    weights are compiled in memory.
    """
    if model_path is None:
        if spec.run_dir is None:
            raise DataProblem("evaluate needs a model: give MODEL.onnx, or a run folder instead of the spec")
        sess, shown = run_session(spec, provider), f"{spec.run_dir} (best weights, compiled in memory)"
    else:
        sess, shown = session(model_path, [provider] if provider else None), str(model_path)
    check_model_fits(spec, sess, shown)
    meta = model_metadata(sess)
    if model_path is not None and spec.run is not None:
        check_run_classes(meta, spec.run, spec.run_dir, shown)
    heads = _heads(spec)
    meta_input = meta.get("input") or {}
    normalize = (meta_input["mean"], meta_input["std"]) if meta_input.get("mean") is not None else None
    train_ds, val_ds, info = _load(spec, data, heads, normalize)
    model_classes = meta.get("classes")
    if heads:
        check_classes(model_classes, heads[0][2], info, shown)
    ds = val_ds if split == "val" else train_ds
    if ds is None or len(ds) == 0:
        raise DataProblem("the dataset has no held-out split", hint="set val_split in the train block")

    in_names = [n for n, _ in spec.inputs]
    tgt_index = {n: i for i, (n, _) in enumerate(spec.targets)}
    out_names = list(dict.fromkeys(t.prediction for t in spec.losses))
    terms = [(t, spec.graph.nodes[name]["params"]) for t, name in zip(spec.losses, spec.graph.graph["losses"])]
    confusion = {out: np.zeros((width, width), dtype=np.int64) for out, _, width in heads}
    top5 = {out: 0 for out, _, _ in heads}
    sums = [[0.0, 0.0] for _ in terms]
    start = time.perf_counter()
    for xs, ys in _batches(ds, batch_size):
        try:
            got = dict(zip(out_names, sess.run(out_names, dict(zip(in_names, xs)))))
        except Exception as e:  # onnxruntime's own error types; the checks above should prevent it
            raise DataProblem(f"ONNX Runtime failed to run '{shown}': {str(e).splitlines()[0]}") from None
        for out, target, width in heads:
            logits, truth = got[out], ys[tgt_index[target]]
            if truth.ndim == logits.ndim:
                truth = truth.argmax(axis=1)  # one-hot targets
            truth = truth.astype(np.int64).reshape(-1)
            scores_ = np.moveaxis(logits, 1, -1).reshape(-1, width)
            np.add.at(confusion[out], (truth, scores_.argmax(axis=1)), 1)
            if width > 5:
                best5 = np.argsort(-scores_, axis=1, kind="stable")[:, :5]
                top5[out] += int((best5 == truth[:, None]).any(axis=1).sum())
        for k, (term, params) in enumerate(terms):
            s_, n_ = loss_sums(term.op, params, got[term.prediction], ys[tgt_index[term.target]])
            sums[k][0] += s_
            sums[k][1] += n_
    seconds = time.perf_counter() - start

    losses = [{"loss": t.op, "output": t.prediction, "target": t.target, "weight": t.weight,
               "value": s_ / n_ if n_ else None} for (t, _), (s_, n_) in zip(terms, sums)]
    result = {"model": shown, "network": spec.name, "split": split, "items": len(ds), "outputs": {},
              "losses": losses,
              "loss": sum(term["weight"] * term["value"] for term in losses if term["value"] is not None),
              "seconds": seconds, "provider": sess.get_providers()[0]}
    for out, _, width in heads:
        m = confusion[out]
        named = out == heads[0][0] and model_classes and len(model_classes) == width
        names = list(model_classes) if named else [str(i) for i in range(width)]
        head = {"accuracy": float(np.trace(m) / m.sum()), "labels": int(m.sum()), "classes": names,
                "per_class": scores(m, names), "confusion": m.tolist()}
        if width > 5:
            head["top5_accuracy"] = top5[out] / int(m.sum())
        result["outputs"][out] = head
    if heads:
        result.update(result["outputs"][heads[0][0]])  # the first classifier, at the top as before
    return result


# What matplotlib writes on every install (no optional backends needed).
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".eps", ".ps")


def check_plot_path(path) -> None:
    """Refuse a --plot file matplotlib cannot write, before the evaluation runs."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise DataProblem(f"cannot draw the confusion matrix as '{path}': "
                          f"{'no file type' if not suffix else f'{suffix} is not an image type'}",
                          hint=f"end the file name in one of {', '.join(PLOT_SUFFIXES)}, e.g. --plot confusion.png")


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
