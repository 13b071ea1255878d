"""Expressions: compile-time values, tensors and layers from the syntax tree. Names resolve
in the scope being walked and then in the file scope of the code's own file; `values` does the
arithmetic, `expansion` applies the layers."""

from __future__ import annotations

from dataclasses import replace

from . import ast
from .builder import Namer, Scope, origin_problem, tensor_type
from .errors import GraphProblem, LimitProblem, NameProblem, ParamProblem, ShapeProblem, Span, clip, did_you_mean
from .ops import REGISTRY, get_op
from .parse import KEYWORDS
from .values import (FUNCTIONS, Binding, Layer, Symbolic, Tensor, arithmetic, call_function, check_size,
                     is_tensorish as _is_tensorish, kind as _kind, show as _show, tensors_of as _tensors)

MAX_REPEAT = 10_000


class Expressions:
    """The expression half of the elaborator (mixed into `Elaborator`)."""

    def _hint(self, name: str, scope: Scope) -> str | None:
        return did_you_mean(name, list(scope.vars) + list(scope.file.defs) + list(REGISTRY))

    def _undefined(self, name: str, span: Span, scope: Scope, what: str = "name") -> NameProblem:
        notes = ()
        hint = self._hint(name, scope)
        if name in KEYWORDS:
            return NameProblem(f"'{name}' is a keyword, read here as a layer or value", span,
                               hint="does the line before end in '->' with nothing after it?")
        elif name in scope.skipped:
            where, cond = scope.skipped[name]
            branch = "else branch" if cond else "if branch"
            hint = (f"'{name}' is assigned only in the {branch}, which was not taken here; "
                    f"assign it in both branches")
            notes = ((f"the if whose condition was {_show(cond)}", where),)
        elif hint is None and name == "x" and not scope.is_network and "in" in scope.vars:
            hint = "a block's input is called 'in' unless the block declares `input NAME`"
        return NameProblem(f"undefined {what} '{clip(name)}'", span, hint=hint, notes=notes)

    def evaluate(self, e, scope: Scope, namer: Namer | None = None):
        if namer is None:
            scope.anon += 1
            namer = Namer(scope, f"_{scope.anon}")
        if isinstance(e, (ast.Num, ast.Str, ast.Bool)):
            return e.value
        if isinstance(e, ast.Chain):
            return self._chain(e, scope, namer)
        if isinstance(e, ast.ListE):
            return check_size(tuple(self.evaluate(x, scope, namer) for x in e.items), e.span)
        if isinstance(e, ast.Comprehension):
            return self._comprehension(e, scope, namer)
        if isinstance(e, (ast.Name, ast.Call, ast.Named)):
            v = self._value_or_layer(e, scope, namer)
            if isinstance(v, Layer) and (v.tensors or _sourceless(v) and not isinstance(e, ast.Name)):
                return self.apply(v, [], scope, namer)
            return v
        if isinstance(e, ast.Ternary):
            if e.ambiguous:
                raise GraphProblem("a chain after ':' needs parentheses here", e.other.span,
                                   hint="write `(c ? a : b) -> L` to apply L to both branches, "
                                        "or `c ? a : (b -> L)` for the second only")
            cond = self.evaluate(e.cond, scope, namer)
            if not isinstance(cond, bool):
                raise ParamProblem(f"a condition must be true or false, got {_kind(cond)}", e.cond.span,
                                   hint="conditions are decided at compile time, from parameters")
            return self.evaluate(e.then if cond else e.other, scope, namer)
        if isinstance(e, ast.Attr):
            return self._attr(e, scope, namer)
        if isinstance(e, ast.Index):
            return self._index(e, scope, namer)
        if isinstance(e, ast.BinOp):
            return self._binop(e, scope, namer)
        if isinstance(e, ast.Neg):
            v = self.evaluate(e.value, scope, namer)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ParamProblem(f"cannot negate {_kind(v)}", e.span)
            return -v
        if isinstance(e, ast.Not):
            v = self.evaluate(e.value, scope, namer)
            if not isinstance(v, bool):
                raise ParamProblem(f"'not' needs true or false, got {_kind(v)}", e.span)
            return not v
        if isinstance(e, ast.BoolOp):
            left = self.evaluate(e.left, scope, namer)
            if not isinstance(left, bool):
                raise ParamProblem(f"'{e.op}' needs true or false, got {_kind(left)}", e.left.span)
            if (e.op == "and") != left:  # short-circuit
                return left
            right = self.evaluate(e.right, scope, namer)
            if not isinstance(right, bool):
                raise ParamProblem(f"'{e.op}' needs true or false, got {_kind(right)}", e.right.span)
            return right
        if isinstance(e, ast.Slice):
            raise ParamProblem("a slice 'a:b' is written inside brackets: v[a:b]", e.span)
        raise GraphProblem(f"unexpected expression {type(e).__name__}", e.span)

    def _attr(self, e: ast.Attr, scope: Scope, namer: Namer):
        v = self.evaluate(e.value, scope, namer)
        if not isinstance(v, Tensor):
            raise ParamProblem(f"'.{e.name}' reads a tensor's type, not {_kind(v)}'s", e.value.span)
        t = tensor_type(scope.g, v)
        if t is None:
            raise ShapeProblem("this target's type is known only from its loss", e.value.span,
                               hint="declare it: target NAME: DTYPE[DIMS]")
        if e.name == "shape":
            return tuple(Symbolic(d) if isinstance(d, str) else d for d in t.shape)
        if e.name == "dtype":
            return t.dtype
        raise NameProblem(f"a tensor has no '.{clip(e.name)}'", e.name_span,
                          hint=did_you_mean(e.name, ["shape", "dtype"]) or "a tensor has .shape and .dtype")

    def _index(self, e: ast.Index, scope: Scope, namer: Namer):
        v = self.evaluate(e.value, scope, namer)
        if isinstance(v, Tensor):
            return self._slice_tensor(v, e, scope, namer)
        if not isinstance(v, (tuple, str)):
            raise ParamProblem(f"cannot index {_kind(v)}", e.value.span)
        if len(e.items) != 1:
            raise ParamProblem(f"{_kind(v)} takes one index, got {len(e.items)}", e.span)
        item = e.items[0]
        if isinstance(item, ast.Slice):
            bounds = [self._slice_bound(b, scope, namer) for b in (item.start, item.stop, item.step)]
            if bounds[2] == 0:
                raise ParamProblem("a slice step must not be zero", item.step.span)
            return v[slice(*bounds)]
        i = self.evaluate(item, scope, namer)
        if isinstance(i, bool) or not isinstance(i, int):
            raise ParamProblem(f"an index must be an integer, got {_kind(i)}", item.span)
        if not -len(v) <= i < len(v):
            raise ParamProblem(f"index {i} is out of range for {len(v)} item{'s' if len(v) != 1 else ''}", item.span)
        return v[i]

    def _slice_bound(self, b, scope: Scope, namer: Namer):
        if b is None:
            return None
        v = self.evaluate(b, scope, namer)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ParamProblem(f"a slice bound must be an integer, got {_kind(v)}", b.span)
        return v

    def _slice_tensor(self, t: Tensor, e: ast.Index, scope: Scope, namer: Namer):
        """`x[:, :, 4:-4]`: a Slice layer over the dims whose subscript is not `:`."""
        op = get_op("Slice")
        if op is None:
            raise NameProblem("slicing a tensor needs the Slice op, which this netspec lacks", e.span)
        rank = tensor_type(scope.g, t).rank
        if len(e.items) > rank:
            raise ShapeProblem(f"{len(e.items)} subscripts for a tensor of rank {rank}", e.span)
        axes, starts, ends, steps = [], [], [], []
        for axis, item in enumerate(e.items):
            if not isinstance(item, ast.Slice):
                raise ParamProblem("a tensor subscript is a slice such as 1:3 or ':'", item.span,
                                   hint="to pick one index and drop the dim, use Select(dim, index)")
            start, stop, step = (self._slice_bound(b, scope, namer) for b in (item.start, item.stop, item.step))
            if start is None and stop is None and step in (None, 1):
                continue
            axes.append(axis)
            backwards = step is not None and step < 0
            starts.append((-1 if backwards else 0) if start is None else start)
            ends.append(stop)
            steps.append(1 if step is None else step)
        if not axes:
            return t
        layer = Layer(op, [], {"axes": (tuple(axes), e.span, None, None), "starts": (tuple(starts), e.span, None, None),
                               "ends": (tuple(ends), e.span, None, None), "steps": (tuple(steps), e.span, None, None)},
                      span=e.span)
        return self.apply(layer, [t], scope, namer)

    def _comprehension(self, e: ast.Comprehension, scope: Scope, namer: Namer):
        rows = self.evaluate(e.iter, scope, namer)
        if not isinstance(rows, tuple) or _is_tensorish(rows):
            raise ParamProblem(f"'for' runs over a list, got {_kind(rows)}", e.iter.span,
                               hint="for example [Block(c) for c in [16, 32, 64]] or range(n)")
        for name in e.names:
            if name in scope.vars:
                raise NameProblem(f"'{name}' is already defined; a loop variable needs a new name", e.span,
                                  notes=(("first defined here", scope.vars[name].span),))
        out = []
        try:
            for row in rows:
                if len(e.names) > 1:
                    if not isinstance(row, tuple) or len(row) != len(e.names):
                        n = len(row) if isinstance(row, tuple) else 1
                        raise ParamProblem(f"{len(e.names)} loop variables, but a row has {n} item"
                                           f"{'s' if n != 1 else ''}: {_show(row)}", e.iter.span)
                    values = row
                else:
                    values = (row,)
                for name, v in zip(e.names, values):
                    scope.vars[name] = Binding(v, e.span, used=True)
                if e.cond is not None:
                    keep = self.evaluate(e.cond, scope, namer)
                    if not isinstance(keep, bool):
                        raise ParamProblem(f"a condition must be true or false, got {_kind(keep)}", e.cond.span)
                    if not keep:
                        continue
                item = self._value_or_layer(e.item, scope, namer) \
                    if isinstance(e.item, (ast.Name, ast.Call, ast.Named)) else self.evaluate(e.item, scope, namer)
                if isinstance(item, Layer) and (item.tensors or _sourceless(item) and isinstance(e.item, ast.Call)):
                    item = self.apply(item, [], scope, namer)
                out.append(item)
        finally:
            for name in e.names:
                scope.vars.pop(name, None)
        return check_size(tuple(out), e.span)

    def _binop(self, e: ast.BinOp, scope: Scope, namer: Namer, in_chain: bool = False):
        """Arithmetic, `Layer * n` repetition, or `+ - *` between tensors.

        In a chain (`x -> Add(skip) * 2`) a layer with tensor arguments waits for the piped
        input; elsewhere it is applied at once.
        """
        a = self._value_or_layer(e.left, scope, namer) if isinstance(e.left, (ast.Name, ast.Call, ast.Named)) \
            else self.evaluate(e.left, scope, namer)
        if isinstance(a, Layer) and (a.tensors and not in_chain or _sourceless(a) and isinstance(e.left, ast.Call)):
            a = self.apply(a, [], scope, namer)
        b = self.evaluate(e.right, scope, namer)
        op = e.op
        if isinstance(a, Layer) and op == "*":
            origin = self._origin(e.right, scope)
            if isinstance(b, bool) or not isinstance(b, int):
                if origin:
                    raise origin_problem(origin, f"a repetition count must be an integer, got {_kind(b)}",
                                         e.right.span)
                raise ParamProblem(f"a repetition count must be an integer, got {_kind(b)}", e.right.span)
            if not 0 <= b <= MAX_REPEAT:
                msg = f"a repetition count must be between 0 and {MAX_REPEAT:,}, got {b:,}"
                if origin:
                    raise origin_problem(origin, msg, e.right.span)
                raise (LimitProblem if b > MAX_REPEAT else ParamProblem)(msg, e.right.span)
            return replace(a, repeat=a.repeat * b, span=e.span)
        if isinstance(a, Tensor) and isinstance(b, Tensor) and op in ("+", "*", "-"):
            opname = {"+": "Add", "*": "Mul", "-": "Sub"}[op]
            if get_op(opname) is None:
                raise NameProblem(f"'{op}' between tensors needs the {opname} op", e.span)
            return self.apply(Layer(get_op(opname), span=e.span), [a, b], scope, namer)
        return arithmetic(op, a, b, e.span, e.left.span, e.right.span)

    def _origin(self, e, scope: Scope) -> str | None:
        """The `--set` a plain parameter name's value came from, to report a bad value there."""
        if isinstance(e, ast.Name):
            b = scope.vars.get(e.id)
            return b.origin if b is not None else None
        return None

    def _value_or_layer(self, e, scope: Scope, namer: Namer):
        """Evaluate a name, call or `as` without applying a layer to its tensor arguments."""
        if isinstance(e, ast.Name):
            b = scope.vars.get(e.id)
            if b is not None:
                b.used = True
                return b.value
            callee = self._callee(e.id, scope)
            if callee is None:
                if _is_symbolic_dim(e.id, scope):
                    return Symbolic(e.id)  # `Reshape([N, 4, -1])` names the batch
                raise self._undefined(e.id, e.span, scope)
            return Layer(callee, span=e.span)
        if isinstance(e, ast.Call):
            return self._call(e, scope, namer)
        if isinstance(e, ast.Named):
            v = self._value_or_layer(e.value, scope, namer)
            if not isinstance(v, Layer):
                raise GraphProblem(f"only a layer can be named with 'as', not {_kind(v)}", e.span)
            return replace(v, name=e.name)
        return self.evaluate(e, scope, namer)

    def _call(self, e: ast.Call, scope: Scope, namer: Namer):
        """`F(args)`: a value function's result, or the layer of an op or block with its
        parameters and tensor arguments bound."""
        if not isinstance(e.func, ast.Name):
            raise GraphProblem("only ops, blocks and value functions can be called", e.func.span)
        fid = e.func.id
        bound = scope.vars.get(fid)
        if bound is None:
            callee = scope.file.defs.get(fid)  # `_callee`, inline
            if callee is None or not isinstance(callee, ast.BlockDef):
                callee = get_op(fid)
                if callee is not None and callee.kind == "loss":
                    callee = None
            if callee is None:
                if fid in FUNCTIONS:
                    return self._function(e, scope, namer)
                raise NameProblem(f"unknown op or block '{clip(fid)}'", e.func.span,
                                  hint=did_you_mean(fid, list(scope.file.defs) + list(REGISTRY) + list(FUNCTIONS)))
            pos, kw, repeat = [], {}, 1
        else:
            # A parameter may hold a layer (`unit = Bottleneck`): calling it adds arguments.
            if not isinstance(bound.value, Layer) or bound.value.tensors:
                raise GraphProblem(f"'{fid}' is {_kind(bound.value)}, not an op or block", e.func.span)
            bound.used = True
            base = bound.value
            callee, pos, kw, repeat = base.callee, list(base.pos), dict(base.kw), base.repeat
        tensors = []
        for a in e.args:
            x = a.value
            if isinstance(x, (ast.Num, ast.Str, ast.Bool)):  # most arguments: a literal, no tensor
                v, origin, tensorish = x.value, None, False
            else:
                v = self.evaluate(x, scope, namer)
                origin = self._origin(x, scope)
                tensorish = isinstance(v, Tensor) or isinstance(v, tuple) and _is_tensorish(v)
            if tensorish:
                if a.name is not None:
                    raise GraphProblem(f"tensor inputs are passed by position, not as '{a.name}='", a.span)
                tensors.extend(_tensors(v))
            elif a.name is None:
                pos.append((v, a.span, origin))
            elif a.name in kw:
                raise ParamProblem(f"{callee.name}: parameter '{a.name}' is given twice", a.name_span)
            else:
                kw[a.name] = (v, a.span, a.name_span, origin)
        return Layer(callee, pos, kw, tensors, e.span, None, repeat)

    def _function(self, e: ast.Call, scope: Scope, namer: Namer):
        args, spans = [], []
        for a in e.args:
            if a.name is not None:
                raise ParamProblem(f"{e.func.id}() takes no named arguments", a.name_span or a.span)
            v = self.evaluate(a.value, scope, namer)
            if _is_tensorish(v) or isinstance(v, Layer) or isinstance(v, Symbolic):
                raise ParamProblem(f"{e.func.id}() takes compile-time values, got {_kind(v)}", a.span)
            args.append(v)
            spans.append(a.span)
        return call_function(e.func.id, args, spans, e.span)

    @staticmethod
    def _callee(name: str, scope: Scope):
        d = scope.file.defs.get(name)
        if isinstance(d, ast.BlockDef):
            return d
        op = get_op(name)
        if op is not None and op.kind == "loss":
            return None
        return op

    def _step(self, item, scope: Scope, namer: Namer) -> tuple:
        """One chain step as the layers it runs: a layer, or a list of them run in order."""
        return _steps(self._step_value(item, scope, namer), item)

    def _step_value(self, item, scope: Scope, namer: Namer):
        """A chain step's value: a layer is not applied to its tensor arguments yet."""
        if isinstance(item, ast.Call):
            return self._call(item, scope, namer)
        if isinstance(item, (ast.Name, ast.Named)):
            return self._value_or_layer(item, scope, namer)
        if isinstance(item, ast.BinOp):
            return self._binop(item, scope, namer, in_chain=True)
        return self.evaluate(item, scope, namer)

    def _chain(self, e: ast.Chain, scope: Scope, namer: Namer):
        first = e.items[0]
        if isinstance(first, ast.Name) and first.id in scope.vars:  # `x -> ...`: `_value_or_layer`'s first case
            b = scope.vars[first.id]
            b.used = True
            v = b.value
        elif isinstance(first, (ast.Name, ast.Call, ast.Named)):
            v = self._value_or_layer(first, scope, namer)
        else:
            v = self.evaluate(first, scope, namer)
        if not isinstance(v, Tensor):  # the common case, `x -> ...`, needs none of the head's checks
            v, composed = self._chain_head(v, e, scope, namer)
            if composed:
                return v
        for item in e.items[1:]:
            s = self._call(item, scope, namer) if isinstance(item, ast.Call) else self._step_value(item, scope, namer)
            if isinstance(s, Layer):  # one layer, the common step: `_steps` without its tuple
                v = self.apply(s, [v] if isinstance(v, Tensor) else list(v), scope, namer)
                continue
            # A list of layers (`[Block(c) for c in widths]`) runs them one after the other.
            for step in _steps(s, item):
                v = self.apply(step, [v] if isinstance(v, Tensor) else list(v), scope, namer)
        return v

    def _chain_head(self, v, e: ast.Chain, scope: Scope, namer: Namer):
        """(what a chain that does not start from one tensor runs from, False): its first layer
        applied (`Param(...) -> ...`) or its tensors; or (the layers it composes, True) when no
        tensor is in front."""
        first = e.items[0]
        if isinstance(v, Layer) and (v.tensors or _sourceless(v) and not isinstance(first, ast.Name)):
            v = self.apply(v, [], scope, namer)
        if isinstance(v, Layer) or (_is_layers(v) and not any(x.tensors for x in v)):
            # `Conv2d(8, 3) -> ReLU` with no tensor in front composes layers, for a list or a name.
            head = (v,) if isinstance(v, Layer) else v
            return head + tuple(s for item in e.items[1:] for s in self._step(item, scope, namer)), True
        if not _is_tensorish(v):
            raise GraphProblem(f"a chain starts from a tensor, got {_kind(v)}", first.span,
                               hint="start from an input or a named tensor: x -> ...")
        return v, False


def _is_symbolic_dim(name: str, scope: Scope) -> bool:
    """A name that is a symbolic dim of the network's inputs (the batch N)."""
    return any(name in t.shape for n in scope.g.graph["inputs"] for t in scope.g.nodes[n]["types"])


def _sourceless(layer: Layer) -> bool:
    """An op that takes no tensor inputs (Param): its call is a tensor, made where it is written."""
    return getattr(layer.callee, "arity", None) == (0, 0)


def _steps(v, item) -> tuple:
    """A chain step's value as the layers it runs, in order."""
    if isinstance(v, Layer):
        return (v,)
    steps = _flat_layers(v)
    if steps is None:
        raise GraphProblem(f"cannot pass a tensor through {_kind(v)}", item.span,
                           hint="each step after '->' is an op, a block or a list of them")
    return steps


def _is_layers(v) -> bool:
    return isinstance(v, tuple) and len(v) > 0 and all(isinstance(x, Layer) for x in v)


def _flat_layers(v) -> tuple | None:
    """A layer or (nested) lists of layers as the flat sequence they run in; None if not layers."""
    if isinstance(v, Layer):
        return (v,)
    if not isinstance(v, tuple):
        return None
    out = []
    for x in v:
        inner = _flat_layers(x)
        if inner is None:
            return None
        out += inner
    return tuple(out)


