"""Elaborate: AST -> graph. Resolves names, expands blocks and repetition, evaluates
compile-time expressions and conditionals, follows imports, validates op parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import ValidationError

from . import ast
from .errors import (GraphProblem, LimitProblem, NameProblem, ParamProblem, ShapeProblem, Span,
                     did_you_mean)
from .graph import Ref, add_input, add_op, add_output, add_target, new_graph
from .ops import REGISTRY, get_op
from .parse import deep_stack, parse, parse_file
from .types import DTYPES, TensorType

MAX_REPEAT = 10_000
MAX_LAYERS = 200_000
MAX_BLOCK_DEPTH = 64


# Values an expression can take, besides ints, floats, bools, strings and tuples of them.

@dataclass(frozen=True)
class Tensor:
    ref: Ref
    span: Span


@dataclass
class Layer:
    """An op or block with its parameters bound, waiting for its input tensors."""

    callee: Any  # an Op class or an ast.BlockDef
    pos: list = field(default_factory=list)  # (value, span) of positional parameters
    kw: dict = field(default_factory=dict)  # name -> (value, span, name span)
    tensors: list = field(default_factory=list)  # tensor arguments written in the call
    span: Span | None = None
    name: str | None = None  # from `as NAME`
    repeat: int = 1

    @property
    def title(self) -> str:
        return self.callee.name


@dataclass
class Binding:
    value: Any
    span: Span | None
    used: bool = False
    is_output: bool = False


class Namer:
    """Gives the layers of one statement their names: `x.0, x.1, ...`, or `x` for a single layer."""

    def __init__(self, scope: "Scope", base: str, single: bool = False):
        # A block's `out` chain is numbered right under the block, as nn.Sequential would be.
        self.base = "" if base == "out" and scope.prefix else base + "."
        self.scope, self.single, self.count = scope, single and bool(self.base), 0

    def next(self, explicit: str | None = None) -> str:
        if explicit:
            self.count += 1  # the layers after it keep the numbers they would have had
            return self.scope.prefix + explicit
        if self.single and self.count == 0:
            self.count = 1
            return self.scope.prefix + self.base[:-1]
        name = f"{self.scope.prefix}{self.base}{self.count}"
        self.count += 1
        return name


@dataclass
class Scope:
    g: nx.DiGraph
    prefix: str
    context: tuple  # (label, call span) of the block instantiations we are inside, for messages
    stack: tuple  # names of the blocks being expanded, for recursion checks
    is_network: bool
    vars: dict = field(default_factory=dict)
    anon: int = 0


@dataclass
class Definitions:
    """What one file and its imports define."""

    path: str
    defs: dict = field(default_factory=dict)  # name -> BlockDef | NetworkDef | NetworkAlias
    own_networks: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # top-level loss statements of this file
    trains: list = field(default_factory=list)


def _is_tensorish(v) -> bool:
    return isinstance(v, Tensor) or (isinstance(v, tuple) and len(v) > 0 and all(isinstance(x, Tensor) for x in v))


def _tensors(v) -> list[Tensor]:
    return [v] if isinstance(v, Tensor) else list(v)


def _kind(v) -> str:
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, tuple):
        return "several tensors" if _is_tensorish(v) else "a list"
    if isinstance(v, Layer):
        return f"the layer {v.title}"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return type(v).__name__


def _pydantic_messages(e: ValidationError) -> list[tuple[tuple, str, Any]]:
    """(loc, message, input) per field, merging the alternatives of a union into one line."""
    merged: dict[tuple, list[str]] = {}
    inputs: dict[tuple, Any] = {}
    for err in e.errors():
        loc = tuple(x for x in err["loc"] if isinstance(x, (str, int)) and not (isinstance(x, str) and ("[" in x or "-" in x)))
        msg = err["msg"].replace("Value error, ", "")
        merged.setdefault(loc, [])
        if msg not in merged[loc]:
            merged[loc].append(msg)
        inputs.setdefault(loc, err.get("input"))
    return [(loc, "; or ".join(msgs), inputs[loc]) for loc, msgs in merged.items()]


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


class Elaborator:
    def __init__(self):
        self.modules: dict[str, Definitions] = {}
        self.loading: list[str] = []

    # Files and imports ---------------------------------------------------------------------

    def load(self, path: str, span: Span | None = None) -> Definitions:
        key = str(Path(path).resolve())
        if key in self.modules:
            return self.modules[key]
        if key in self.loading:
            cycle = " -> ".join(Path(p).name for p in self.loading[self.loading.index(key):] + [key])
            raise GraphProblem(f"import cycle: {cycle}", span)
        if span is not None and not Path(path).is_file():
            raise NameProblem(f"cannot import \"{path}\": no such file", span)
        self.loading.append(key)
        try:
            items = parse_file(path)
            defs = Definitions(path)
            for item in items:
                if isinstance(item, ast.Import):
                    self._import(defs, item, path)
            for item in items:
                if isinstance(item, (ast.BlockDef, ast.NetworkDef, ast.NetworkAlias)):
                    self._define(defs, item.name, item, item.span)
                    if not isinstance(item, ast.BlockDef):
                        defs.own_networks.append(item.name)
                elif isinstance(item, ast.LossStmt):
                    defs.losses.append(item)
                elif isinstance(item, ast.TrainDef):
                    defs.trains.append(item)
            if len(defs.trains) > 1:
                raise NameProblem("a file may have one top-level train block", defs.trains[1].span,
                                  notes=(("the first is here", defs.trains[0].span),))
        finally:
            self.loading.pop()
        self.modules[key] = defs
        return defs

    def _define(self, defs: Definitions, name: str, item, span: Span) -> None:
        if name in REGISTRY:
            raise NameProblem(f"'{name}' is already the name of an op", span,
                              hint="give the block or network another name")
        old = defs.defs.get(name)
        if old is not None and old is not item:
            raise NameProblem(f"'{name}' is defined twice", span, notes=(("first defined here", old.span),))
        defs.defs[name] = item

    def _import(self, defs: Definitions, item: ast.Import, importer: str) -> None:
        target = str(Path(importer).parent / item.path)
        other = self.load(target, item.span)
        if item.names is None:
            for name, d in other.defs.items():
                self._define(defs, name, d, item.span)
            return
        for name, span in item.names:
            if name not in other.defs:
                raise NameProblem(f"\"{item.path}\" defines no block or network '{name}'", span,
                                  hint=did_you_mean(name, other.defs))
            self._define(defs, name, other.defs[name], span)

    # Networks ------------------------------------------------------------------------------

    def network(self, path: str, name: str | None, params: dict[str, str] | None = None) -> nx.DiGraph:
        """Elaborate one network; `params` override its parameters (values in spec syntax)."""
        defs = self.defs = self.load(path)
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
            msg = f"'{name}' is a block, not a network" if isinstance(item, ast.BlockDef) \
                else f"{path} defines no network '{name}'"
            networks = [n for n, d in defs.defs.items() if not isinstance(d, ast.BlockDef)]
            raise NameProblem(msg, item.span if item else None,
                              hint=did_you_mean(name, networks) or ("networks: " + ", ".join(networks)))
        args: list = []
        alias = None
        if isinstance(item, ast.NetworkAlias):
            alias = item
            base = defs.defs.get(item.target)
            if not isinstance(base, ast.NetworkDef):
                raise NameProblem(f"'{item.target}' is not a network with parameters", item.span,
                                  hint=did_you_mean(item.target, [n for n, d in defs.defs.items()
                                                                  if isinstance(d, ast.NetworkDef)]))
            args, item = item.args, base
        g = new_graph(alias.name if alias else item.name, path)
        scope = Scope(g, "", (), (), True)
        if params:
            args = [a for a in args if a.name not in params] + self._overrides(params)
        self._bind_params(item, args, Scope(g, "", (), (), True), scope, alias.span if alias else item.span)
        # Top-level losses and train blocks apply to networks without their own: those of the
        # file the user named first, else those of the file that defines the network.
        home = self.modules[str(Path(item.path).resolve())]
        body = list(item.body)
        if not any(isinstance(s, ast.LossStmt) for s in body):
            body += defs.losses or home.losses
        if not any(isinstance(s, ast.TrainDef) for s in body):
            body += defs.trains or home.trains
        self.exec_block(body, scope)
        if not g.graph["outputs"]:
            raise GraphProblem(f"network {item.name} declares no output", item.span,
                               hint="add `output NAME = ...`")
        self._check_unused(scope)
        self._check_names(g)
        return g

    @staticmethod
    def _overrides(params: dict[str, str]) -> list:
        """`--set depths=[2,2,2,2]` as keyword arguments, each parsed as a spec expression."""
        args = []
        for key, text in params.items():
            parsed = parse(f"{key}={text}", f"--set {key}", start="args")
            if len(parsed) != 1 or parsed[0].name is None:
                raise ParamProblem(f"'{key}={text}' is not NAME=VALUE", parsed[0].span if parsed else None,
                                   hint="write --set NAME=VALUE, e.g. --set classes=10")
            args += parsed
        return args

    def _bind_params(self, item, args: list, caller: Scope, scope: Scope, call_span: Span) -> None:
        """Bind a block's or network's compile-time parameters from a call's arguments."""
        pos, kw = [], {}
        for a in args:
            v = self.evaluate(a.value, caller)
            if _is_tensorish(v):
                raise ParamProblem(f"{item.name} takes no tensor here", a.span)
            if a.name is None:
                pos.append((v, a.span))
            else:
                kw[a.name] = (v, a.span, a.name_span)
        self._bind(item, item.params, pos, kw, scope, call_span)

    def _bind(self, item, params: list, pos: list, kw: dict, scope: Scope, call_span: Span) -> None:
        names = [p.name for p in params]
        if len(pos) > len(params):
            raise ParamProblem(f"{item.name} takes {len(params)} parameter{'s' if len(params) != 1 else ''}"
                               f" ({', '.join(names) or 'none'}), got {len(pos)} positional", pos[len(params)][1])
        values = {}
        for p, (v, span) in zip(params, pos):
            values[p.name] = (v, span)
        for k, (v, span, name_span) in kw.items():
            if k not in names:
                raise ParamProblem(f"{item.name} has no parameter '{k}'", name_span or span,
                                   hint=did_you_mean(k, names) or f"its parameters: {', '.join(names) or 'none'}")
            if k in values:
                raise ParamProblem(f"{item.name}: parameter '{k}' is given twice", name_span or span)
            values[k] = (v, span)
        for p in params:
            if p.name not in values:
                if p.default is None:
                    raise ParamProblem(f"{item.name} needs a value for its parameter '{p.name}'", call_span)
                # Defaults are evaluated in the definition's own scope, seeing earlier parameters.
                values[p.name] = (self.evaluate(p.default, scope), p.span)
            scope.vars[p.name] = Binding(values[p.name][0], values[p.name][1], used=True)

    # Statements ----------------------------------------------------------------------------

    def exec_block(self, stmts: list, scope: Scope) -> None:
        for s in stmts:
            self.statement(s, scope)

    def _define_var(self, scope: Scope, name: str, value, span: Span, used=False) -> Binding:
        self._check_new(scope, name, span)
        b = Binding(value, span, used=used or not _is_tensorish(value))
        scope.vars[name] = b
        return b

    def _check_new(self, scope: Scope, name: str, span: Span) -> None:
        old = scope.vars.get(name)
        if old is not None:
            raise NameProblem(f"'{name}' is already defined", span,
                              notes=(("first defined here", old.span),) if old.span else (),
                              hint="tensors are named once; give this one another name")
        if name in REGISTRY or name in self.defs.defs:
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
            self.exec_block(s.then if cond else s.other, scope)
        elif isinstance(s, ast.LossStmt):
            self._loss(s, scope)
        elif isinstance(s, ast.TrainDef):
            self._train(s, scope)
        else:  # the grammar allows nothing else
            raise GraphProblem(f"unexpected statement {type(s).__name__}", s.span)

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
            raise ShapeProblem(f"unknown dtype '{t.dtype}'", t.span,
                               hint=did_you_mean(t.dtype, DTYPES) or f"dtypes: {', '.join(DTYPES)}")
        dims = []
        for d in t.dims:
            if isinstance(d, ast.Name) and d.id not in scope.vars:
                dims.append(d.id)  # a symbolic dim, such as the batch size N
                continue
            v = self.evaluate(d, scope)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ShapeProblem(f"a dimension must be a positive integer or a symbolic name, got {_show(v)}", d.span)
            dims.append(v)
        return TensorType(t.dtype, tuple(dims))

    def _single_layer(self, e) -> bool:
        """True when a statement's value is one layer application, so the layer takes its name."""
        def plain(x) -> bool:  # makes no layer of its own
            if isinstance(x, ast.ListE):
                return all(plain(i) for i in x.items)
            return isinstance(x, (ast.Name, ast.Num, ast.Str, ast.Bool)) or (
                isinstance(x, (ast.BinOp, ast.Neg)) and not isinstance(x, ast.Call)
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
        base = "_".join(s.names)
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
                raise NameProblem(f"undefined tensor '{s.name}'", s.name_span, hint=self._hint(s.name, scope))
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
            raise NameProblem(f"'{s.op}' {what}", s.span, hint=did_you_mean(s.op, losses) or f"losses: {', '.join(losses)}")
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
                if b is None and name not in REGISTRY and name not in self.defs.defs:
                    if len(tensors) == 0:
                        raise NameProblem(f"undefined tensor '{name}'", a.span, hint=self._hint(name, scope))
                    # An undeclared second argument is a target that the dataset provides.
                    ref = add_target(scope.g, name, None, a.span)
                    b = self._define_var(scope, name, Tensor(ref, a.span), a.span, used=True)
                if b is not None and isinstance(b.value, Tensor):
                    b.used = True
                    tensors.append(b.value)
                    continue
            v = self.evaluate(a.value, scope)
            if isinstance(v, Tensor):
                tensors.append(v)
            elif a.name is None:
                pos.append((v, a.span))
            else:
                kw[a.name] = (v, a.span, a.name_span)
        if len(tensors) != 2:
            raise GraphProblem(f"{s.op} takes a prediction and a target, got {len(tensors)} tensor"
                               f"{'s' if len(tensors) != 1 else ''}", s.span,
                               hint=f"for example: loss {s.op}(logits, label)")
        layer = Layer(op, pos, kw, [], s.span)
        p, spans = self._op_params(layer)
        k = len(scope.g.graph["losses"])
        add_op(scope.g, f"loss.{k}", op.name, p, [t.ref for t in tensors], s.span, spans, (), kind="loss",
               weight=float(weight))

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
            loc, msg, _ = _pydantic_messages(e)[0]
            # A validator that knows where in its value the mistake is (augment's list) says so.
            cause = (e.errors()[0].get("ctx") or {}).get("error")
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
            hint = getattr(cause, "hint", None)
            for n in range(len(getattr(cause, "loc", ())), 0, -1):
                if loc + cause.loc[:n] in spans:
                    span = spans[loc + cause.loc[:n]]
                    break
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
        if isinstance(func, ast.Name) and func.id not in scope.vars and (isinstance(e, ast.Call) or func.id[:1].isupper()):
            d = {"name": func.id}
            spans[path + ("name",)] = func.span
            for a in (e.args if isinstance(e, ast.Call) else []):
                if a.name is None:
                    raise ParamProblem(f"{func.id}: settings are written name=value", a.span)
                spans[path + (a.name,)] = a.value.span
                d[a.name] = self._setting(a.value, scope, path + (a.name,), spans)
            return d
        if isinstance(e, ast.ListE):  # `augment = [RandomCrop(padding=4), HorizontalFlip]`
            return [self._setting(x, scope, path + (i,), spans) for i, x in enumerate(e.items)]
        v = self.evaluate(e, scope)
        return list(v) if isinstance(v, tuple) else v

    # Expressions ---------------------------------------------------------------------------

    def _hint(self, name: str, scope: Scope) -> str | None:
        return did_you_mean(name, list(scope.vars) + list(self.defs.defs) + list(REGISTRY))

    def evaluate(self, e, scope: Scope, namer: Namer | None = None):
        if namer is None:
            scope.anon += 1
            namer = Namer(scope, f"_{scope.anon}")
        if isinstance(e, ast.Num) or isinstance(e, ast.Str) or isinstance(e, ast.Bool):
            return e.value
        if isinstance(e, ast.ListE):
            return tuple(self.evaluate(x, scope, namer) for x in e.items)
        if isinstance(e, ast.Chain):
            return self._chain(e, scope, namer)
        if isinstance(e, (ast.Name, ast.Call, ast.Named)):
            v = self._value_or_layer(e, scope, namer)
            if isinstance(v, Layer) and v.tensors:
                return self.apply(v, [], scope, namer)
            return v
        if isinstance(e, ast.Ternary):
            cond = self.evaluate(e.cond, scope, namer)
            if not isinstance(cond, bool):
                raise ParamProblem(f"a condition must be true or false, got {_kind(cond)}", e.cond.span,
                                   hint="conditions are decided at compile time, from parameters")
            return self.evaluate(e.then if cond else e.other, scope, namer)
        if isinstance(e, ast.Index):
            v = self.evaluate(e.value, scope, namer)
            i = self.evaluate(e.index, scope, namer)
            if not isinstance(v, tuple):
                raise ParamProblem(f"cannot index {_kind(v)}", e.value.span)
            if isinstance(i, bool) or not isinstance(i, int):
                raise ParamProblem(f"an index must be an integer, got {_kind(i)}", e.index.span)
            if not -len(v) <= i < len(v):
                raise ParamProblem(f"index {i} is out of range for {len(v)} item{'s' if len(v) != 1 else ''}", e.index.span)
            return v[i]
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
        raise GraphProblem(f"unexpected expression {type(e).__name__}", e.span)

    def _binop(self, e: ast.BinOp, scope: Scope, namer: Namer, in_chain: bool = False):
        """Arithmetic, `Layer * n` repetition, or `+ - *` between tensors.

        In a chain (`x -> Add(skip) * 2`) a layer with tensor arguments waits for the piped
        input; elsewhere it is applied at once.
        """
        a = self._value_or_layer(e.left, scope, namer) if isinstance(e.left, (ast.Name, ast.Call, ast.Named)) \
            else self.evaluate(e.left, scope, namer)
        if isinstance(a, Layer) and a.tensors and not in_chain:
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
        for side, v in ((e.left, a), (e.right, b)):
            if isinstance(v, bool) and op not in ("==", "!=") or not isinstance(v, (int, float, str, bool, tuple)):
                raise ParamProblem(f"'{op}' does not apply to {_kind(v)}", side.span)
        try:
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a / b
            if op == "//":
                return a // b
            if op == "%":
                return a % b
            if op == "**":
                if abs(b) > 64 or (isinstance(a, (int, float)) and abs(a) > 2**32):
                    raise LimitProblem("exponent out of the sane range", e.span)
                return a ** b
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        except ZeroDivisionError:
            raise ParamProblem("division by zero", e.span) from None
        except TypeError:
            raise ParamProblem(f"'{op}' does not apply to {_kind(a)} and {_kind(b)}", e.span) from None

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
            callee = self._callee(e.id)
            if callee is None:
                raise NameProblem(f"undefined name '{e.id}'", e.span, hint=self._hint(e.id, scope))
            return Layer(callee, span=e.span)
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Name):
                raise GraphProblem("only ops and blocks can be called", e.func.span)
            bound = scope.vars.get(e.func.id)
            if bound is not None:
                # A parameter may hold a layer (`unit = Bottleneck`): calling it adds arguments.
                if not isinstance(bound.value, Layer) or bound.value.tensors:
                    raise GraphProblem(f"'{e.func.id}' is {_kind(bound.value)}, not an op or block", e.func.span)
                bound.used = True
                base = bound.value
                layer = Layer(base.callee, list(base.pos), dict(base.kw), span=e.span, repeat=base.repeat)
                callee = base.callee
            else:
                callee = self._callee(e.func.id)
                if callee is None:
                    raise NameProblem(f"unknown op or block '{e.func.id}'", e.func.span,
                                      hint=did_you_mean(e.func.id, list(self.defs.defs) + list(REGISTRY)))
                layer = Layer(callee, span=e.span)
            for a in e.args:
                v = self.evaluate(a.value, scope, namer)
                if _is_tensorish(v):
                    if a.name is not None:
                        raise GraphProblem(f"tensor inputs are passed by position, not as '{a.name}='", a.span)
                    layer.tensors.extend(_tensors(v))
                elif a.name is None:
                    layer.pos.append((v, a.span))
                elif a.name in layer.kw:
                    raise ParamProblem(f"{callee.name}: parameter '{a.name}' is given twice", a.name_span)
                else:
                    layer.kw[a.name] = (v, a.span, a.name_span)
            return layer
        return self.evaluate(e, scope, namer)

    def _callee(self, name: str):
        d = self.defs.defs.get(name)
        if isinstance(d, ast.BlockDef):
            return d
        op = get_op(name)
        if op is not None and op.kind == "loss":
            return None
        return op

    def _chain(self, e: ast.Chain, scope: Scope, namer: Namer):
        v = self.evaluate(e.items[0], scope, namer)
        if not _is_tensorish(v):
            raise GraphProblem(f"a chain starts from a tensor, got {_kind(v)}", e.items[0].span,
                               hint="start from an input or a named tensor: x -> ...")
        for item in e.items[1:]:
            if isinstance(item, (ast.Name, ast.Call, ast.Named, ast.BinOp)):
                layer = self._value_or_layer(item, scope, namer) if not isinstance(item, ast.BinOp) \
                    else self._binop(item, scope, namer, in_chain=True)
            else:
                layer = self.evaluate(item, scope, namer)
            if not isinstance(layer, Layer):
                raise GraphProblem(f"cannot pass a tensor through {_kind(layer)}", item.span,
                                   hint="each step after '->' is an op or a block")
            v = self.apply(layer, _tensors(v), scope, namer)
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

    def _op_params(self, layer: Layer):
        op = layer.callee
        fields = list(op.Params.model_fields)
        values, spans = {}, {}
        if len(layer.pos) > len(op.positional):
            span = layer.pos[len(op.positional)][1]
            if op.positional:
                msg = (f"{op.name} takes at most {len(op.positional)} positional parameter"
                       f"{'s' if len(op.positional) != 1 else ''} ({', '.join(op.positional)})")
            else:
                msg = f"{op.name} takes no positional parameters"
            named = [f for f in fields if f not in op.positional]
            raise ParamProblem(msg, span, hint=f"name the others: {', '.join(f + '=...' for f in named)}"
                               if named else f"{op.name} has no other parameters")
        for name, (v, span) in zip(op.positional, layer.pos):
            values[name], spans[name] = v, span
        for name, (v, span, name_span) in layer.kw.items():
            if name not in fields:
                raise ParamProblem(f"{op.name} has no parameter '{name}'", name_span or span,
                                   hint=did_you_mean(name, fields) or
                                   (f"its parameters: {', '.join(fields)}" if fields else f"{op.name} takes no parameters"))
            if name in values:
                raise ParamProblem(f"{op.name}: parameter '{name}' is given twice", name_span or span)
            values[name], spans[name] = v, span
        try:
            p = op.Params.model_validate(values)
        except ValidationError as e:
            loc, msg, given = _pydantic_messages(e)[0]
            pname = str(loc[0]) if loc else None
            if msg == "Field required":
                raise ParamProblem(f"{op.name} needs its parameter '{pname}'", layer.span,
                                   hint=f"for example {op.name}({', '.join(op.positional) or pname + '=...'})") from None
            shown = _show(values.get(pname)) if pname in values else _show(given)
            hint = None
            if isinstance(values.get(pname), str):
                # A misspelt word: the number and tuple alternatives of the union are noise.
                words = [m for m in msg.split("; or ") if m.startswith("Input should be '")]
                if words:
                    msg = words[0]
                    hint = did_you_mean(values[pname], re.findall(r"'([^']*)'", msg))
            raise ParamProblem(f"{op.name}: bad value {shown} for '{pname}': {msg}",
                               spans.get(pname, layer.span), hint) from None
        return p, spans

    def _apply_once(self, layer: Layer, inputs: list[Tensor], scope: Scope, namer: Namer):
        if isinstance(layer.callee, ast.BlockDef):
            return self._expand(layer, inputs, scope, namer)
        op = layer.callee
        lo, hi = op.arity
        if not lo <= len(inputs) <= (hi if hi is not None else len(inputs)):
            want = str(lo) if lo == hi else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
            raise GraphProblem(f"{op.name} takes {want} input tensor{'s' if want != '1' else ''}, got {len(inputs)}",
                               layer.span)
        p, spans = self._op_params(layer)
        name = namer.next(layer.name)
        if name in scope.g:
            raise NameProblem(f"two layers are named '{name}'", layer.span,
                              notes=(("the other one", scope.g.nodes[name]["span"]),))
        if scope.g.number_of_nodes() >= MAX_LAYERS:
            raise LimitProblem(f"the network grows past {MAX_LAYERS:,} layers", layer.span)
        add_op(scope.g, name, op.name, p, [t.ref for t in inputs], layer.span, spans, scope.context)
        n = op.outputs(p)
        outs = tuple(Tensor(Ref(name, k), layer.span) for k in range(n))
        return outs[0] if n == 1 else outs

    def _expand(self, layer: Layer, inputs: list[Tensor], scope: Scope, namer: Namer):
        block: ast.BlockDef = layer.callee
        if block.name in scope.stack:
            path = " -> ".join(scope.stack[scope.stack.index(block.name):] + (block.name,))
            raise GraphProblem(f"recursion between blocks is not allowed: {path}", layer.span,
                               notes=((f"{block.name} is defined here", block.span),))
        if len(scope.stack) >= MAX_BLOCK_DEPTH:
            raise LimitProblem(f"blocks are nested more than {MAX_BLOCK_DEPTH} levels deep", layer.span)
        name = namer.next(layer.name)
        inner = Scope(scope.g, name + ".", scope.context + ((f"{block.name} '{name}'", layer.span),),
                      scope.stack + (block.name,), False)
        self._bind(block, block.params, layer.pos, layer.kw, inner, layer.span)
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

    def _check_names(self, g: nx.DiGraph) -> None:
        # A layer cannot also be the parent of other layers: state-dict keys would collide.
        names = set(g.nodes)
        for n in names:
            parts = n.split(".")
            for k in range(1, len(parts)):
                parent = ".".join(parts[:k])
                if parent in names and g.nodes[parent]["kind"] == "op":
                    raise NameProblem(f"layer '{parent}' is also the prefix of layer '{n}'",
                                      g.nodes[n]["span"], notes=(("the first layer", g.nodes[parent]["span"]),),
                                      hint="rename one of them with 'as'")


def elaborate_file(path: str, network: str | None = None, params: dict[str, str] | None = None) -> nx.DiGraph:
    """Build the graph of one network of a .net file (the only one, when `network` is None)."""
    with deep_stack():
        try:
            return Elaborator().network(path, network, params)
        except RecursionError:
            raise LimitProblem(f"{path}: the spec nests too deeply to elaborate") from None

