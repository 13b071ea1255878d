"""What an ONNX file from netspec says about itself: the `metadata_props` contract.

Every model `netspec compile` writes carries these keys (docs/deploy.md is the reference; keys
are only ever added, never renamed, and every JSON value may grow fields):

- ``netspec.network``: the network's name;
- ``netspec.spec_sha256``: SHA-256 of the spec file's bytes (never its path on the build machine);
- ``netspec.spec_file``: the spec's file name, without its folder;
- ``netspec.set``: JSON object of the ``--set`` values (strings as typed), ``{}`` when none;
- ``netspec.version``: the netspec version that wrote the file;
- ``netspec.classes``: JSON list of class names in label order, or ``null`` when unknown;
- ``netspec.input``: JSON object, the input contract (what a caller does to an image):
  ``name``, ``dtype``, ``shape`` (``"N"`` for the batch), ``layout`` (``"NCHW"`` for images,
  null for other inputs, which are fed as shaped), ``channels``, ``height``, ``width`` (null when not an image),
  ``value_range`` ([0, 1]: pixels divided by 255), ``mean`` and ``std`` (per channel, to apply as
  ``(x - mean) / std`` after scaling; null when the caller applies none), ``normalized_in_model``
  (null, or the ``{"mean", "std"}`` that the network's own `Normalize` applies);
- ``netspec.output``: JSON object: ``name`` of the classifier output, ``scores`` (``"logits"``);
- ``netspec.variant``: present on variants only: ``float16``, ``int8``, ``int8-static``.

This module reads a run folder's ``run.json`` and writes the keys; `netspec.predict` reads them
back with nothing but ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import DataProblem
from .runfolder import RUN_JSON as RUN_RECORD

PREFIX = "netspec."
# Images come off disk as 8-bit pixels scaled to [0, 1] (netspec.data.ImageFolder).
PIXEL_RANGE = [0.0, 1.0]


def run_record(folder) -> dict | None:
    """The `run.json` that `netspec train` wrote in a run folder, or None when there is none.

    Keys read here: ``classes`` (names in label order, or null) and ``input`` (the input
    contract the run was trained with: layout, channels, height, width, value_range, mean, std).
    """
    from .runfolder import read_run
    path = Path(folder) / RUN_RECORD
    if not Path(folder).is_dir() or not path.is_file():
        return None
    record = read_run(Path(folder))
    classes = record.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise DataProblem(f"the run record '{path}': 'classes' must be a list of names or null")
    if record.get("input") is not None and not isinstance(record["input"], dict):
        raise DataProblem(f"the run record '{path}': 'input' must be an object or null")
    return record


def spec_sha256(path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None  # a spec given as text, not a file


def _in_model_normalization(spec, input_name: str) -> dict | None:
    """The mean/std of a `Normalize` that reads the input directly, if the network has one."""
    g = spec.graph
    for _, reader in g.out_edges(input_name):
        node = g.nodes[reader]
        if node.get("op") == "Normalize":
            return {"mean": list(node["params"].mean), "std": list(node["params"].std)}
    return None


def input_contract(spec, record: dict | None = None) -> dict:
    """What a caller must feed the network's (first) input, from the spec and the run's record."""
    name, t = spec.inputs[0]
    shape = list(t.shape)
    image = len(shape) == 4 and isinstance(shape[1], int) and shape[1] in (1, 3)
    contract = {
        "name": name, "dtype": t.dtype, "shape": shape,
        "layout": "NCHW" if image else None,
        "channels": shape[1] if image else None,
        "height": shape[2] if image else None,
        "width": shape[3] if image else None,
        "value_range": PIXEL_RANGE if image else None,
        "mean": None, "std": None,
        "normalized_in_model": _in_model_normalization(spec, name),
    }
    recorded = (record or {}).get("input") or {}
    # The run knows how its loader prepared the data (value range, normalization outside the
    # network); the spec knows the shape. Both agree on the shape or training would have failed.
    for key in ("layout", "value_range", "mean", "std"):
        if recorded.get(key) is not None:
            contract[key] = recorded[key]
    return contract


def model_metadata(spec, sets: dict | None = None, record: dict | None = None,
                   classes: list[str] | None = None) -> dict[str, str]:
    """The `metadata_props` of the float32 model, as strings."""
    from . import __version__
    classes = classes if classes is not None else (record or {}).get("classes")
    out_name = spec.classifier_output or spec.outputs[0][0]
    out_shape = dict(spec.outputs)[out_name].shape
    width = out_shape[-1] if out_shape else None
    if classes is not None and isinstance(width, int) and len(classes) != width:
        raise DataProblem(f"{len(classes)} class names ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) "
                          f"for the output '{out_name}' of {width} classes",
                          hint="compile with the --set classes=... the run was trained with")
    props = {
        "network": spec.name,
        "spec_sha256": spec_sha256(spec.path) or "",
        "spec_file": Path(str(spec.path)).name,
        "set": json.dumps({k: str(v) for k, v in (sets or {}).items()}, sort_keys=True),
        "version": __version__,
        "classes": json.dumps(classes),
        "output": json.dumps({"name": out_name, "scores": "logits"}),
    }
    if spec.inputs:
        props["input"] = json.dumps(input_contract(spec, record))
    return {PREFIX + k: v for k, v in props.items()}


def read(props: dict[str, str]) -> dict:
    """The netspec keys of a model's metadata, JSON values decoded; unknown keys are kept as text."""
    out = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        short = key[len(PREFIX):]
        if short in ("set", "classes", "input", "output"):
            try:
                out[short] = json.loads(value)
            except ValueError:
                raise DataProblem(f"the model's metadata '{key}' is not valid JSON: {value[:80]!r}") from None
        else:
            out[short] = value
    return out
