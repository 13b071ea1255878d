"""Every op lowers correctly at each opset `netspec compile --opset` offers from 17 on.

Ops are written against opset 17; the emitter rewrites what later opsets changed (reduction
axes as inputs, Split's output count). Below 17, an op that cannot be expressed is a located
error, tested in tests/test_cli.py's neighbours: here only the numbers are compared.
"""

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.ops import REGISTRY
from tests.parity import assert_parity
from tests.test_registry import PARITY_MODULES


def _cases() -> dict:
    cases = {}
    for name in PARITY_MODULES:
        for op, strategy in importlib.import_module(name).CASES.items():
            cases.setdefault(op.split(":")[0], strategy)
    return cases


CASES = _cases()


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("op_name", sorted(REGISTRY))
@settings(max_examples=3, deadline=None, derandomize=True)
@given(data=st.data())
def test_parity_at_later_opsets(op_name, opset, data):
    params, in_types, *options = data.draw(CASES[op_name])
    assert_parity(op_name, params, in_types, seed=data.draw(st.integers(0, 2**16), label="seed"), batch=2,
                  opset=opset, **(options[0] if options else {}))
