"""The Python API: `load` a spec file into a checked `Spec`, then lower it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import networkx as nx

from .errors import NetspecError
from .graph import type_of
from .types import TensorType


CLASSIFICATION_LOSSES = ("CrossEntropy", "NLL")


@dataclass
class Spec:
    """One checked network: its graph, and the ways to lower it."""

    graph: nx.DiGraph

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
    def classifier_output(self) -> str | None:
        """The output that the first classification loss reads: where accuracy is measured."""
        g = self.graph
        for name in g.graph["losses"]:
            node = g.nodes[name]
            if node["op"] in CLASSIFICATION_LOSSES:
                return next(n for n, ref, _ in g.graph["outputs"] if ref == node["args"][0])
        return None

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

    def to_torch(self):
        """A `torch.fx.GraphModule` whose forward takes the inputs in declared order."""
        from .lower_torch import to_module
        return to_module(self.graph)

    def loss_module(self):
        """An `nn.Module` mapping (outputs dict, targets dict) to (total loss, per-term dict)."""
        from .lower_torch import loss_module
        return loss_module(self.graph)

    def to_onnx(self, module=None, weights: dict | None = None, opset: int | None = None, seed: int = 0,
                fold: bool = True):
        """An ONNX ModelProto with `module`'s weights, the given arrays, or fresh ones.

        `fold` stores weights as the inference graph consumes them (BatchNorm folded into the
        Conv before it, Linear weights transposed); False keeps the initializers one for one
        with the state dict, and BatchNormalization nodes.
        """
        from . import lower_onnx
        from .weights import init_weights, state_dict_arrays
        if module is not None:
            weights = state_dict_arrays(module)
        if weights is None:
            weights = init_weights(self.graph, seed=seed)
        return lower_onnx.to_onnx(self.graph, weights, opset=opset or lower_onnx.DEFAULT_OPSET, fold=fold)


def split_target(target: str) -> tuple[str, str | None]:
    """`models/resnet.net:ResNet50` -> (path, network name)."""
    path, sep, name = str(target).rpartition(":")
    if sep and name and "/" not in name and "\\" not in name and path and Path(path).suffix == ".net":
        return path, name
    return str(target), None


def load(target: str | Path, network: str | None = None, params: dict | None = None) -> Spec:
    """Parse, elaborate and check a `.net` file (optionally `PATH:Network`) into a Spec.

    `params` overrides the network's parameters: {"classes": 10} or {"depths": "[2, 2, 2, 2]"};
    a string is read as a spec expression.
    """
    from .elaborate import elaborate_file
    from .infer import infer
    path, name = split_target(str(target))
    texts = {k: v if isinstance(v, str) else _spec_literal(v) for k, v in (params or {}).items()}
    g = elaborate_file(path, network or name, texts)
    infer(g)
    return Spec(g)


def _spec_literal(v) -> str:
    """A Python value written as a spec expression."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_spec_literal(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v + '"'
    return repr(v)


__all__ = ["Spec", "load", "NetspecError"]
