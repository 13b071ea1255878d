"""The parity harness: one op lowered to torch and to ONNX must agree on the same weights and inputs."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

from netspec import graph as G
from netspec.infer import infer
from netspec.lower_onnx import to_onnx
from netspec.lower_torch import loss_module, to_module
from netspec.ops import get_op
from netspec.types import FLOAT_DTYPES, TensorType
from netspec.weights import state_dict_arrays, weight_specs

NP_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
             "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}

# (name, TensorType, validated params) -> (low, high exclusive) for an integer input or target.
IntRange = Callable[[str, TensorType, object], tuple[int, int]]


def one_op_graph(op_name: str, params: dict, in_types: list[TensorType]):
    """A graph of inputs x0, x1, ... feeding one op; a loss op also gets a `target`."""
    op = get_op(op_name)
    p = op.Params(**params)
    g = G.new_graph("parity", "<parity>")
    refs = [G.add_input(g, f"x{i}", t) for i, t in enumerate(in_types)]
    if op.kind == "loss":
        G.add_output(g, "pred", refs[0])
        tgt = G.add_target(g, "target", None)
        G.add_op(g, "loss", op_name, p, [refs[0], tgt], kind="loss")
    else:
        G.add_op(g, "op", op_name, p, refs)
        for port in range(op.outputs(p)):
            G.add_output(g, f"y{port}", G.Ref("op", port))
    infer(g)
    return g, op, p


def concrete(t: TensorType, batch: int) -> tuple[int, ...]:
    return tuple(batch if isinstance(d, str) else d for d in t.shape)


def random_value(name: str, t: TensorType, p, rng: np.random.Generator, batch: int,
                 int_range: IntRange | tuple[int, int] | None) -> np.ndarray:
    shape = concrete(t, batch)
    if t.dtype in FLOAT_DTYPES:
        return rng.normal(size=shape).astype(NP_DTYPES[t.dtype])
    if t.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    lo, hi = int_range(name, t, p) if callable(int_range) else (int_range or (0, 2))
    return rng.integers(lo, hi, size=shape).astype(NP_DTYPES[t.dtype])


def _randomize_constant_state(module, rng: np.random.Generator) -> None:
    """Replace all-zeros/all-ones state (biases, norm affines, running stats) with random values.

    Freshly built norms are the identity in eval mode, which would let a wrong lowering pass.
    """
    with torch.no_grad():
        for key, t in module.state_dict().items():
            if not t.is_floating_point() or t.numel() == 0:
                continue
            if bool((t == t.flatten()[0]).all()):
                if "var" in key:
                    new = rng.uniform(0.5, 1.5, size=tuple(t.shape))
                else:
                    new = rng.normal(0.0, 0.5, size=tuple(t.shape))
                t.copy_(torch.from_numpy(new).to(t.dtype))


def ort_session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _opset(opset: int | None) -> dict:
    return {} if opset is None else {"opset": opset}


def assert_parity(op_name: str, params: dict, in_types: list[TensorType], seed: int = 0, *,
               int_range: IntRange | tuple[int, int] | None = None, batch: int = 2,
               rtol: float = 1e-3, atol: float = 1e-5, opset: int | None = None) -> None:
    """Check an op's torch and ONNX lowerings against each other and against `infer`."""
    import onnx
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    g, op, p = one_op_graph(op_name, params, in_types)

    module = to_module(g).eval()
    _randomize_constant_state(module, rng)
    sd = module.state_dict()
    specs = weight_specs(g)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: s.shape for k, s in specs.items()}, \
        f"{op_name}: weights() disagrees with the torch module's state dict"

    feeds = {f"x{i}": random_value(f"x{i}", t, p, rng, batch, int_range) for i, t in enumerate(in_types)}
    if op.kind == "loss":
        t_type = g.nodes["target"]["types"][0]
        feeds["target"] = random_value("target", t_type, p, rng, batch, int_range)
        losses = loss_module(g).eval()
        with torch.no_grad():
            total, _ = losses({"pred": torch.from_numpy(feeds["x0"])},
                              {"target": torch.from_numpy(feeds["target"])})
        expected = [total.numpy()]
        inferred = [g.nodes["loss"]["types"][0]]
        model = to_onnx(g, state_dict_arrays(module), include_losses=True, **_opset(opset))
        out_names = ["loss"]
    else:
        with torch.no_grad():
            got = module(*[torch.from_numpy(feeds[f"x{i}"]) for i in range(len(in_types))])
        got = list(got) if isinstance(got, tuple) else [got]
        expected = [t.detach().numpy() for t in got]  # a Param output is the parameter itself
        inferred = g.nodes["op"]["types"]
        model = to_onnx(g, state_dict_arrays(module), **_opset(opset))
        out_names = [f"y{i}" for i in range(len(expected))]

    for t, real in zip(inferred, expected, strict=True):
        assert concrete(t, batch) == tuple(real.shape), \
            f"{op_name}: infer says {t}, torch gives {list(real.shape)} (batch {batch})"
        assert NP_DTYPES[t.dtype] == real.dtype, f"{op_name}: infer says {t.dtype}, torch gives {real.dtype}"

    onnx.checker.check_model(model, full_check=True)
    onnx_feeds = {k: v for k, v in feeds.items() if k in {i.name for i in model.graph.input}}
    results = ort_session(model).run(out_names, onnx_feeds)
    for name, ours, ref in zip(out_names, results, expected, strict=True):
        assert ours.shape == ref.shape, f"{op_name} {name}: ONNX shape {ours.shape}, torch {ref.shape}"
        np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol, err_msg=f"{op_name} {name}")
