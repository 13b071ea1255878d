"""The op registry: each op is one class holding everything every stage needs.

An op class, registered with `@register`, defines side by side:

- ``Params``: a pydantic model of what the author writes (types, defaults, ranges).
  Inferred quantities (in-channels, in-features) are never parameters.
- ``positional``: the parameter names accepted positionally, in order.
- ``arity``: (min, max) tensor inputs; max None means any number.
- ``shape(p, ins)``: input TensorTypes -> output TensorTypes, or ``OpError``.
- ``weights(p, ins)``: name -> WeightSpec; the names are exactly the keys of the torch
  module's ``state_dict()``, and trainable ones make the parameter count.
- ``torch(p, ins)``: an ``nn.Module``, or a `Call` of a torch function for stateless ops, or an
  `Attr` for an op whose output is its own state (torch is imported inside, so `check` never
  needs it).
- ``onnx(ctx)``: emits ONNX nodes computing ``ctx.outputs`` from ``ctx.inputs``.
- ``outputs(p)``: how many outputs (1 unless overridden).
- ``macs(p, ins, outs)``: multiply-accumulates per batch item of the products (convolution,
  linear, matmul, attention, recurrent gates), counted as torchvision and the papers do.
- ``elementwise(p, ins, outs)``: per-item element operations that the MACs leave out
  (normalization, pooling, merges, resizing); reported apart, never added to the MACs.

Loss ops set ``kind = "loss"`` and also ``target(p, pred)``: the type of the target tensor
that the dataset must provide, used when the spec does not declare it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import Annotated

from ..errors import OpError
from ..types import TensorType

if TYPE_CHECKING:  # annotations only: checking a spec never imports numpy
    import numpy as np


class Params(BaseModel):
    """Base of every op's parameter schema: unknown names are refused, values are frozen."""

    # defer_build: a schema is built when its op is first used, not for every op at import.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, defer_build=True)


def _no_bool(v):
    # pydantic's lax mode takes true/false as 1/0; in a spec that is always a mistake.
    if isinstance(v, bool):
        raise ValueError("expected a number, got a boolean")
    return v


def _whole(v):
    if isinstance(v, float):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


Int = Annotated[int, BeforeValidator(_whole), BeforeValidator(_no_bool)]
PosInt = Annotated[int, Field(ge=1), BeforeValidator(_whole), BeforeValidator(_no_bool)]
NonNegInt = Annotated[int, Field(ge=0), BeforeValidator(_whole), BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
Pair = Annotated[tuple[PosInt, PosInt], Field()]
IntOrPair = PosInt | tuple[PosInt, PosInt]
NonNegIntOrPair = NonNegInt | tuple[NonNegInt, NonNegInt]


class NoParams(Params):
    pass


@dataclass(frozen=True)
class WeightSpec:
    """One tensor of an op's state: its shape, how to initialise it, and whether it trains.

    ``init`` is one of ``("zeros",)``, ``("ones",)``, ``("uniform", bound)`` (U(-bound, bound),
    torch's default for Linear and Conv weights and biases with bound = 1/sqrt(fan_in)),
    ``("normal", std)``, ``("trunc_normal", std)`` (cut at two std), ``("constant", value)``;
    `netspec.weights` draws them with numpy when torch is absent.
    """

    shape: tuple[int, ...]
    init: tuple = ("zeros",)
    trainable: bool = True
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape else 1


class OnnxContext:
    """What an op's ONNX lowering sees; implemented by `netspec.lower_onnx`.

    Attributes: ``params``, ``in_types``, ``out_types``, ``inputs`` (ONNX value names),
    ``outputs`` (the value names this op must produce), ``opset``, ``layer`` (the layer name),
    ``fold`` (store weights in the form the graph consumes them, see `netspec.fold`).
    Methods: ``weight(local)`` -> initializer name of this layer's weight ``local``;
    ``weight_shape(local)`` -> its shape; ``derived(name, fn, sources, shape)`` -> name of a new
    initializer ``fn(*arrays of sources)``, computed when the model is written (folding only);
    ``const(array, hint)`` -> name of a new constant initializer;
    ``node(op_type, inputs, outputs=None, n_out=1, **attrs)`` -> output names (fresh
    temporaries when ``outputs`` is None); ``temp(hint)`` -> a fresh value name.
    """

    params: Any
    in_types: list[TensorType]
    out_types: list[TensorType]
    inputs: list[str]
    outputs: list[str]
    opset: int
    layer: str
    fold: bool

    def weight(self, local: str) -> str: ...
    def weight_shape(self, local: str) -> tuple[int, ...]: ...
    def derived(self, name: str, fn, sources: list[str], shape: tuple[int, ...]) -> str: ...
    def const(self, array: np.ndarray, hint: str = "const") -> str: ...
    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None,
             n_out: int = 1, **attrs) -> list[str]: ...
    def temp(self, hint: str = "t") -> str: ...


@dataclass(frozen=True)
class Call:
    """A stateless torch lowering: call `target` (a torch function) instead of a module.

    The generated forward reads ``target(*inputs, **kwargs)``, or ``target([inputs], **kwargs)``
    when ``pack`` is set (``torch.cat``, ``torch.stack``); it adds nothing to the state dict.
    """

    target: Any
    kwargs: dict = field(default_factory=dict)
    pack: bool = False


@dataclass(frozen=True)
class Attr:
    """A lowering whose output is a tensor of the op's own state (a learnable `Param`).

    `module` joins the network under the layer's name and the generated forward reads
    ``self.<layer>.<attr>`` (an fx get_attr), so the tensor is a plain attribute read, not a call.
    """

    module: Any
    attr: str = "weight"


class Op:
    """Base class of every op; see the module docstring for what a subclass defines.

    The rules every op must write itself (`shape`, `torch`, `onnx`, and `target` for a loss)
    have no default here: `register` refuses a class that lacks one.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "layer"  # "layer" or "loss"
    Params: ClassVar[type[Params]] = NoParams
    positional: ClassVar[tuple[str, ...]] = ()
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    doc: ClassVar[str] = ""

    @staticmethod
    def outputs(p) -> int:
        return 1

    @staticmethod
    def weights(p, ins: list[TensorType]) -> dict[str, WeightSpec]:
        return {}

    @staticmethod
    def macs(p, ins: list[TensorType], outs: list[TensorType]) -> int:
        return 0

    @staticmethod
    def elementwise(p, ins: list[TensorType], outs: list[TensorType]) -> int:
        return 0


REGISTRY: dict[str, type[Op]] = {}

_REQUIRED = ("shape", "torch", "onnx")


def register(cls: type[Op]) -> type[Op]:
    """Add an op class to the registry, refusing duplicates and incomplete definitions."""
    name = getattr(cls, "name", None) or cls.__name__
    cls.name = name
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is registered twice ({REGISTRY[name].__module__} and {cls.__module__})")
    for member in _REQUIRED + (("target",) if cls.kind == "loss" else ()):
        if not callable(getattr(cls, member, None)):
            raise TypeError(f"op {name!r} does not define its {member} rule")
    for pname in cls.positional:
        if pname not in cls.Params.model_fields:
            raise TypeError(f"op {name!r}: positional parameter {pname!r} is not in its Params")
    REGISTRY[name] = cls
    return cls


def get_op(name: str) -> type[Op] | None:
    return REGISTRY.get(name)


def param_count(op: type[Op], p, ins: list[TensorType]) -> int:
    return sum(w.numel for w in op.weights(p, ins).values() if w.trainable)


def check_rank(x: TensorType, ranks, what: str = "input") -> None:
    """Raise an OpError unless x's rank is one of `ranks`."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if x.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise OpError(f"expects a rank-{want} {what}, got {x.rank}-d {x}")


def static_dim(x: TensorType, axis: int, what: str) -> int:
    """The int size of `axis`, or an OpError when it is symbolic."""
    d = x.shape[axis]
    if isinstance(d, str):
        raise OpError(f"needs a fixed {what}, but dim {axis} of {x} is symbolic ({d})")
    return d


def distinct_axes(dims, x: TensorType, param: str, twice: str = "listed twice") -> list[int]:
    """`dims` as axes of x, in the order given: each in range (negative counts from the end) and once."""
    from ..types import norm_axis
    axes: list[int] = []
    for d in dims:
        a = norm_axis(d, x.rank)
        if a is None:
            raise OpError(f"{param[:-1]} {d} is out of range for the {x.rank}-d input {x}", param=param)
        if a in axes:
            raise OpError(f"{param[:-1]} {d} is {twice} (as dim {a}) in {param}={list(dims)}", param=param)
        axes.append(a)
    return axes


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)

