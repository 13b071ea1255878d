"""Elaborate: a loaded program -> the graph of one network. Walks statements and expressions:
resolves names in the file scope a block was written in, expands blocks, repetition,
comprehensions and conditionals, evaluates compile-time values (`values`), and hands each
layer to the `builder`, which runs its shape rule as it is added."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import ValidationError

from . import ast
from .builder import MAX_LAYERS, Namer, Scope, add_layer, check_names, op_params, tensor_type
from .errors import (GraphProblem, LimitProblem, NameProblem, ParamProblem, ShapeProblem, Span, SyntaxProblem, clip,
                     did_you_mean)
from .graph import Ref, add_input, add_output, add_target, new_graph
from .loader import FileScope, Loader
from .ops import REGISTRY, get_op
from .parse import KEYWORDS, deep_stack, parse
from .types import DTYPES, TensorType
from .validation import first as first_error
from .values import (FUNCTIONS, Layer, Symbolic, Tensor, arithmetic, call_function, check_size,
                     is_tensorish as _is_tensorish, kind as _kind, show as _show, tensors_of as _tensors)

MAX_REPEAT = 10_000
STUB_AFTER = 4_096
# A param's initial values: name -> the parameter its one positional argument sets.
PARAM_INITS = {"zeros": None, "ones": None, "normal": "std", "uniform": "std", "trunc_normal": "std",
               "constant": "value"}  # layers built before repeated block expansions are only counted
MAX_BLOCK_DEPTH = 64

__all__ = ["elaborate_file", "Elaborator", "MAX_LAYERS", "Override", "constant"]


@dataclass
class Binding:
    value: Any
    span: Span | None
    used: bool = False
    is_output: bool = False
    origin: str | None = None  # "--set NAME=VALUE" when the value came from the command line


@dataclass(frozen=True)
class Override:
    """A network parameter set from outside the spec (`--set`, `load(params=...)`)."""

    value: Any
    origin: str  # how the user wrote it, for messages: "--set classes=2.5"


class Elaborator:
    """Walks one network and builds its graph.

    Past `STUB_AFTER` layers it stops building what it has seen: a block expansion with the
    same block, parameters and input types as an earlier one is credited with that one's layer
    count and a placeholder node, so a spec of blocks that double 40 times is refused after a
    few thousand layers instead of after building 200,000. Such a walk only counts
    (`partial`); a network that stays within MAX_LAYERS is then built again in full.
    """

    def __init__(self, loader: Loader | None = None, stub_after: float | None = None):
        self.loader = loader or Loader()
        self.stub_after = STUB_AFTER if stub_after is None else stub_after
        self.partial = False  # placeholders were used: the graph only served to count
        self.layers = 0  # layers made so far, credited expansions included
        self.memo: dict = {}  # expansion key -> (layers it makes, its output types)

    # Networks ------------------------------------------------------------------------------

    def network(self, path: str, name: str | None, overrides: dict[str, Override] | None = None) -> nx.DiGraph:
        """Elaborate one network of a file; `overrides` replace some of its parameters."""
        defs = self.loader.load(path)
        if name is None:
            if len(defs.own_networks) == 1:
                name = defs.own_networks[0]
            elif not defs.own_networks:
                raise NameProblem(f"{path} defines no network", None,
                                  hint="a spec needs `network Name { ... }`")
            else:
                raise NameProblem(f"{path} defines {len(defs.own_networks)} networks: "
                                  + ", ".join(defs.own_networks), None,
                                  hint=f"name one, for example {path}:{defs.own_networks[-1]}")
        item = defs.defs.get(name)
        if not isinstance(item, (ast.NetworkDef, ast.NetworkAlias)):
            msg = f"'{clip(name)}' is a block, not a network" if isinstance(item, ast.BlockDef) \
                else f"{path} defines no network '{clip(name)}'"
            networks = [n for n, d in defs.defs.items() if not isinstance(d, ast.BlockDef)]
            raise NameProblem(msg, item.span if item else None,
                              hint=did_you_mean(name, networks) or ("networks: " + ", ".join(networks)))
        args: list = []
        alias = None
        if isinstance(item, ast.NetworkAlias):
            alias = item
            base = item.scope.defs.get(item.target)
            if not isinstance(base, ast.NetworkDef):
                raise NameProblem(f"'{item.target}' is not a network with parameters", item.span,
                                  hint=did_you_mean(item.target, [n for n, d in item.scope.defs.items()
                                                                  if isinstance(d, ast.NetworkDef)]))
            args, item = item.args, base
        g = new_graph(alias.name if alias else item.name, path)
        scope = Scope(g, "", (), (), True, item.scope)
        caller = Scope(g, "", (), (), True, alias.scope if alias else item.scope)
        overrides = overrides or {}
        names = [p.name for p in item.params]
        for key, o in overrides.items():
            if key not in names:
                raise ParamProblem(f"{o.origin}: network {item.name} has no parameter '{clip(key)}'", None,
                                   hint=did_you_mean(key, names) or f"its parameters: {', '.join(names) or 'none'}")
        args = [a for a in args if a.name not in overrides]
        self._bind_params(item, args, caller, scope, alias.span if alias else item.span, overrides)
        # Top-level losses and train blocks apply to networks without their own: those of the
        # file the user named first, else those of the file that defines the network.
        home = item.scope
        body = list(item.body)
        if not any(isinstance(s, ast.LossStmt) for s in body):
            body += defs.losses or home.losses
        if not any(isinstance(s, ast.TrainDef) for s in body):
            body += defs.trains or home.trains
        self.implicit_targets: dict[str, list] = {}
        self.exec_block(body, scope)
        if not g.graph["outputs"]:
            raise GraphProblem(f"network {item.name} declares no output", item.span,
                               hint="add `output NAME = ...`")
        self._check_unused(scope)
        self._check_targets(g)
        if not self.partial:
            check_names(g)
        return g

    def _bind_params(self, item, args: list, caller: Scope, scope: Scope, call_span: Span,
                     overrides: dict[str, Override]) -> None:
        """Bind a network's compile-time parameters from an alias's arguments and overrides."""
        pos, kw = [], {}
        for a in args:
            v = self.evaluate(a.value, caller)
            if _is_tensorish(v):
                raise ParamProblem(f"{item.name} takes no tensor here", a.span)
            if a.name is None:
                pos.append((v, a.span, None))
            else:
                kw[a.name] = (v, a.span, a.name_span, None)
        for key, o in overrides.items():
            kw[key] = (o.value, None, None, o.origin)
        self._bind(item, item.params, pos, kw, scope, call_span)

    def _bind(self, item, params: list, pos: list, kw: dict, scope: Scope, call_span: Span) -> None:
        names = [p.name for p in params]
        if len(pos) > len(params):
            raise ParamProblem(f"{item.name} takes {len(params)} parameter{'s' if len(params) != 1 else ''}"
                               f" ({', '.join(names) or 'none'}), got {len(pos)} positional", pos[len(params)][1])
        values = {}
        for p, (v, span, origin) in zip(params, pos):
            values[p.name] = (v, span, origin)
        for k, (v, span, name_span, origin) in kw.items():
            if k not in names:
                raise ParamProblem(f"{item.name} has no parameter '{k}'", name_span or span,
                                   hint=did_you_mean(k, names) or f"its parameters: {', '.join(names) or 'none'}")
            if k in values:
                raise ParamProblem(f"{item.name}: parameter '{k}' is given twice", name_span or span)
            values[k] = (v, span, origin)
        for p in params:
            if p.name not in values:
                if p.default is None:
                    raise ParamProblem(f"{item.name} needs a value for its parameter '{p.name}'", call_span)
                # Defaults are evaluated in the definition's own scope, seeing earlier parameters.
                values[p.name] = (self.evaluate(p.default, scope), p.span, None)
            v, span, origin = values[p.name]
            scope.vars[p.name] = Binding(v, span or p.span, used=True, origin=origin)

    # Statements ----------------------------------------------------------------------------

    def exec_block(self, stmts: list, scope: Scope) -> None:
        for s in stmts:
            self.statement(s, scope)

    def _define_var(self, scope: Scope, name: str, value, span: Span, used=False) -> Binding:
        if name == "_":  # discarded: never read, never checked for use
            return Binding(value, span, used=True)
        self._check_new(scope, name, span)
        b = Binding(value, span, used=used or not _is_tensorish(value))
        scope.vars[name] = b
        return b

    def _check_new(self, scope: Scope, name: str, span: Span) -> None:
        if name == "_":
            return
        old = scope.vars.get(name)
        if old is not None:
            raise NameProblem(f"'{name}' is already defined", span,
                              notes=(("first defined here", old.span),) if old.span else (),
                              hint="tensors are named once; give this one another name")
        if name in REGISTRY or name in scope.file.defs:
            raise NameProblem(f"'{name}' is the name of an {'op' if name in REGISTRY else 'block or network'}",
                              span, hint="give the tensor another name")

    def statement(self, s, scope: Scope) -> None:
        if isinstance(s, ast.InputDecl):
            self._inputs(s, scope)
        elif isinstance(s, ast.TargetDecl):
            if not scope.is_network:
                raise GraphProblem("targets are declared in a network, not in a block", s.span)
            ref = add_target(scope.g, s.name, self.tensor_type(s.type, scope), s.span)
            self._define_var(scope, s.name, Tensor(ref, s.span), s.span, used=True)
        elif isinstance(s, ast.Assign):
            self._assign(s, scope)
        elif isinstance(s, ast.OutputDecl):
            self._output(s, scope)
        elif isinstance(s, ast.IfStmt):
            cond = self.evaluate(s.cond, scope)
            if not isinstance(cond, bool):
                raise ParamProblem(f"a condition must be true or false, got {_kind(cond)}", s.cond.span,
                                   hint="conditions are decided at compile time, from parameters")
            for name in _assigned(s.other if cond else s.then):
                scope.skipped.setdefault(name, (s.span, cond))
            self.exec_block(s.then if cond else s.other, scope)
        elif isinstance(s, ast.AssertStmt):
            self._assert(s, scope)
        elif isinstance(s, ast.ParamDecl):
            self._param(s, scope)
        elif isinstance(s, ast.LossStmt):
            self._loss(s, scope)
        elif isinstance(s, ast.TrainDef):
            self._train(s, scope)
        else:  # the grammar allows nothing else
            raise GraphProblem(f"unexpected statement {type(s).__name__}", s.span)

    def _assert(self, s: ast.AssertStmt, scope: Scope) -> None:
        cond = self.evaluate(s.cond, scope)
        if not isinstance(cond, bool):
            raise ParamProblem(f"an assert needs true or false, got {_kind(cond)}", s.cond.span)
        if cond:
            return
        message = "assertion failed"
        if s.message is not None:
            m = self.evaluate(s.message, scope)
            message = m if isinstance(m, str) else _show(m)
        notes = tuple((f"in block {label}, used here", span) for label, span in reversed(scope.context[-4:]))
        raise ParamProblem(message, s.cond.span, notes=notes)

    def _param(self, s: ast.ParamDecl, scope: Scope) -> None:
        """`param NAME: DTYPE[DIMS] = INIT` is a `Param` layer named NAME."""
        op = get_op("Param")
        if op is None:
            raise NameProblem("'param' needs the Param op, which this netspec lacks", s.span)
        self._check_new(scope, s.name, s.name_span)
        t = self.tensor_type(s.type, scope)
        for d, e in zip(t.shape, s.type.dims):
            if isinstance(d, str):
                raise ShapeProblem(f"a param has fixed dims; '{d}' is symbolic", e.span)
        kw = {"shape": (tuple(t.shape), s.type.span, None, None), "dtype": (t.dtype, s.type.span, None, None)}
        if s.init is not None:
            init = s.init.func if isinstance(s.init, ast.Call) else s.init
            if not isinstance(init, ast.Name) or init.id not in PARAM_INITS:
                raise ParamProblem("a param's initial value is one of " + ", ".join(PARAM_INITS), s.init.span,
                                   hint="for example: param scale: float32[64, 1, 1] = constant(1e-6)")
            kw["init"] = (init.id, init.span, None, None)
            for a in (s.init.args if isinstance(s.init, ast.Call) else []):
                key = a.name or PARAM_INITS[init.id]
                if key is None:
                    raise ParamProblem(f"{init.id} takes no value", a.span)
                kw[key] = (self.evaluate(a.value, scope), a.value.span, a.name_span, self._origin(a.value, scope))
        layer = Layer(op, [], kw, span=s.span, name=s.name)
        value = self.apply(layer, [], scope, Namer(scope, s.name, True))
        self._define_var(scope, s.name, value, s.name_span)

    def _inputs(self, s: ast.InputDecl, scope: Scope) -> None:
        if not scope.is_network:
            return  # a block's inputs are bound by its caller before the body runs
        for item in s.items:
            if item.type is None:
                raise ShapeProblem(f"network input '{item.name}' needs a type", item.span,
                                   hint=f"for example: input {item.name}: float32[N, 3, 224, 224]")
            ref = add_input(scope.g, item.name, self.tensor_type(item.type, scope), item.span)
            self._define_var(scope, item.name, Tensor(ref, item.span), item.span)

    def tensor_type(self, t: ast.TensorTypeE, scope: Scope) -> TensorType:
        if t.dtype not in DTYPES:
            raise ShapeProblem(f"unknown dtype '{clip(t.dtype)}'", t.span,
                               hint=did_you_mean(t.dtype, DTYPES) or f"dtypes: {', '.join(DTYPES)}")
        dims = []
        for d in t.dims:
            if isinstance(d, ast.Name) and d.id not in scope.vars:
                dims.append(d.id)  # a symbolic dim, such as the batch size N
                continue
            v = self.evaluate(d, scope)
            if isinstance(v, Symbolic):
                dims.append(v.name)
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ShapeProblem(f"a dimension must be a positive integer or a symbolic name, got {_show(v)}", d.span)
            dims.append(v)
        return TensorType(t.dtype, tuple(dims))

    def _single_layer(self, e) -> bool:
        """True when a statement's value is one layer application, so the layer takes its name."""
        def plain(x) -> bool:  # makes no layer of its own
            if isinstance(x, ast.ListE):
                return all(plain(i) for i in x.items)
            if isinstance(x, ast.Attr):
                return plain(x.value)
            if isinstance(x, ast.Index):
                return plain(x.value) and all(plain(i) for i in x.items if not isinstance(i, ast.Slice))
            if isinstance(x, ast.Call):
                return isinstance(x.func, ast.Name) and x.func.id in FUNCTIONS and all(plain(a.value) for a in x.args)
            return isinstance(x, (ast.Name, ast.Num, ast.Str, ast.Bool)) or (
                isinstance(x, (ast.BinOp, ast.Neg))
                and all(plain(c) for c in (getattr(x, "left", None), getattr(x, "right", None),
                                           getattr(x, "value", None)) if c is not None))

        if isinstance(e, ast.Call):
            return all(plain(a.value) for a in e.args)
        if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*"):
            return isinstance(e.left, ast.Name) and isinstance(e.right, ast.Name)
        if isinstance(e, ast.Chain) and len(e.items) == 2 and isinstance(e.items[0], ast.Name):
            return isinstance(e.items[1], ast.Name) or self._single_layer(e.items[1])
        return False

    def _assign(self, s: ast.Assign, scope: Scope) -> None:
        # Check the names first: `h = h -> ReLU` would otherwise fail later as a layer-name clash.
        for name, span in zip(s.names, s.name_spans):
            self._check_new(scope, name, span)
        if all(n == "_" for n in s.names):
            scope.anon += 1
            base = f"_{scope.anon}"
        else:
            base = "_".join(n for n in s.names if n != "_")
        value = self.evaluate(s.value, scope, Namer(scope, base, self._single_layer(s.value)))
        if len(s.names) == 1:
            self._define_var(scope, s.names[0], value, s.name_spans[0])
            return
        if not isinstance(value, tuple) or len(value) != len(s.names):
            n = len(value) if isinstance(value, tuple) else 1
            raise GraphProblem(f"{len(s.names)} names on the left, but the right gives {n} value{'s' if n != 1 else ''}",
                               s.span)
        for name, span, v in zip(s.names, s.name_spans, value):
            self._define_var(scope, name, v, span)

    def _output(self, s: ast.OutputDecl, scope: Scope) -> None:
        if s.value is None:
            b = scope.vars.get(s.name)
            if b is None:
                raise self._undefined(s.name, s.name_span, scope, "tensor")
            b.used = b.is_output = True
            value = b.value
        else:
            self._check_new(scope, s.name, s.name_span)
            value = self.evaluate(s.value, scope, Namer(scope, s.name, self._single_layer(s.value)))
            b = self._define_var(scope, s.name, value, s.name_span, used=True)
            b.is_output = True
        if not isinstance(value, Tensor):
            raise GraphProblem(f"output '{s.name}' must be one tensor, got {_kind(value)}", s.span)
        if scope.is_network:
            if any(n == s.name for n, _, _ in scope.g.graph["outputs"]):
                raise NameProblem(f"output '{s.name}' is declared twice", s.span)
            add_output(scope.g, s.name, value.ref, s.span)

    def _loss(self, s: ast.LossStmt, scope: Scope) -> None:
        if not scope.is_network:
            raise GraphProblem("losses belong to a network, not a block", s.span)
        op = get_op(s.op)
        if op is None or op.kind != "loss":
            losses = [n for n, o in REGISTRY.items() if o.kind == "loss"]
            what = "is an op, not a loss" if op else "is not a loss"
            raise NameProblem(f"'{clip(s.op)}' {what}", s.span,
                              hint=did_you_mean(s.op, losses) or f"losses: {', '.join(losses)}")
        weight, pos, kw, tensors = 1.0, [], {}, []
        for a in s.args:
            if a.name == "weight":
                weight = self.evaluate(a.value, scope)
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise ParamProblem(f"a loss weight must be a number >= 0, got {_show(weight)}", a.value.span)
                continue
            if a.name is None and isinstance(a.value, ast.Name) and len(tensors) < 2:
                name = a.value.id
                b = scope.vars.get(name)
                if b is None and name not in REGISTRY and name not in scope.file.defs:
                    if len(tensors) == 0:
                        raise self._undefined(name, a.span, scope, "tensor")
                    # An undeclared second argument is a target that the dataset provides.
                    ref = add_target(scope.g, name, None, a.span)
                    b = self._define_var(scope, name, Tensor(ref, a.span), a.span, used=True)
                    self.implicit_targets[name] = [a.span, 0]
                if b is not None and isinstance(b.value, Tensor):
                    b.used = True
                    if len(tensors) == 1 and name in self.implicit_targets:
                        self.implicit_targets[name][1] += 1
                    tensors.append(b.value)
                    continue
            v = self.evaluate(a.value, scope)
            if isinstance(v, Tensor):
                tensors.append(v)
            elif a.name is None:
                pos.append((v, a.span, None))
            else:
                kw[a.name] = (v, a.span, a.name_span, None)
        if len(tensors) != 2:
            raise GraphProblem(f"{s.op} takes a prediction and a target, got {len(tensors)} tensor"
                               f"{'s' if len(tensors) != 1 else ''}", s.span,
                               hint=f"for example: loss {s.op}(logits, label)")
        p, spans = op_params(Layer(op, pos, kw, [], s.span))
        k = len(scope.g.graph["losses"])
        self._count(1, s.span)
        add_layer(scope, f"loss.{k}", op, p, tensors, s.span, spans, kind="loss", weight=float(weight))

    def _check_targets(self, g: nx.DiGraph) -> None:
        """An undeclared target named like another target is a typo (`lable` for `label`): a
        dataset feeds one target, so a second one would fail only at `train`."""
        declared = [t for t in g.graph["targets"] if t not in self.implicit_targets]
        # The most used name is the intended one; among equals, the first written.
        ranked = sorted(self.implicit_targets, key=lambda n: -self.implicit_targets[n][1])
        for i, name in enumerate(ranked):
            others = declared + ranked[:i]
            hint = did_you_mean(name, others)
            if hint:
                span = self.implicit_targets[name][0]
                raise NameProblem(f"undeclared target '{clip(name)}' is named like another target", span,
                                  hint=f"{hint} (to mean a second target, declare it: target {name}: DTYPE[DIMS])")

    def _train(self, s: ast.TrainDef, scope: Scope) -> None:
        from .trainconfig import OPTIMIZERS, SCHEDULES, TrainConfig
        raw, spans, whole = {}, {}, {}
        for st in s.settings:
            if st.name in raw:
                raise NameProblem(f"train setting '{st.name}' is given twice", st.span)
            spans[(st.name,)] = st.value.span
            whole[st.name] = st.span
            raw[st.name] = self._setting(st.value, scope, (st.name,), spans)
        try:
            cfg = TrainConfig.model_validate(raw)
        except ValidationError as e:
            loc, msg, _ = first_error(e)
            model = TrainConfig
            # pydantic puts the union's tag in the path (optimizer.SGD.lr); the author wrote optimizer.lr.
            kinds = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}
            if len(loc) > 1 and loc[1] in kinds.get(loc[0], {}):
                model, loc = kinds[loc[0]][loc[1]], (loc[0],) + loc[2:]
            span = s.span
            for n in range(len(loc), 0, -1):
                if loc[:n] in spans:
                    span = spans[loc[:n]]
                    break
            field_name = ".".join(str(x) for x in loc) or "train"
            fields = [f for f in model.model_fields if f != "name"]
            hint = None
            if loc and "Extra inputs" in msg:
                msg = "unknown setting"
                hint = did_you_mean(str(loc[-1]), fields) or f"settings: {', '.join(fields)}"
                span = whole.get(loc[0], span) if len(loc) == 1 else span
            raise ParamProblem(f"train: {field_name}: {msg}", span, hint) from None
        scope.g.graph["train"] = cfg
        scope.g.graph["train_spans"] = spans

    def _setting(self, e, scope: Scope, path: tuple, spans: dict):
        """A train setting's value: `SGD(lr=0.1)` and a bare `Cosine` become dicts with a name."""
        func = e.func if isinstance(e, ast.Call) else e
        if isinstance(func, ast.Name) and func.id not in scope.vars and func.id not in FUNCTIONS \
                and (isinstance(e, ast.Call) or func.id[:1].isupper()):
            d = {"name": func.id}
            spans[path + ("name",)] = func.span
            for a in (e.args if isinstance(e, ast.Call) else []):
                if a.name is None:
                    raise ParamProblem(f"{func.id}: settings are written name=value", a.span)
                spans[path + (a.name,)] = a.value.span
                d[a.name] = self._setting(a.value, scope, path + (a.name,), spans)
            return d
        v = self.evaluate(e, scope)
        return list(v) if isinstance(v, tuple) else v

    # Expressions ---------------------------------------------------------------------------

    def _hint(self, name: str, scope: Scope) -> str | None:
        return did_you_mean(name, list(scope.vars) + list(scope.file.defs) + list(REGISTRY))

    def _undefined(self, name: str, span: Span, scope: Scope, what: str = "name") -> NameProblem:
        notes = ()
        hint = self._hint(name, scope)
        if name in KEYWORDS:
            hint = f"'{name}' is a keyword: does the line before end in '->' with nothing after it?"
        elif name in scope.skipped:
            where, cond = scope.skipped[name]
            branch = "else branch" if cond else "if branch"
            hint = (f"'{name}' is assigned only in the {branch}, which was not taken here; "
                    f"assign it in both branches")
            notes = ((f"the if whose condition was {_show(cond)}", where),)
        elif hint is None and name == "x" and not scope.is_network and "in" in scope.vars:
            hint = "a block's input is called 'in' unless the block declares `input NAME`"
        elif hint is None and any(name in t.shape for n in scope.g.graph["inputs"]
                                  for t in scope.g.nodes[n]["types"]):
            hint = (f"'{name}' is a symbolic dim: it names a size in an input's type only; read sizes "
                    f"with x.shape[i] (fixed dims), or write -1 for the one dim to infer")
        return NameProblem(f"undefined {what} '{clip(name)}'", span, hint=hint, notes=notes)

    def evaluate(self, e, scope: Scope, namer: Namer | None = None):
        if namer is None:
            scope.anon += 1
            namer = Namer(scope, f"_{scope.anon}")
        if isinstance(e, (ast.Num, ast.Str, ast.Bool)):
            return e.value
        if isinstance(e, ast.ListE):
            return check_size(tuple(self.evaluate(x, scope, namer) for x in e.items), e.span)
        if isinstance(e, ast.Comprehension):
            return self._comprehension(e, scope, namer)
        if isinstance(e, ast.Chain):
            return self._chain(e, scope, namer)
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
        result = v[i]
        if isinstance(result, Symbolic) and isinstance(e.value, ast.Attr):
            raise ShapeProblem(f"dim {i} of this tensor is symbolic ({result.name}): its size is known only at run time",
                               e.span, hint="compile-time expressions read fixed dims only")
        return result

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
            starts.append(0 if start is None else start)
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
            if isinstance(b, bool) or not isinstance(b, int):
                raise ParamProblem(f"a repetition count must be an integer, got {_kind(b)}", e.right.span)
            if not 0 <= b <= MAX_REPEAT:
                cls = LimitProblem if b > MAX_REPEAT else ParamProblem
                raise cls(f"a repetition count must be between 0 and {MAX_REPEAT:,}, got {b:,}", e.right.span)
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
        if isinstance(e, ast.Named):
            v = self._value_or_layer(e.value, scope, namer)
            if not isinstance(v, Layer):
                raise GraphProblem(f"only a layer can be named with 'as', not {_kind(v)}", e.span)
            return replace(v, name=e.name)
        if isinstance(e, ast.Name):
            b = scope.vars.get(e.id)
            if b is not None:
                b.used = True
                return b.value
            callee = self._callee(e.id, scope)
            if callee is None:
                raise self._undefined(e.id, e.span, scope)
            return Layer(callee, span=e.span)
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Name):
                raise GraphProblem("only ops, blocks and value functions can be called", e.func.span)
            bound = scope.vars.get(e.func.id)
            if bound is None and e.func.id in FUNCTIONS and self._callee(e.func.id, scope) is None:
                return self._function(e, scope, namer)
            if bound is not None:
                # A parameter may hold a layer (`unit = Bottleneck`): calling it adds arguments.
                if not isinstance(bound.value, Layer) or bound.value.tensors:
                    raise GraphProblem(f"'{e.func.id}' is {_kind(bound.value)}, not an op or block", e.func.span)
                bound.used = True
                base = bound.value
                layer = Layer(base.callee, list(base.pos), dict(base.kw), span=e.span, repeat=base.repeat)
                callee = base.callee
            else:
                callee = self._callee(e.func.id, scope)
                if callee is None:
                    raise NameProblem(f"unknown op or block '{clip(e.func.id)}'", e.func.span,
                                      hint=did_you_mean(e.func.id, list(scope.file.defs) + list(REGISTRY)
                                                        + list(FUNCTIONS)))
                layer = Layer(callee, span=e.span)
            for a in e.args:
                v = self.evaluate(a.value, scope, namer)
                origin = self._origin(a.value, scope)
                if _is_tensorish(v):
                    if a.name is not None:
                        raise GraphProblem(f"tensor inputs are passed by position, not as '{a.name}='", a.span)
                    layer.tensors.extend(_tensors(v))
                elif a.name is None:
                    layer.pos.append((v, a.span, origin))
                elif a.name in layer.kw:
                    raise ParamProblem(f"{callee.name}: parameter '{a.name}' is given twice", a.name_span)
                else:
                    layer.kw[a.name] = (v, a.span, a.name_span, origin)
            return layer
        return self.evaluate(e, scope, namer)

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
        if isinstance(item, (ast.Name, ast.Call, ast.Named, ast.BinOp)):
            layer = self._value_or_layer(item, scope, namer) if not isinstance(item, ast.BinOp) \
                else self._binop(item, scope, namer, in_chain=True)
        else:
            layer = self.evaluate(item, scope, namer)
        steps = _flat_layers(layer)
        if steps is None:
            raise GraphProblem(f"cannot pass a tensor through {_kind(layer)}", item.span,
                               hint="each step after '->' is an op, a block or a list of them")
        return steps

    def _chain(self, e: ast.Chain, scope: Scope, namer: Namer):
        first = e.items[0]
        v = self._value_or_layer(first, scope, namer) if isinstance(first, (ast.Name, ast.Call, ast.Named)) \
            else self.evaluate(first, scope, namer)
        if isinstance(v, Layer) and (v.tensors or _sourceless(v) and not isinstance(first, ast.Name)):
            v = self.apply(v, [], scope, namer)
        if isinstance(v, Layer) or (_is_layers(v) and not any(x.tensors for x in v)):
            # `Conv2d(8, 3) -> ReLU` with no tensor in front composes layers, for a list or a name.
            head = (v,) if isinstance(v, Layer) else v
            return head + tuple(s for item in e.items[1:] for s in self._step(item, scope, namer))
        if not _is_tensorish(v):
            raise GraphProblem(f"a chain starts from a tensor, got {_kind(v)}", first.span,
                               hint="start from an input or a named tensor: x -> ...")
        for item in e.items[1:]:
            # A list of layers (`[Block(c) for c in widths]`) runs them one after the other.
            for step in self._step(item, scope, namer):
                v = self.apply(step, _tensors(v), scope, namer)
        return v

    # Applying layers -----------------------------------------------------------------------

    def apply(self, layer: Layer, piped: list[Tensor], scope: Scope, namer: Namer):
        if layer.repeat != 1 and layer.tensors:
            raise GraphProblem(f"a repeated {layer.title} cannot take extra tensor arguments", layer.span)
        if layer.repeat != 1 and layer.name:
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
        if key is not None and key in self.memo and self.layers >= self.stub_after:
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
        self.exec_block(block.body, inner)
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


def _sourceless(layer: Layer) -> bool:
    """An op that takes no tensor inputs (Param): its call is a tensor, made where it is written."""
    return getattr(layer.callee, "arity", None) == (0, 0)


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


def _assigned(stmts: list) -> list[str]:
    """The names a branch's statements define, nested ifs included."""
    names = []
    for s in stmts:
        if isinstance(s, ast.Assign):
            names += s.names
        elif isinstance(s, ast.OutputDecl) and s.value is not None:
            names.append(s.name)
        elif isinstance(s, ast.ParamDecl):
            names.append(s.name)
        elif isinstance(s, ast.IfStmt):
            names += _assigned(s.then) + _assigned(s.other)
    return names


def constant(key: str, text: str, origin: str):
    """A `--set` value written as in a spec (`10`, `[2, 2, 2, 2]`, `"relu"`), as a value."""
    path = f"--set {clip(key)}"
    try:
        parsed = parse(f"{key}={text}", path, start="args")
    except SyntaxProblem as e:
        d = e.diagnostics[0]
        raise SyntaxProblem(f"{clip(origin)}: not a value as a spec writes it ({d.message})", d.span,
                            hint=f"a string is quoted: --set '{clip(key)}=\"{clip(text)}\"'; a list is "
                                 "written [1, 2]") from None
    if len(parsed) != 1 or parsed[0].name is None:
        raise ParamProblem(f"{origin}: not one value", None, hint="write --set NAME=VALUE, e.g. --set classes=10")
    g = new_graph("--set", path)
    scope = Scope(g, "", (), (), True, FileScope(path))
    v = Elaborator().evaluate(parsed[0].value, scope)
    if _is_tensorish(v) or isinstance(v, Layer):
        raise ParamProblem(f"{origin}: a --set value is a number, boolean, string or list", None)
    return v


def elaborate_file(path: str, network: str | None = None, overrides: dict[str, Override] | None = None,
                   loader: Loader | None = None) -> nx.DiGraph:
    """Build the graph of one network of a .net file (the only one, when `network` is None)."""
    loader = loader or Loader()
    with deep_stack():
        try:
            e = Elaborator(loader)
            g = e.network(path, network, overrides)
            if e.partial:  # a large network, counted with placeholders: build it in full
                g = Elaborator(loader, stub_after=math.inf).network(path, network, overrides)
            return g
        except RecursionError:
            raise LimitProblem(f"{path}: the spec nests too deeply to elaborate") from None
