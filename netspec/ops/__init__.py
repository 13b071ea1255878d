"""All ops, registered on import; `REGISTRY` maps an op's name to its class.

Every module in this package except `registry` defines ops, so adding a file is enough.
Ops import numpy and torch inside the rules that need them (ONNX lowering, torch modules):
`netspec check` imports this package and must not pay for either.
"""

import importlib
import pkgutil

from .registry import REGISTRY, Attr, Call, Op, WeightSpec, get_op, param_count  # noqa: F401

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod != "registry" and not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["REGISTRY", "Attr", "Call", "Op", "WeightSpec", "get_op", "param_count"]
