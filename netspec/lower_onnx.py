"""Lower a checked graph and its weights to an ONNX ModelProto, emitted directly with onnx.helper."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import DataProblem, OpError, ShapeProblem
from .graph import Ref, layers, type_of
from .ops import get_op
from .types import TensorType

DEFAULT_OPSET = 17
# Protobuf refuses to serialize a message of 2 GiB or more; past this, tensors go to a side file.
PROTO_LIMIT = 2**31 - 1

ONNX_DTYPES = {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
    "float64": TensorProto.DOUBLE, "int64": TensorProto.INT64, "int32": TensorProto.INT32,
    "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL,
}


def value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    # A symbolic dim (N) becomes a dim_param, which is what makes the batch axis dynamic.
    return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], list(t.shape))


class _Emitter:
    """The model under construction: nodes, initializers and the names already taken."""

    def __init__(self, weights: dict[str, np.ndarray], opset: int):
        self.weights = weights
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        # Arrays, not TensorProtos: each becomes a proto once, inside the finished model, since
        # every copy of a big model's weights costs as much as the rest of the compile.
        self.inits: dict[str, np.ndarray] = {}
        self.used: set[str] = set()  # value names (inputs, outputs, initializers, temporaries)
        self.node_names: set[str] = set()  # a separate namespace in ONNX

    def fresh(self, base: str, taken: set[str] | None = None) -> str:
        taken = self.used if taken is None else taken
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    def fresh_node(self, base: str) -> str:
        return self.fresh(base, self.node_names)


class Context:
    """One layer's view of the emitter; implements `netspec.ops.registry.OnnxContext`."""

    def __init__(self, em: _Emitter, layer: str, params, in_types, out_types, inputs, outputs, doc: str = ""):
        self._em = em
        self.doc = doc  # where the layer was written: every node it emits says so
        self.layer = layer
        self.params = params
        self.in_types = list(in_types)
        self.out_types = list(out_types)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.opset = em.opset
        self._counter = 0

    def _next(self, hint: str) -> str:
        while True:
            name = f"{self.layer}/{hint}_{self._counter}"
            self._counter += 1
            if name not in self._em.used:
                self._em.used.add(name)
                return name

    def weight(self, local: str) -> str:
        key = f"{self.layer}.{local}"
        if key not in self._em.inits:
            if key not in self._em.weights:
                raise DataProblem(f"the weights lack '{key}', which layer '{self.layer}' needs",
                                  hint="were they made for another spec?")
            self._em.used.add(key)
            self._em.inits[key] = np.asarray(self._em.weights[key])
        return key

    def const(self, array, hint: str = "const") -> str:
        name = self._next(hint)
        self._em.inits[name] = np.asarray(array)
        return name

    def temp(self, hint: str = "t") -> str:
        return self._next(hint)

    def node(self, op_type: str, inputs, outputs=None, n_out: int = 1, **attrs) -> list[str]:
        if outputs is None:
            outputs = [self._next(op_type) for _ in range(n_out)]
        outputs = list(outputs)
        inputs = self._legalize(op_type, list(inputs), attrs, len(outputs))
        # The node computing the layer's result carries the layer's name; helpers get layer/Op.
        main = bool(set(outputs) & set(self.outputs))
        name = self._em.fresh_node(self.layer if main else f"{self.layer}/{op_type}")
        self._em.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, doc_string=self.doc or None,
                                               **attrs))
        return outputs

    def _legalize(self, op_type: str, inputs: list, attrs: dict, n_out: int) -> list:
        """Write an opset-17 style node for the model's opset, or say which opset it needs.

        Ops are lowered against opset 17; since 18, reductions take `axes` as an input and an
        even Split names its number of outputs. Anything else the opset lacks is refused here,
        at the layer, rather than by the checker after the whole model is built.
        """
        try:
            schema = onnx.defs.get_schema(op_type, self.opset)
        except onnx.defs.SchemaError:
            since = _first_opset(op_type)
            raise OpError(f"cannot be written at opset {self.opset}: it needs ONNX's {op_type}, from opset {since}",
                          hint=f"compile with --opset {since} or later") from None
        if op_type.startswith("Reduce") and "axes" in attrs and "axes" not in schema.attributes:
            axes = attrs.pop("axes")
            inputs = inputs[:1] + [self.const(np.array(axes, dtype=np.int64), "axes")] + inputs[1:]
        if op_type == "Split" and len(inputs) == 1 and "num_outputs" in schema.attributes:
            attrs["num_outputs"] = n_out
        for attr in attrs:
            if attr not in schema.attributes:
                since = _first_opset(op_type, attr)
                raise OpError(f"cannot be written at opset {self.opset}: it needs a form of ONNX's {op_type} "
                              f"that opset {since} brought", hint=f"compile with --opset {since} or later")
        return inputs


def _first_opset(op_type: str, attr: str | None = None) -> int:
    """The first opset with `op_type` (having `attr`, if given), to name in a refusal."""
    versions = sorted({d.since_version for d in onnx.defs.get_all_schemas_with_history()
                       if d.name == op_type and d.domain == ""})
    for v in versions:
        if attr is None or attr in onnx.defs.get_schema(op_type, v).attributes:
            return v
    return DEFAULT_OPSET


def source_line(node: dict) -> str:
    """`resnet.net:12`, and the block calls it came through: `... in Bottleneck at resnet.net:31`.

    File names only: a model must not carry the build machine's folders.
    """
    span = node.get("span")
    if span is None:
        return ""
    text = f"{Path(span.path).name}:{span.line}"
    for label, call in reversed(node.get("context") or ()):
        if call is not None:
            text += f" in {label} at {Path(call.path).name}:{call.line}"
    return text


def to_onnx(g: nx.DiGraph, weights: dict[str, np.ndarray], opset: int = DEFAULT_OPSET,
            include_losses: bool = False, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """An ONNX model computing the network's outputs (and its total loss, if asked) from its inputs.

    `metadata` becomes the model's `metadata_props` (see `netspec.metadata`); without it the model
    carries the network's name and netspec's version only.
    """
    em = _Emitter(weights, opset)
    values: dict[Ref, str] = {}
    graph_inputs, graph_outputs = [], []

    for name in g.graph["inputs"]:
        em.used.add(name)
        values[Ref(name, 0)] = name
        graph_inputs.append(value_info(name, g.nodes[name]["types"][0]))
    if include_losses:
        for name in g.graph["targets"]:
            em.used.add(name)
            values[Ref(name, 0)] = name
            graph_inputs.append(value_info(name, g.nodes[name]["types"][0]))

    # An op's result that is a network output is produced under the output's own name.
    named_by_output: dict[Ref, str] = {}
    for out_name, ref, _ in g.graph["outputs"]:
        em.used.add(out_name)
        if ref not in named_by_output and ref not in values:
            named_by_output[ref] = out_name
    if include_losses:
        em.used.add("loss")

    for name in layers(g):
        node = g.nodes[name]
        op = get_op(node["op"])
        p = node["params"]
        outs = []
        for port in range(op.outputs(p)):
            ref = Ref(name, port)
            values[ref] = named_by_output.get(ref) or em.fresh(name if port == 0 else f"{name}:{port}")
            outs.append(values[ref])
        ctx = Context(em, name, p, [type_of(g, r) for r in node["args"]], node["types"],
                      [values[r] for r in node["args"]], outs, doc=source_line(node))
        try:
            op.onnx(ctx)
        except OpError as e:
            raise ShapeProblem(f"{node['op']} '{name}': {e.message}",
                               node.get("param_spans", {}).get(e.param) or node.get("span"), e.hint) from None

    for out_name, ref, _ in g.graph["outputs"]:
        if values[ref] != out_name:
            # The same tensor under a second name, or a network input passed straight through.
            em.nodes.append(helper.make_node("Identity", [values[ref]], [out_name],
                                             name=em.fresh_node(f"{out_name}/Identity")))
        graph_outputs.append(value_info(out_name, type_of(g, ref)))

    if include_losses:
        graph_outputs.append(_emit_losses(g, em, values))

    # make_graph and make_model copy what they are given, so the tensors join the model last.
    graph = helper.make_graph(em.nodes, _graph_name(g), graph_inputs, graph_outputs,
                              value_info=_intermediate_types(g, values, graph_inputs, graph_outputs))
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="netspec",
                              ir_version=max(8, helper.find_min_ir_version_for(opsets)))
    from . import __version__
    model.producer_version = __version__
    props = {"netspec.network": g.graph.get("name") or "", "netspec.version": __version__}
    helper.set_model_props(model, props if metadata is None else {**props, **metadata})
    for name, array in em.inits.items():
        model.graph.initializer.add().CopyFrom(numpy_helper.from_array(array, name))
    return model


def _intermediate_types(g: nx.DiGraph, values: dict[Ref, str], inputs, outputs) -> list[onnx.ValueInfoProto]:
    """netspec's inferred type of every layer result that is not a graph input or output.

    A viewer (Netron) shows these shapes on the edges; ONNX's strict shape inference checks them
    against its own in the tests. A layer's internal temporaries have no netspec type and are left
    to ONNX's inference.
    """
    ends = {vi.name for vi in (*inputs, *outputs)}
    out = []
    for ref, name in values.items():
        node = g.nodes[ref.node]
        if name in ends or node["kind"] != "op":
            continue
        out.append(value_info(name, node["types"][ref.port]))
    return out


def _graph_name(g: nx.DiGraph) -> str:
    return g.graph.get("name") or "network"


def _emit_losses(g: nx.DiGraph, em: _Emitter, values: dict[Ref, str]) -> onnx.ValueInfoProto:
    """Add every loss term and their weighted sum, output as `loss`."""
    terms = []
    for name in g.graph["losses"]:
        node = g.nodes[name]
        op = get_op(node["op"])
        out = em.fresh(name)
        ctx = Context(em, name, node["params"], [type_of(g, r) for r in node["args"]], node["types"],
                      [values[r] for r in node["args"]], [out])
        op.onnx(ctx)
        weight = float(node.get("weight", 1.0))
        if weight != 1.0:
            w = ctx.const(np.array(weight, dtype=np.float32), "weight")
            (out,) = ctx.node("Mul", [out, w])
        terms.append(out)
    if not terms:
        zero = em.fresh("loss/zero")
        em.inits[zero] = np.array(0.0, dtype=np.float32)
        terms = [zero]
    em.nodes.append(helper.make_node("Sum", terms, ["loss"], name=em.fresh_node("loss")))
    return helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])


def save(model: onnx.ModelProto, path, external_data: bool | None = None, check: bool = False) -> None:
    """Write a model atomically; tensors go to `PATH.data` beside it when the proto is too big.

    ``external_data`` None decides by size. With ``check``, the written file must pass
    `onnx.checker.check_model(full_check=True)` before it replaces anything at `path`.
    The caller's model is left untouched.
    """
    path = Path(path)
    header = _without_tensors(model)
    if external_data is None:
        # model.ByteSize() would encode the whole model just to count it.
        size = header.ByteSize() + sum(_tensor_size(t) for t in model.graph.initializer)
        external_data = size >= PROTO_LIMIT
    # The PID in the name lets `variants.sweep_stale` remove what a killed compile left.
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        if external_data:
            data_name = path.name + ".data"
            copy = onnx.ModelProto()
            copy.CopyFrom(model)  # converting to external data rewrites the tensors in place
            onnx.save_model(copy, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            del copy
            if check:
                onnx.checker.check_model(str(tmp), full_check=True)
            # The data lands first, so a model file never points at a missing or stale side file.
            if (tmpdir / data_name).exists():
                os.replace(tmpdir / data_name, path.parent / data_name)
        else:
            _save_streamed(header, model.graph.initializer, tmp)
            if check:
                onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# Protobuf wire tags (field number << 3 | 2: length-delimited) of ModelProto.graph and
# GraphProto.initializer.
_GRAPH_TAG = bytes([7 << 3 | 2])
_INITIALIZER_TAG = bytes([5 << 3 | 2])


def _save_streamed(header: onnx.ModelProto, tensors, path: Path) -> None:
    """Write the model without its tensors, then append each tensor as one more graph field.

    Serializing a whole model holds its weights twice more in memory (protobuf's buffer, then
    Python's bytes), and on a big model that copying was most of the compile. Protobuf parsers
    merge repeated occurrences of a message field, so `graph { initializer {...} }` appended
    once per tensor reads back as the one model, tensors in order.
    """
    onnx.save_model(header, str(path))
    with open(path, "ab") as f:
        for tensor in tensors:
            body = tensor.SerializeToString()
            inner = _INITIALIZER_TAG + _varint(len(body))
            f.write(_GRAPH_TAG + _varint(len(inner) + len(body)) + inner)
            f.write(body)


def _without_tensors(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model whose graph lacks the initializers (a field by field copy)."""
    header = _copy_fields(model, onnx.ModelProto(), skip="graph")
    _copy_fields(model.graph, header.graph, skip="initializer")
    return header


def _copy_fields(msg, into, skip: str):
    for field, value in msg.ListFields():
        if field.name == skip:
            continue
        # protobuf >= 5.28 has `is_repeated`; `label` is gone from recent versions
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        if repeated:
            getattr(into, field.name).extend(value)
        elif field.message_type is not None:
            getattr(into, field.name).CopyFrom(value)
        else:
            setattr(into, field.name, value)
    return into


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tensor_size(t: onnx.TensorProto) -> int:
    """A tensor's serialized size within a few bytes, without encoding its data."""
    if not t.HasField("raw_data"):
        return t.ByteSize()
    itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    # name, dims and data type, with their tags and lengths, overestimated
    return int(np.prod(t.dims, dtype=np.int64)) * itemsize + len(t.name) + 11 * len(t.dims) + 32
