"""The Python API: `load` a spec file into a checked `Spec`, then lower it."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .digraph import DiGraph
from .errors import DataProblem, NetspecError, ParamProblem, UsageProblem
from .gcpause import cycle_collection_paused
from .graph import type_of
from .types import TensorType


CLASSIFICATION_LOSSES = ("CrossEntropy", "NLL")


@dataclass(frozen=True)
class Loss:
    """One loss term: the op, the output it reads (or a tensor's name), its target and weight."""

    op: str
    prediction: str
    target: str
    weight: float


@dataclass
class Spec:
    """One checked network: its graph, and the ways to lower it."""

    graph: DiGraph
    # The parameter overrides it was loaded with (`--set`), as spec expressions: models record them.
    params: dict = field(default_factory=dict)
    # When loaded from a run folder (`netspec check RUN`): the folder and its run.json.
    run_dir: str | None = None
    run: dict | None = None

    @property
    def name(self) -> str:
        return self.graph.graph["name"]

    @property
    def path(self) -> str:
        return self.graph.graph["path"]

    @property
    def inputs(self) -> list[tuple[str, TensorType]]:
        return [(n, self.graph.nodes[n]["types"][0]) for n in self.graph.graph["inputs"]]

    @property
    def outputs(self) -> list[tuple[str, TensorType]]:
        return [(n, type_of(self.graph, ref)) for n, ref, _ in self.graph.graph["outputs"]]

    @property
    def targets(self) -> list[tuple[str, TensorType]]:
        return [(n, self.graph.nodes[n]["types"][0]) for n in self.graph.graph["targets"]]

    @property
    def losses(self) -> list[Loss]:
        """The loss terms, each reading a declared output (named as such) and a target."""
        g = self.graph
        output_of = {ref: name for name, ref, _ in g.graph["outputs"]}
        terms = []
        for name in g.graph["losses"]:
            node = g.nodes[name]
            prediction, target = node["args"][0], node["args"][1]
            terms.append(Loss(node["op"], output_of.get(prediction, prediction.node), target.node,
                              node["weight"]))
        return terms

    @property
    def classifier_output(self) -> str | None:
        """The output that the first classification loss reads: where accuracy is measured."""
        return next((t.prediction for t in self.losses if t.op in CLASSIFICATION_LOSSES), None)

    @property
    def train_config(self):
        """The validated `train` block (defaults when the spec has none)."""
        from .trainconfig import TrainConfig
        return self.graph.graph["train"] or TrainConfig()

    @cached_property
    def rows(self) -> list[dict]:
        from .infer import summary
        return summary(self.graph)

    @property
    def parameters(self) -> int:
        return sum(r["parameters"] for r in self.rows)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per item in conv, linear, matmul and attention (torchvision's count)."""
        return sum(r["macs"] for r in self.rows)

    @property
    def elementwise(self) -> int:
        """Element-wise work per item (norms, pooling, merges, resizing), apart from the MACs."""
        return sum(r["elementwise"] for r in self.rows)

    def to_json(self, layers: bool = True) -> dict:
        """What `netspec check --json` prints: the network, its tensors, losses, totals and layers."""
        def tensor(name, t):
            return {"name": name, "dtype": t.dtype, "shape": list(t.shape)}

        out = {
            "network": self.name,
            "file": self.path,
            "parameters": self.parameters,
            "macs": self.macs,
            "elementwise": self.elementwise,
            "inputs": [tensor(n, t) for n, t in self.inputs],
            "outputs": [tensor(n, t) for n, t in self.outputs],
            "targets": [tensor(n, t) for n, t in self.targets],
            "losses": [{"op": t.op, "prediction": t.prediction, "target": t.target, "weight": t.weight}
                       for t in self.losses],
            "train": self.train_config.model_dump(mode="json"),
        }
        if layers:
            out["layers"] = self.rows
        return out

    def to_torch(self):
        """A `torch.fx.GraphModule` whose forward takes the inputs in declared order."""
        from .lower_torch import to_module
        return to_module(self.graph)

    def loss_module(self):
        """An `nn.Module` mapping (outputs dict, targets dict) to (total loss, per-term dict)."""
        from .lower_torch import loss_module
        return loss_module(self.graph)

    def metadata(self, classes: list[str] | None = None, run: dict | None = None) -> dict[str, str]:
        """The `metadata_props` its ONNX models carry (the contract in `netspec.metadata`).

        `run` is a run folder's record (`netspec.metadata.run_record`): class names and how the
        run fed its input; `classes` overrides the record's names.
        """
        from .metadata import model_metadata
        return model_metadata(self, self.params, run, classes)

    def to_onnx(self, module=None, weights: dict | None = None, opset: int | None = None, seed: int = 0,
                metadata: dict[str, str] | None = None, fold: bool = True):
        """An ONNX ModelProto with `module`'s weights, the given arrays, or fresh ones.

        `metadata` defaults to `self.metadata()`: the network, spec hash, --set values and input
        contract, without class names; pass `self.metadata(classes=[...])` to name them.
        `fold` stores weights as the inference graph consumes them (BatchNorm folded into the
        Conv before it, Linear weights transposed); False keeps the initializers one for one
        with the state dict, and BatchNormalization nodes.
        """
        return self.lower(module, weights, opset, seed, metadata, fold).to_proto()

    def lower(self, module=None, weights: dict | None = None, opset: int | None = None, seed: int = 0,
              metadata: dict[str, str] | None = None, fold: bool = True):
        """`to_onnx`'s model with its tensors still arrays (`lower_onnx.LoweredModel`), for
        `lower_onnx.save` to write one at a time without a second copy of the weights."""
        from . import lower_onnx
        from .weights import init_weights, state_dict_arrays
        if module is not None:
            weights = state_dict_arrays(module)
        if weights is None:
            weights = init_weights(self.graph, seed=seed)
        return lower_onnx.lower(self.graph, weights, opset=opset or lower_onnx.DEFAULT_OPSET,
                                metadata=self.metadata() if metadata is None else metadata, fold=fold)


def split_target(target: str) -> tuple[str, str | None]:
    """`models/resnet.net:ResNet50` -> (path, network name)."""
    path, sep, name = str(target).rpartition(":")
    if sep and name and "/" not in name and "\\" not in name and path and Path(path).suffix == ".net":
        return path, name
    return str(target), None


def load_run(folder: str | Path, network: str | None = None, params: dict | None = None) -> Spec:
    """The Spec a run folder trained: its spec, with the --set values and settings of the run.

    `Spec.run` is its run.json and `Spec.run_dir` the folder. A network or parameters that
    contradict the run are a UsageProblem: the folder fixes them.
    """
    import hashlib

    from .runfolder import RUN_JSON, SPEC_COPY, read_run
    from .trainconfig import TrainConfig
    folder = Path(folder)
    if not (folder / RUN_JSON).is_file():
        raise DataProblem(f"'{folder}' is a folder without {RUN_JSON}, so it is not a run folder",
                          hint="give a .net file, or a folder that `netspec train` wrote")
    run = read_run(folder)
    if network is not None and network != run["network"]:
        raise UsageProblem(f"--network {network} conflicts with the run folder '{folder}', which "
                           f"trained {run['network']}")
    if params:
        shown = ", ".join(f"{k}={v}" for k, v in run["sets"].items()) or "none"
        raise UsageProblem(f"a run folder fixes its --set values ({shown}); give the spec file to change them")
    record = run["spec"]
    original = Path(record.get("path") or "")
    path = folder / SPEC_COPY
    if original.is_file() and hashlib.sha256(original.read_bytes()).hexdigest() == record.get("sha256"):
        path = original  # the file as trained: its imports resolve where they were written
    if not path.is_file():
        raise DataProblem(f"'{folder}' lacks {SPEC_COPY}, and {original} changed or is gone since the run",
                          hint="retrain, or restore the spec file the run used")
    s = load(str(path), run["network"], {k: str(v) for k, v in run["sets"].items()})
    try:
        s.graph.graph["train"] = TrainConfig.model_validate(run["train"])
    except ValueError as e:
        raise DataProblem(f"'{folder / RUN_JSON}' holds invalid train settings: {str(e).splitlines()[0]}") from None
    s.run, s.run_dir = run, str(folder)
    return s


def load(target: str | Path, network: str | None = None, params: dict | None = None) -> Spec:
    """Parse, elaborate and check a `.net` file (optionally `PATH:Network`) into a Spec.

    A run folder that `netspec train` wrote stands for its spec (see `load_run`).

    `params` overrides the network's parameters: {"classes": 10} or {"depths": [2, 2, 2, 2]};
    a string is read as a spec expression ("[2, 2, 2, 2]", '"relu"'), as `--set` writes it.
    """
    from .elaborate import Override, constant, elaborate_file
    from .infer import infer
    if Path(target).is_dir():
        return load_run(target, network, params)
    path, name = split_target(str(target))
    if network and name and network != name:
        raise UsageProblem(f"two networks selected: '{name}' in {target} and '{network}' with --network",
                           hint="name the network once")
    overrides, texts = {}, {}
    for key, v in (params or {}).items():
        origin = f"--set {key}={v}" if isinstance(v, str) else f"params[{key!r}]={v!r}"
        value = constant(key, v, origin) if isinstance(v, str) else _spec_value(v, origin)
        overrides[key] = Override(value, origin)
        texts[key] = v if isinstance(v, str) else _spec_literal(value)
    with cycle_collection_paused():
        g = elaborate_file(path, network or name, overrides)
        infer(g)
    return Spec(g, texts)


def _spec_literal(v) -> str:
    """A value written as a spec expression, as a model's metadata records an override."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(_spec_literal(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v + '"'
    return repr(v)


def _spec_value(v, origin: str):
    """A Python value as the spec's compile-time value (lists become tuples)."""
    if isinstance(v, (list, tuple)):
        return tuple(_spec_value(x, origin) for x in v)
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, numbers.Integral):  # numpy integers and the like
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    raise ParamProblem(f"{origin}: a parameter is a number, boolean, string or list, "
                       f"not {type(v).__name__}")


__all__ = ["Spec", "load", "load_run", "NetspecError"]
