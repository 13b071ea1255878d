"""Lower a checked graph and its weights to an ONNX ModelProto, emitted directly with onnx.helper."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .digraph import DiGraph
from .errors import DataProblem, OpError, ShapeProblem
from .file_kinds import check_output
from .fold import Derived, Tensor, drop_identities, dtype_of, fold_batchnorm, materialize, shape_of
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

    def __init__(self, weights: dict[str, np.ndarray], opset: int, fold: bool = True):
        self.weights = weights
        self.opset = opset
        self.fold = fold
        self.nodes: list[onnx.NodeProto] = []
        # Arrays (or folded weights, computed when written), not TensorProtos: each becomes a
        # proto once, as it is written, since every copy of a big model's weights costs as much
        # as the rest of the compile.
        self.inits: dict[str, Tensor] = {}
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
        self.fold = em.fold  # store weights as the graph consumes them (see netspec.fold)
        self._counter = 0

    def _next(self, hint: str) -> str:
        while True:
            name = f"{self.layer}/{hint}_{self._counter}"
            self._counter += 1
            if name not in self._em.used:
                self._em.used.add(name)
                return name

    def _array(self, local: str) -> np.ndarray:
        key = f"{self.layer}.{local}"
        if key not in self._em.weights:
            raise DataProblem(f"the weights lack '{key}', which layer '{self.layer}' needs",
                              hint="were they made for another spec?")
        return np.asarray(self._em.weights[key])

    def weight(self, local: str) -> str:
        key = f"{self.layer}.{local}"
        if key not in self._em.inits:
            array = self._array(local)
            self._em.used.add(key)
            self._em.inits[key] = array
        return key

    def weight_shape(self, local: str) -> tuple[int, ...]:
        return tuple(self._array(local).shape)

    def derived(self, name: str, fn, sources: list[str], shape) -> str:
        """A new initializer `layer.name`: `fn` of this layer's weights `sources`, of shape `shape`.

        It is computed when the model is written, so the emitter never holds it beside its sources.
        """
        arrays = tuple(self._array(local) for local in sources)
        key = self._em.fresh(f"{self.layer}.{name}")
        self._em.inits[key] = Derived(fn, arrays, tuple(shape), arrays[0].dtype)
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


class LoweredModel:
    """An ONNX model whose tensors are not protos yet: its graph, and each initializer's array.

    `save` writes it one tensor at a time, so a compile holds the weights once; `to_proto` makes
    the whole ModelProto for those who need one in memory.
    """

    def __init__(self, header: onnx.ModelProto, tensors: dict[str, Tensor]):
        self.header = header  # the model without initializers
        self.tensors = tensors  # initializer name -> array, or a folded weight computed on demand

    def to_proto(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.CopyFrom(self.header)
        for name, t in self.tensors.items():
            model.graph.initializer.add().CopyFrom(numpy_helper.from_array(materialize(t), name))
        return model


def to_onnx(g: DiGraph, weights: dict[str, np.ndarray], opset: int = DEFAULT_OPSET,
            include_losses: bool = False, metadata: dict[str, str] | None = None,
            fold: bool = True) -> onnx.ModelProto:
    """An ONNX model computing the network's outputs (and its total loss, if asked) from its inputs.

    `metadata` becomes the model's `metadata_props` (see `netspec.metadata`); without it the model
    carries the network's name and netspec's version only.

    With `fold`, weights are stored as the graph consumes them: Linear weights transposed,
    attention's projections packed, BatchNorm folded into the Conv or Linear before it (see
    netspec.fold). Without it, the initializers are the weights as given, one for one.
    """
    return lower(g, weights, opset, include_losses, metadata, fold).to_proto()


def lower(g: DiGraph, weights: dict[str, np.ndarray], opset: int = DEFAULT_OPSET,
          include_losses: bool = False, metadata: dict[str, str] | None = None,
          fold: bool = True) -> LoweredModel:
    """`to_onnx`'s model with its tensors still arrays, to be written by `save` one at a time."""
    em = _Emitter(weights, opset, fold)
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
    if fold:
        ends = {vi.name for vi in graph_outputs}
        gone = drop_identities(em.nodes, ends) | fold_batchnorm(em.nodes, em.inits, ends, em.fresh)
        # Whatever describes the values from here on must not name the ones folded away.
        values = {ref: name for ref, name in values.items() if name not in gone}

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
    return LoweredModel(model, em.inits)


def _intermediate_types(g: DiGraph, values: dict[Ref, str], inputs, outputs) -> list[onnx.ValueInfoProto]:
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


def _graph_name(g: DiGraph) -> str:
    return g.graph.get("name") or "network"


def _emit_losses(g: DiGraph, em: _Emitter, values: dict[Ref, str]) -> onnx.ValueInfoProto:
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


def save(model: onnx.ModelProto | LoweredModel, path, external_data: bool | None = None,
         check: bool = False) -> Path | None:
    """Write a model atomically, one tensor at a time; its weights go to `PATH.data` beside it past 1 MiB.

    ``external_data`` None decides by size: weights of `EXTERNAL_DEFAULT_BYTES` or more go to the
    side file (which ONNX Runtime maps into memory instead of copying out of a buffer, as for
    `torch.onnx.export`'s files), smaller models stay one file. True always writes the side file;
    False always writes one file, and refuses a model past protobuf's 2 GiB limit. With ``check``,
    the model must pass `onnx.checker.check_model(full_check=True)` before anything is written,
    and the written file must read back as that model before it replaces anything at `path`.
    Neither step holds a second copy of the weights: the checker sees each large tensor by its
    type and shape, and the file is read back one field at a time. The caller's model is left
    untouched. A side file that an older model at `path` left is removed once `path` is replaced
    by a model that does not use it. Returns the side file written, or None.
    """
    path = Path(path)
    check_output(path)
    if isinstance(model, LoweredModel):
        header = model.header
        tensors = [_ArrayTensor(name, t) for name, t in model.tensors.items()]
    else:
        header = _without_tensors(model)
        tensors = [_ProtoTensor(t) for t in model.graph.initializer]
    weights = sum(t.nbytes for t in tensors)
    # model.ByteSize() would encode the whole model just to count it.
    size = header.ByteSize() + sum(t.nbytes + len(t.name) + 11 * len(t.dims) + 32 for t in tensors)
    if external_data is False and size >= PROTO_LIMIT:
        raise DataProblem(f"the model is {size / 2**30:.1f} GiB, past protobuf's 2 GiB limit for one .onnx file",
                          hint="leave out --single-file: the weights then go to a side file beside it")
    if check:
        _check_graph(header, tensors)
    if external_data is None:
        external_data = side_file_by_default(weights, size)
    side = path.with_name(path.name + ".data")
    if external_data:
        check_output(side)
    # Ours to remove once replaced: a side file that the model now at `path` uses.
    stale_side = not external_data and side.is_file() and path.is_file() and side.name in side_files(path)
    # The PID in the name lets `variants.sweep_stale` remove what a killed compile left.
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        if external_data:
            _save_external(header, tensors, tmp, side.name)
            if check:
                # The file holds the graph and the small tensors only: the checker reads it as is.
                onnx.checker.check_model(str(tmp), full_check=True)
                _verify_external(tmp, tmpdir / side.name, tensors)
            # The data lands first, so a model file never points at a missing or stale side file.
            if (tmpdir / side.name).exists():
                os.replace(tmpdir / side.name, side)
        else:
            _save_streamed(header, tensors, tmp)
            if check:
                _verify_streamed(tmp, header, tensors)
        os.replace(tmp, path)
        if stale_side:
            side.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return side if external_data else None


# Weights from this size on go to a side file by default: the 1 MiB tensors are laid out there
# for a runtime to map. Smaller models gain nothing measurable, and one file is simpler to hand on.
EXTERNAL_DEFAULT_BYTES = 1 << 20


def side_files(path: Path) -> set[str]:
    """The external-data file names that the model at `path` refers to (none for an unreadable file)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a model we can read
        return set()
    return {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}


def side_file_by_default(weight_bytes: int, total_bytes: int) -> bool:
    """Whether a model goes to two files when its writer is not told: 1 MiB of weights, or past protobuf."""
    return weight_bytes >= EXTERNAL_DEFAULT_BYTES or total_bytes >= PROTO_LIMIT


class _ArrayTensor:
    """An initializer to write from an array (or a folded weight), without a TensorProto of its data."""

    def __init__(self, name: str, t: Tensor):
        self.name, self._t = name, t
        self.dims = shape_of(t)
        self.dtype = dtype_of(t)
        self.data_type = helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nbytes = int(np.prod(self.dims, dtype=np.int64)) * self.dtype.itemsize

    def meta(self) -> onnx.TensorProto:
        t = onnx.TensorProto(name=self.name, data_type=self.data_type)
        t.dims.extend(self.dims)
        return t

    def raw(self):
        # ONNX's raw_data is little-endian; the array's own buffer is written as is.
        a = materialize(self._t)
        return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)

    def proto(self) -> onnx.TensorProto:
        return numpy_helper.from_array(materialize(self._t), self.name)

    def write(self, f) -> None:
        """Write `graph { initializer { ... } }` (see `_save_streamed`)."""
        raw = self.raw()
        head = self.meta().SerializeToString() + _RAW_DATA_TAG + _varint(raw.nbytes)
        tensor_len = len(head) + raw.nbytes
        inner = _INITIALIZER_TAG + _varint(tensor_len)
        f.write(_GRAPH_TAG + _varint(len(inner) + tensor_len) + inner + head)
        f.write(raw.data)


class _ProtoTensor:
    """An initializer to write from the caller's TensorProto."""

    def __init__(self, t: onnx.TensorProto):
        self._t = t
        self.name, self.dims, self.data_type = t.name, tuple(t.dims), t.data_type
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize if t.data_type else 0
        self.nbytes = int(np.prod(self.dims, dtype=np.int64)) * itemsize

    def meta(self) -> onnx.TensorProto:
        t = onnx.TensorProto(name=self.name, data_type=self.data_type)
        t.dims.extend(self.dims)
        return t

    def raw(self):
        if self._t.HasField("raw_data"):
            return np.frombuffer(self._t.raw_data, np.uint8)
        a = numpy_helper.to_array(self._t)
        return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)

    def proto(self) -> onnx.TensorProto:
        return self._t

    def write(self, f) -> None:
        body = self._t.SerializeToString()
        inner = _INITIALIZER_TAG + _varint(len(body))
        f.write(_GRAPH_TAG + _varint(len(inner) + len(body)) + inner)
        f.write(body)


# Tensors this small keep their data when the graph is checked: shapes and axes are read from
# them. Larger ones are weights, which the checker needs only the type and shape of.
_CHECK_INLINE_BYTES = 4096


def _check_graph(header: onnx.ModelProto, tensors) -> None:
    """`check_model(full_check=True)` of the model, with large tensors given by type and shape only.

    A large initializer becomes a graph input of the same type and shape: the checker and ONNX's
    strict shape inference see the same graph, without a copy of the weights' bytes.
    """
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(header)
    for t in tensors:
        if t.nbytes <= _CHECK_INLINE_BYTES or t.data_type not in _FLOAT_TYPES:
            skeleton.graph.initializer.add().CopyFrom(t.proto())
        else:
            skeleton.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    onnx.checker.check_model(skeleton, full_check=True)


_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}

# Protobuf wire tags (field number << 3 | 2: length-delimited) of ModelProto.graph,
# GraphProto.initializer and TensorProto.raw_data.
_GRAPH_TAG = bytes([7 << 3 | 2])
_INITIALIZER_TAG = bytes([5 << 3 | 2])
_RAW_DATA_TAG = bytes([9 << 3 | 2])
_EXTERNAL_MIN_BYTES = 1024
_EXTERNAL_ALIGN = 65536
_EXTERNAL_ALIGN_MIN_BYTES = 1 << 20


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
            tensor.write(f)


def _save_external(header: onnx.ModelProto, tensors, path: Path, data_name: str) -> None:
    """Write each large tensor's bytes to `data_name` beside `path`, and the model pointing at them."""
    model = onnx.ModelProto()
    model.CopyFrom(header)
    offset = 0
    with open(path.parent / data_name, "wb") as f:
        for t in tensors:
            if t.nbytes < _EXTERNAL_MIN_BYTES:
                model.graph.initializer.add().CopyFrom(t.proto())
                continue
            raw = t.raw()
            # A large tensor starts on a boundary a runtime can map straight into memory (ONNX
            # Runtime does, instead of reading a copy): 64 KiB, Windows' mapping granularity, as
            # torch's exporter does. Padding small ones would only grow the file.
            pad = -offset % _EXTERNAL_ALIGN if raw.nbytes >= _EXTERNAL_ALIGN_MIN_BYTES else 0
            f.write(bytes(pad))
            offset += pad
            f.write(raw.data)
            stub = t.meta()
            stub.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(raw.nbytes))):
                entry = stub.external_data.add()
                entry.key, entry.value = key, value
            offset += raw.nbytes
            model.graph.initializer.add().CopyFrom(stub)
            del raw
    onnx.save_model(model, str(path))


def _verify_external(path: Path, data: Path, tensors) -> None:
    """Every tensor of the written model lies whole inside the side file, with its expected size."""
    size = data.stat().st_size
    want = {t.name: t for t in tensors}
    for t in onnx.load(str(path), load_external_data=False).graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        if t.name not in want or length != want[t.name].nbytes or offset + length > size:
            raise onnx.checker.ValidationError(
                f"the written file {data.name} does not hold tensor '{t.name}' as the model says")


class _Truncated(Exception):
    pass


def _verify_streamed(path: Path, header: onnx.ModelProto, tensors) -> None:
    """Read the written file back one field at a time: the header, then each tensor as expected.

    Raises onnx.checker.ValidationError naming what differs. Tensor bytes are skipped, not read
    into memory: what is checked is that the file parses as the checked model, with every tensor
    named, typed and sized as it should be.
    """
    def fail(what: str):
        raise onnx.checker.ValidationError(f"the written file {path.name} does not read back as the model: {what}")

    size = path.stat().st_size
    header_parts: list[bytes] = []
    expected = iter(tensors)
    seen_graph = False
    try:
        with open(path, "rb") as f:
            while f.tell() < size:
                tag_start = f.tell()
                field, wire = _read_tag(f)
                if wire != 2:
                    f.seek(tag_start)
                    header_parts.append(_read_scalar_field(f))
                    continue
                length = _read_varint(f)
                start = f.tell()
                if field != 7 or not seen_graph:
                    seen_graph = seen_graph or field == 7
                    body = f.read(length)
                    if len(body) != length:
                        raise _Truncated
                    header_parts.append(_field_bytes(field, body))
                    continue
                # An appended `graph { initializer {...} }`.
                want = next(expected, None)
                if want is None:
                    fail("it holds more tensors than the model")
                ifield, iwire = _read_tag(f)
                ilen = _read_varint(f) if iwire == 2 else -1
                if ifield != 5 or f.tell() + ilen != start + length:
                    fail(f"a graph field after the header holds more than one tensor (before '{want.name}')")
                _verify_tensor(f, f.tell() + ilen, want, fail)
            if f.tell() != size:  # a skipped tensor ran past the end of the file
                raise _Truncated
    except _Truncated:
        fail("it ends in the middle of a field")
    missing = next(expected, None)
    if missing is not None:
        fail(f"tensor '{missing.name}' is missing")
    try:
        got = onnx.ModelProto.FromString(b"".join(header_parts))
    except Exception as e:  # protobuf's DecodeError
        fail(f"its graph does not parse ({e})")
    if got.SerializeToString(deterministic=True) != header.SerializeToString(deterministic=True):
        fail("its graph differs from the model's")


def _verify_tensor(f, end: int, want, fail) -> None:
    meta_parts, raw_len = [], None
    while f.tell() < end:
        tag_start = f.tell()
        field, wire = _read_tag(f)
        if field == 9 and wire == 2:
            raw_len = _read_varint(f)
            f.seek(raw_len, 1)  # the bytes themselves are not read into memory
            continue
        f.seek(tag_start)
        if wire == 2:
            _read_tag(f)
            body = f.read(_read_varint(f))
            meta_parts.append(_field_bytes(field, body))
        else:
            meta_parts.append(_read_scalar_field(f))
    if f.tell() != end:
        raise _Truncated
    t = onnx.TensorProto.FromString(b"".join(meta_parts))
    if (t.name, tuple(t.dims), t.data_type) != (want.name, tuple(want.dims), want.data_type):
        fail(f"found tensor '{t.name}' {list(t.dims)} of type {t.data_type} where '{want.name}' "
             f"{list(want.dims)} of type {want.data_type} belongs")
    if raw_len is not None and raw_len != want.nbytes:
        fail(f"tensor '{want.name}' holds {raw_len} bytes, not {want.nbytes}")
    if raw_len is None and numpy_helper.to_array(t).size != int(np.prod(want.dims, dtype=np.int64)):
        fail(f"tensor '{want.name}' holds the wrong number of values")


def _read_varint(f) -> int:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            raise _Truncated
        result |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return result
        shift += 7


def _read_tag(f) -> tuple[int, int]:
    key = _read_varint(f)
    return key >> 3, key & 7


def _read_scalar_field(f) -> bytes:
    """A varint, 64-bit or 32-bit field, tag included, as bytes."""
    start = f.tell()
    _, wire = _read_tag(f)
    if wire == 0:
        _read_varint(f)
    elif wire in (1, 5):
        f.seek(8 if wire == 1 else 4, 1)
    else:
        raise _Truncated  # groups are not in ONNX's schema
    end = f.tell()
    f.seek(start)
    data = f.read(end - start)
    if len(data) != end - start:
        raise _Truncated
    return data


def _field_bytes(field: int, body: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(body)) + body


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
