"""Deployment variants of a compiled model: ORT-optimized, float16 and int8 (dynamic, or static
with calibration data: `netspec.static_int8`).

Each variant is made from the float32 ModelProto that `lower_onnx` emitted, written and checked in
a staging folder beside the output, and moved into place only once every asked-for variant (and
the float32 model itself) has been written: a failure leaves older files as they were.
Nothing here imports torch; onnxruntime is imported only for the variants that need it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import DataProblem
from .file_kinds import check_output
from .lower_onnx import PROTO_LIMIT, save, side_file_by_default


@dataclass(frozen=True)
class Variant:
    tag: str  # the file name's infix: OUT.onnx -> OUT.<tag>.onnx
    describe: str  # what `netspec compile` prints about it


VARIANTS = {
    "optimize": Variant("opt", "ONNX Runtime graph-optimized for the CPU provider"),
    "float16": Variant("fp16", "float16 weights and compute, float32 inputs and outputs"),
    "int8": Variant("int8", "int8 weights, dynamically quantized MatMul and Conv"),
}
# `--int8 --calibrate DATA` writes the same file name, statically quantized.
STATIC_INT8 = Variant("int8", "int8 weights and activations, statically quantized (QDQ) on calibration data")


def describe(kind: str, calibrated: bool = False) -> str:
    return STATIC_INT8.describe if kind == "int8" and calibrated else VARIANTS[kind].describe


FP16_MAX = float(np.finfo(np.float16).max)

# Inputs whose schema says tensor(float) whatever the op's data type T is: they stay float32.
FLOAT32_SLOTS = {"Resize": (2,), "Upsample": (1,)}


def variant_path(out, kind: str) -> Path:
    """`model.onnx` -> `model.<tag>.onnx`, beside it."""
    out = Path(out)
    stem = out.name[:-len(".onnx")] if out.name.endswith(".onnx") else out.name
    return out.with_name(f"{stem}.{VARIANTS[kind].tag}.onnx")


def files_size(path) -> int:
    """Bytes of a model file and of its external-data side file, if it has one."""
    path = Path(path)
    side = path.with_name(path.name + ".data")
    return sum(p.stat().st_size for p in (path, side) if p.is_file())


# --- float16 -----------------------------------------------------------------------------------

def _to_fp16_array(array: np.ndarray) -> np.ndarray:
    # Saturate instead of overflowing to inf; real infinities (pooling pads) stay infinite.
    finite = np.isfinite(array)
    return np.where(finite, np.clip(array, -FP16_MAX, FP16_MAX), array).astype(np.float16)


def _fp16_tensor(t: onnx.TensorProto, name: str | None = None) -> onnx.TensorProto:
    return numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(t)), name or t.name)


def _is_float(vi: onnx.ValueInfoProto) -> bool:
    return vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == TensorProto.FLOAT


def _rename_uses(nodes, old: str, new: str) -> None:
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _fp16_attributes(node: onnx.NodeProto) -> None:
    """Make the float32 that a node creates (Cast targets, constants) float16."""
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
            attr.i = TensorProto.FLOAT16
        elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT \
                and node.op_type in ("Constant", "ConstantOfShape"):
            attr.t.CopyFrom(_fp16_tensor(attr.t))
    if node.op_type == "Constant":
        for attr in list(node.attribute):
            if attr.name in ("value_float", "value_floats"):
                values = np.array(attr.f if attr.name == "value_float" else list(attr.floats), np.float32)
                node.attribute.remove(attr)
                half = numpy_helper.from_array(_to_fp16_array(values))
                node.attribute.append(helper.make_attribute("value", half))


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy computing in float16, with Casts at float32 inputs and outputs so it is a drop-in.

    Ops that ONNX Runtime's CPU provider has no float16 kernel for still run there: ORT casts
    around them itself. On CUDA everything runs in float16.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    nodes = list(g.node)
    for node in nodes:
        _fp16_attributes(node)

    # Inputs that must stay float32: initializers used only there keep their type, anything
    # else (computed in float16, or a weight shared with float16 compute) is cast back.
    fp32_uses, other_uses = set(), set()
    for node in nodes:
        slots = FLOAT32_SLOTS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            (fp32_uses if i in slots else other_uses).add(name)
    inits = {t.name for t in g.initializer}
    keep32 = (fp32_uses & inits) - other_uses
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and t.name not in keep32:
            t.CopyFrom(_fp16_tensor(t))
    taken = {n for node in nodes for n in (*node.input, *node.output)} | set(inits) \
        | {vi.name for vi in (*g.input, *g.output)}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    casts_in, casts_out = [], []
    for vi in g.input:
        if _is_float(vi):
            inner = fresh(f"{vi.name}/float16")
            _rename_uses(nodes, vi.name, inner)
            casts_in.append(helper.make_node("Cast", [vi.name], [inner], name=fresh(f"{inner}/Cast"),
                                             to=TensorProto.FLOAT16))
    for vi in g.output:
        if _is_float(vi):
            inner = fresh(f"{vi.name}/float16")
            _rename_uses(nodes, vi.name, inner)
            for node in nodes:
                for i, name in enumerate(node.output):
                    if name == vi.name:
                        node.output[i] = inner
            casts_out.append(helper.make_node("Cast", [inner], [vi.name], name=fresh(f"{vi.name}/Cast"),
                                              to=TensorProto.FLOAT))
    # A float32-only slot fed from float16 compute gets a Cast right before its node, which
    # keeps the node list in topological order.
    order = list(casts_in)
    for node in nodes:
        for i in FLOAT32_SLOTS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i] and node.input[i] not in keep32:
                cast = fresh(f"{node.input[i]}/float32")
                order.append(helper.make_node("Cast", [node.input[i]], [cast], name=fresh(f"{cast}/Cast"),
                                              to=TensorProto.FLOAT))
                node.input[i] = cast
        order.append(node)
    del g.node[:]
    g.node.extend(order + casts_out)
    for vi in g.value_info:
        if _is_float(vi):
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    _mark(m, "float16")
    return m


# --- int8 --------------------------------------------------------------------------------------

def _matmul_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where constant weights reach MatMul directly, as dynamic quantization wants them.

    ORT's dynamic quantizer skips Gemm and any MatMul whose weight is computed, even from a
    constant; netspec emits both for Linear and attention. Gemm(x, W, b, transB=1) becomes
    MatMul(x, W^T) + b, and a Transpose or Split of initializers becomes initializers.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    outputs = {vi.name for vi in g.output}
    new_nodes, new_inits = [], []
    for node in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        folded = None
        if node.op_type == "Transpose" and node.input[0] in inits:
            folded = [np.transpose(numpy_helper.to_array(inits[node.input[0]]), attrs.get("perm"))]
        elif node.op_type == "Split" and node.input[0] in inits and (len(node.input) < 2 or node.input[1] in inits):
            # Attention's packed q/k/v weight is split before its Transposes and MatMuls.
            w = numpy_helper.to_array(inits[node.input[0]])
            axis = attrs.get("axis", 0)
            if len(node.input) > 1 and node.input[1]:
                cuts = np.cumsum(numpy_helper.to_array(inits[node.input[1]]))[:-1]
            elif w.shape[axis] % len(node.output) == 0:
                cuts = len(node.output)
            else:
                cuts = None
            folded = None if cuts is None else np.split(w, cuts, axis=axis)
        if folded is not None and not outputs & set(node.output):
            for name, array in zip(node.output, folded):
                inits[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
                new_inits.append(inits[name])
            continue
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type == "Gemm" and plain and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if attrs.get("transB", 0):
                w = np.ascontiguousarray(w.T)
            weight = f"{node.input[1]}/matmul"
            new_inits.append(numpy_helper.from_array(w, weight))
            has_bias = len(node.input) > 2 and node.input[2]
            product = f"{node.output[0]}/matmul" if has_bias else node.output[0]
            new_nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=node.name))
            if has_bias:
                new_nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                                  name=f"{node.name}/bias"))
            continue
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    used = {n for node in g.node for n in node.input} | outputs
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return m


def quantize_int8(model: onnx.ModelProto, path: Path) -> None:
    """Write a dynamically quantized copy: int8 weights, activations quantized at run time.

    MatMul weights are signed, the fast case of ORT's CPU MatMulInteger. Conv weights are
    unsigned: ORT's CPU ConvInteger runs s8 weights too, but 2.6x slower than u8 on ResNet-50.
    """
    prepared = _matmul_form(model)
    big = _approx_size(prepared) >= PROTO_LIMIT
    ops = {n.op_type for n in prepared.graph.node}
    if not ops & {"MatMul", "Conv"}:
        raise DataProblem("the network has no MatMul, Linear or Conv layer, so an int8 variant would "
                          "be the float32 model", hint="leave out --int8")
    # The quantizer logs advice to the root logger ("consider pre-processing"); it is not the user's.
    logging.disable(logging.WARNING)
    try:
        _quantize(prepared, path, ops, big)
    finally:
        logging.disable(logging.NOTSET)
    # The quantizer writes to `path` itself; mark the variant in place.
    _mark_file(path, "int8")


def _mark_file(path: Path, kind: str) -> None:
    m = onnx.load(str(path), load_external_data=False)
    _mark(m, kind)
    onnx.save_model(m, str(path))


def _quantize(prepared: onnx.ModelProto, path: Path, ops: set[str], big: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    staged = path
    if "MatMul" in ops:
        if "Conv" in ops:
            staged = path.with_name(path.name + ".matmul")
        quantize_dynamic(prepared, staged, op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8, use_external_data_format=big)
    if "Conv" in ops:
        source = onnx.load(str(staged)) if staged != path else prepared
        quantize_dynamic(source, path, op_types_to_quantize=["Conv"],
                         weight_type=QuantType.QUInt8, use_external_data_format=big)
    if staged != path:
        _remove_model(staged)


def _approx_size(model: onnx.ModelProto) -> int:
    return sum(t.ByteSize() for t in model.graph.initializer)


# --- ORT optimization --------------------------------------------------------------------------

def ort_optimize(source: Path, path: Path, external: bool) -> None:
    """Let ONNX Runtime apply its extended graph optimizations for the CPU provider and save the result.

    `external` puts the tensors of 1 KiB or more in `path.data`, as `lower_onnx.save` would.
    """
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(path)
    if external:
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                    path.name + ".data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])


# --- staging -----------------------------------------------------------------------------------

def _mark(model: onnx.ModelProto, kind: str) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props["netspec.variant"] = kind
    helper.set_model_props(model, props)


def _remove_model(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        p.unlink(missing_ok=True)


def _check_loads(path: Path) -> None:
    """Load the variant as a deployment would, so a broken file never replaces a good one."""
    import onnxruntime as ort
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _build(model: onnx.ModelProto, kind: str, name: str, staging: Path, fp32: Path | None,
           calibration=None, external_data: bool | None = None) -> Path:
    # The final file name already: a side file is referenced by name from inside the model.
    path = staging / name
    if kind == "float16":
        save(to_float16(model), path, external_data=external_data, check=True)
    elif kind == "int8" and calibration is not None:
        from .static_int8 import quantize_static_int8
        # Like the dynamic int8 variant, one file unless past protobuf's limit.
        quantize_static_int8(fp32, path, calibration, big=files_size(fp32) >= PROTO_LIMIT)
        _mark_file(path, "int8-static")
        onnx.checker.check_model(str(path), full_check=True)
    elif kind == "int8":
        quantize_int8(model, path)
        onnx.checker.check_model(str(path), full_check=True)
    elif kind == "optimize":
        size = _approx_size(model)
        ort_optimize(fp32, path, external_data if external_data is not None else side_file_by_default(size, size))
        # Fused ops live in the com.microsoft domain, which onnx's checker does not know.
    _check_loads(path)
    return path


def staging_prefix(out: Path) -> str:
    """Hidden temporaries beside `out` carry the writer's PID, so a later run can tell stale ones."""
    return f".{out.name}.{os.getpid()}."


def sweep_stale(out) -> list[Path]:
    """Remove the staging folders that a killed `netspec compile` of `out` left beside it.

    A folder is stale when the PID in its name is no process on this machine (a live compile of
    the same output keeps its own). Returns what was removed.
    """
    out = Path(out)
    removed = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    head = f".{out.name}."
    for entry in entries:
        if not entry.name.startswith(head) or not entry.is_dir():
            continue
        pid = entry.name[len(head):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process, or no such pid at all
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def staged(model: onnx.ModelProto, out, kinds, calibration=None, external_data: bool | None = None):
    """Build the variants in a folder beside `out`; move them into place when the block succeeds.

    Yields a list of (kind, final path), filled in on success. The block writes `out` itself.
    With `calibration` (a `static_int8.Calibration`), the int8 variant is static. `external_data`
    is `lower_onnx.save`'s, for the float16 and optimized variants (the int8 ones are one file
    below 2 GiB).
    """
    out = Path(out)
    kinds = [k for k in VARIANTS if k in set(kinds)]
    written: list[tuple[str, Path]] = []
    if not kinds:
        yield written
        return
    for kind in kinds:  # before the (slow) builds: a variant's path may be a FIFO or a device
        final = variant_path(out, kind)
        check_output(final)
        check_output(final.with_name(final.name + ".data"))
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(out) + "variants.", dir=out.parent))
    try:
        fp32 = None
        if "optimize" in kinds or ("int8" in kinds and calibration is not None):
            fp32 = staging / "source.onnx"
            # One file where protobuf allows: ONNX Runtime's quantization pre-processing copies the
            # model elsewhere without its side file.
            save(model, fp32, external_data=None if _approx_size(model) >= PROTO_LIMIT else False)
        built = {}
        for kind in kinds:
            try:
                built[kind] = _build(model, kind, variant_path(out, kind).name, staging, fp32, calibration,
                                     external_data)
            except (DataProblem, OSError):
                raise  # an OSError is the disk's (full, read-only): `netspec compile` names the path
            except Exception as e:  # onnxruntime and its quantizer raise untyped errors
                raise DataProblem(f"could not make the {kind} variant: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}",
                                  hint="the float32 model was not written either; rerun without "
                                       f"--{kind} to get it") from None
        yield written
        for kind, path in built.items():
            final = variant_path(out, kind)
            side = path.with_name(path.name + ".data")
            # The side file lands first, so a model never points at a missing or stale one.
            if side.exists():
                os.replace(side, final.with_name(final.name + ".data"))
            os.replace(path, final)
            written.append((kind, final))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
