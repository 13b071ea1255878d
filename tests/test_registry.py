"""Every registered op is complete and has a parity case; the registry refuses bad definitions."""

from __future__ import annotations

import importlib

import pytest

from netspec.ops import REGISTRY
from netspec.ops.registry import Op, Params, PosInt, register

PARITY_MODULES = ("tests.test_parity_layers", "tests.test_parity_misc", "tests.test_parity_transformer",
                  "tests.test_parity_tensor_ops")


def covered_ops() -> set[str]:
    """Op names with a parity case in any parity test module that exists yet."""
    names: set[str] = set()
    for mod_name in PARITY_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:
                raise  # the module exists but is broken: that must fail, not hide its ops
            continue
        for attr in ("CASES", "EXTRA_CASES"):
            names |= {key.split(":")[0] for key in getattr(mod, attr, {})}
    return names


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_is_complete(name):
    op = REGISTRY[name]
    for member in ("shape", "torch", "onnx") + (("target",) if op.kind == "loss" else ()):
        assert callable(getattr(op, member, None)), f"{name} lacks its {member} rule"
        assert not hasattr(Op, member), f"Op must not give {member} a default that hides a missing rule"
    assert op.doc, f"{name} has no doc line"
    for pname in op.positional:
        assert pname in op.Params.model_fields


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_has_parity_case(name):
    assert name in covered_ops(), f"{name} has no parity case in {' or '.join(PARITY_MODULES)}"


def test_register_refuses_duplicates_and_incomplete_ops():
    existing = next(iter(REGISTRY))
    with pytest.raises(ValueError, match="registered twice"):
        register(type(existing, (REGISTRY[existing],), {"name": existing}))

    class NoOnnx(Op):
        @staticmethod
        def shape(p, ins):
            return ins

        @staticmethod
        def torch(p, ins):
            return None

    with pytest.raises(TypeError, match="onnx"):
        register(NoOnnx)

    class BadPositional(NoOnnx):
        class Params(Params):
            size: PosInt = 1

        positional = ("sizes",)

        @staticmethod
        def onnx(ctx):
            pass

    with pytest.raises(TypeError, match="sizes"):
        register(BadPositional)
    assert "NoOnnx" not in REGISTRY and "BadPositional" not in REGISTRY
