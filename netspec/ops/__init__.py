"""All ops, registered on import; `REGISTRY` maps an op's name to its class."""

from . import activation, conv  # noqa: F401  (registration happens on import)
from .registry import REGISTRY, Op, WeightSpec, get_op, param_count  # noqa: F401
