"""Expansion: applying a layer to tensors. An op becomes one graph node (through the builder);
a block's body is walked in a scope of its own, in the file scope it was written in. Layers are
counted as they are made, and a repeated block expansion that is large (`STUB_SIZE`) or comes
past `STUB_AFTER` layers is credited from memory instead of built (see `Elaborator`)."""

from __future__ import annotations

from dataclasses import replace

from . import ast
from .builder import MAX_LAYERS, Namer, Scope, add_layer, op_params, tensor_type
from .errors import GraphProblem, LimitProblem, NetspecError, Span
from .graph import Ref
from .values import Binding, Layer, Tensor, is_tensorish as _is_tensorish, kind as _kind, tensors_of as _tensors

MAX_BLOCK_DEPTH = 64
STUB_AFTER = 4_096  # layers built before any repeated block expansion is only counted
STUB_SIZE = 256  # a repeated expansion this large is counted at once, however few layers are built


class Expansion:
    """The layer-applying half of the elaborator (mixed into `Elaborator`)."""

    def apply(self, layer: Layer, piped: list[Tensor], scope: Scope, namer: Namer):
        if layer.repeat == 1:  # the common case, with none of the checks below to make
            return self._apply_once(layer, [*piped, *layer.tensors] if layer.tensors else piped, scope, namer)
        if layer.tensors:
            raise GraphProblem(f"a repeated {layer.title} cannot take extra tensor arguments", layer.span)
        if layer.name:
            raise GraphProblem("a repeated layer cannot be named with 'as'", layer.span)
        inputs = list(piped) + list(layer.tensors)
        if layer.repeat == 0:
            # `Block * 0` passes its input through, so a stage of n units reads `B * (n - 1)`.
            if len(inputs) != 1:
                raise GraphProblem(f"{layer.title} * 0 passes one tensor through, got {len(inputs)}", layer.span)
            return inputs[0]
        out = None
        for _ in range(layer.repeat):
            out = self._apply_once(layer, inputs, scope, namer)
            inputs = _tensors(out)
        return out

    def _apply_once(self, layer: Layer, inputs: list[Tensor], scope: Scope, namer: Namer):
        if isinstance(layer.callee, ast.BlockDef):
            return self._expand(layer, inputs, scope, namer)
        op = layer.callee
        lo, hi = op.arity
        if not lo <= len(inputs) <= (hi if hi is not None else len(inputs)):
            want = str(lo) if lo == hi else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
            raise GraphProblem(f"{op.name} takes {want} input tensor{'s' if want != '1' else ''}, got {len(inputs)}",
                               layer.span)
        p, spans = op_params(layer)
        self._count(1, layer.span)
        outs = add_layer(scope, namer.next(layer.name), op, p, inputs, layer.span, spans)
        return outs[0] if len(outs) == 1 else outs

    def _count(self, n: int, span: Span | None) -> None:
        self.layers += n
        if self.layers > MAX_LAYERS:
            raise LimitProblem(f"the network grows past {MAX_LAYERS:,} layers", span)

    def _expand(self, layer: Layer, inputs: list[Tensor], scope: Scope, namer: Namer):
        key = _memo_key(layer, [tensor_type(scope.g, t) for t in inputs])
        if key is not None and key in self.memo and self.stubs and \
                (self.layers >= STUB_AFTER or self.memo[key][0] >= STUB_SIZE):
            made, types = self.memo[key]
            self._count(made, layer.span)
            self.partial = True
            namer.next(layer.name)
            stub = f"~{scope.g.number_of_nodes()}"
            scope.g.add_node(stub, kind="stub", types=list(types), span=layer.span, args=[], context=())
            outs = tuple(Tensor(Ref(stub, k), layer.span) for k in range(len(types)))
            return outs[0] if len(outs) == 1 else outs
        before = self.layers
        result = self._expand_block(layer, inputs, scope, namer)
        if key is not None:
            self.memo[key] = (self.layers - before, tuple(tensor_type(scope.g, t) for t in _tensors(result)))
        return result

    def _expand_block(self, layer: Layer, inputs: list[Tensor], scope: Scope, namer: Namer):
        block: ast.BlockDef = layer.callee
        if block.name in scope.stack:
            path = " -> ".join(scope.stack[scope.stack.index(block.name):] + (block.name,))
            raise GraphProblem(f"recursion between blocks is not allowed: {path}", layer.span,
                               notes=((f"{block.name} is defined here", block.span),))
        if len(scope.stack) >= MAX_BLOCK_DEPTH:
            raise LimitProblem(f"blocks are nested more than {MAX_BLOCK_DEPTH} levels deep", layer.span)
        name = namer.next(layer.name)
        # The block's body sees the names of the file it was written in, not the caller's.
        inner = Scope(scope.g, name + ".", scope.context + ((f"{block.name} '{name}'", layer.span),),
                      scope.stack + (block.name,), False, block.scope)
        kw = {k: v for k, v in layer.kw.items()}
        self._bind(block, block.params, layer.pos, kw, inner, layer.span)
        declared = [i for s in block.body if isinstance(s, ast.InputDecl) for i in s.items]
        names = [i.name for i in declared] or ["in"]
        if len(inputs) != len(names):
            raise GraphProblem(f"block {block.name} takes {len(names)} input tensor{'s' if len(names) != 1 else ''}"
                               f" ({', '.join(names)}), got {len(inputs)}", layer.span)
        for n, t, d in zip(names, inputs, declared or [None]):
            inner.vars[n] = Binding(t, d.span if d else block.span)
        try:
            self.exec_block(block.body, inner)
        except NetspecError as e:
            raise _called_from(e, inner.context) from None
        outputs = [s for s in block.body if isinstance(s, ast.OutputDecl)]
        if outputs:
            result = tuple(inner.vars[s.name].value for s in outputs if s.name in inner.vars)
        elif "out" in inner.vars:
            inner.vars["out"].used = True
            result = (inner.vars["out"].value,)
        else:
            raise GraphProblem(f"block {block.name} produces no output", block.span,
                               hint="assign `out = ...` or declare `output NAME = ...` in the block")
        self._check_unused(inner)
        for v in result:
            if not isinstance(v, Tensor):
                raise GraphProblem(f"block {block.name} must output tensors, got {_kind(v)}", block.span)
        return result[0] if len(result) == 1 else result

    # Checks --------------------------------------------------------------------------------

    def _check_unused(self, scope: Scope) -> None:
        for name, b in scope.vars.items():
            if not b.used and _is_tensorish(b.value):
                where = f" in block {scope.context[-1][0]}" if scope.context else ""
                is_input = isinstance(b.value, Tensor) and scope.g.nodes[b.value.ref.node]["kind"] == "input"
                what = "input" if is_input else "tensor"
                raise GraphProblem(f"{what} '{name}' is never used{where}", b.span,
                                   hint="use it, make it an output, or remove it")



MAX_CALL_NOTES = 4  # block calls shown under an error inside nested blocks


def _called_from(e: NetspecError, context: tuple) -> NetspecError:
    """Add "in block B 'name', used here" under an error raised in a block's body, once per call."""
    d = e.diagnostics[0]
    shown = sum(1 for note, _ in d.notes if note.startswith("in block "))
    if not context or shown >= MAX_CALL_NOTES or any(note == f"in block {context[-1][0]}, used here"
                                                     for note, _ in d.notes):
        return e
    label, span = context[-1]
    e.diagnostics[0] = replace(d, notes=d.notes + ((f"in block {label}, used here", span),))
    return e


def _memo_key(layer: Layer, types: list):
    """What a block expansion depends on; None when a parameter is not a plain value."""
    values = tuple(v for v, *_ in layer.pos) + tuple((k, v) for k, (v, *_) in sorted(layer.kw.items()))
    try:
        hash(values)
    except TypeError:
        return None
    if any(isinstance(v, Layer) for v in _leaves(values)):
        return None
    return (id(layer.callee), values, tuple(types))


def _leaves(v):
    if isinstance(v, tuple):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


