"""Elaborate: a loaded program -> the graph of one network. Walks statements and expressions:
resolves names in the file scope a block was written in, expands blocks, repetition,
comprehensions and conditionals, evaluates compile-time values (`values`), and hands each
layer to the `builder`, which runs its shape rule as it is added."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ast
from .builder import MAX_LAYERS, Namer, Scope, check_names
from .digraph import DiGraph
from .errors import (GraphProblem, LimitProblem, NameProblem, ParamProblem, ShapeProblem, Span, SyntaxProblem, clip,
                     did_you_mean)
from .expansion import Expansion
from .expressions import Expressions
from .gcpause import cycle_collection_paused
from .graph import add_input, add_output, add_target, new_graph
from .loader import FileScope, Loader
from .objectives import Objectives
from .ops import REGISTRY, get_op
from .parse import deep_stack, parse
from .types import DTYPES, TensorType
from .values import (FUNCTIONS, Binding, Layer, Symbolic, Tensor, is_tensorish as _is_tensorish, kind as _kind,
                     reset_budget, show as _show)

# A param's initial values: name -> the parameter its one positional argument sets.
PARAM_INITS = {"zeros": None, "ones": None, "normal": "std", "uniform": "std", "trunc_normal": "std",
               "constant": "value"}

__all__ = ["elaborate_file", "Elaborator", "MAX_LAYERS", "Override", "constant"]


@dataclass(frozen=True)
class Override:
    """A network parameter set from outside the spec (`--set`, `load(params=...)`)."""

    value: Any
    origin: str  # how the user wrote it, for messages: "--set classes=2.5"


class Elaborator(Expressions, Expansion, Objectives):
    """Walks one network and builds its graph.

    The expression walk, block expansion and loss/train statements are its mixins
    (`expressions`, `expansion`, `objectives`); this module walks networks and statements.

    A block expansion with the same block, parameters and input types as an earlier one that
    made 256 layers or more, or any such expansion past 4,096 layers, is credited with the
    earlier one's layer count and a placeholder node instead of built (`expansion.STUB_SIZE`,
    `STUB_AFTER`), so a spec of blocks that double 40 times is refused after a few hundred
    layers instead of after building 200,000. Such a walk only counts (`partial`); a network
    that stays within MAX_LAYERS is then walked again and built in full.
    """

    def __init__(self, loader: Loader | None = None):
        self.loader = loader or Loader()
        self.stubs = True  # may repeated expansions be counted instead of built
        self.partial = False  # placeholders were used: the graph only served to count
        self.layers = 0  # layers made so far, credited expansions included
        self.memo: dict = {}  # expansion key -> (layers it makes, its output types)

    # Networks ------------------------------------------------------------------------------

    def network(self, path: str, name: str | None, overrides: dict[str, Override] | None = None) -> DiGraph:
        """Elaborate one network of a file; `overrides` replace some of its parameters."""
        g = self._walk(path, name, overrides, stubs=True)
        if self.partial:  # a large network, counted with placeholders: build it in full
            g = self._walk(path, name, overrides, stubs=False)
        return g

    def _walk(self, path: str, name: str | None, overrides: dict[str, Override] | None, stubs: bool) -> DiGraph:
        self.stubs, self.partial, self.layers, self.memo = stubs, False, 0, {}
        reset_budget()
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
            if type(s) is ast.Assign and len(s.names) == 1:  # nearly every statement: no dispatch
                self._assign_one(s, scope)
            else:
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
        if isinstance(s, ast.Assign):  # first: nearly every statement is one
            self._assign(s, scope)
        elif isinstance(s, ast.InputDecl):
            self._inputs(s, scope)
        elif isinstance(s, ast.TargetDecl):
            if not scope.is_network:
                raise GraphProblem("targets are declared in a network, not in a block", s.span)
            ref = add_target(scope.g, s.name, self.tensor_type(s.type, scope), s.span)
            self._define_var(scope, s.name, Tensor(ref, s.span), s.span, used=True)
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
        while isinstance(e, ast.Chain):  # `x -> L`, the statement of a spec written line by line
            if len(e.items) != 2 or not isinstance(e.items[0], ast.Name):
                return False
            e = e.items[1]
            if isinstance(e, ast.Call):
                break
            if isinstance(e, ast.Name):
                return True
        if isinstance(e, ast.Call):
            for a in e.args:
                if not isinstance(a.value, _LEAVES) and not _plain(a.value):
                    return False
            return True
        if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*"):
            return isinstance(e.left, ast.Name) and isinstance(e.right, ast.Name)
        return False

    def _assign(self, s: ast.Assign, scope: Scope) -> None:
        if len(s.names) == 1:
            return self._assign_one(s, scope)
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

    def _assign_one(self, s: ast.Assign, scope: Scope) -> None:
        """`name = value`, the statement a spec written line by line is made of: `_assign` for
        one name, checking it once (evaluating the value defines no name of this scope)."""
        name, span = s.names[0], s.name_spans[0]
        if name == "_":
            scope.anon += 1
            self.evaluate(s.value, scope, Namer(scope, f"_{scope.anon}", self._single_layer(s.value)))
            return
        if name in scope.vars or name in REGISTRY or name in scope.file.defs:
            self._check_new(scope, name, span)  # raises, saying which
        e = s.value
        namer = Namer(scope, name, self._single_layer(e))
        value = self._chain(e, scope, namer) if isinstance(e, ast.Chain) else self.evaluate(e, scope, namer)
        scope.vars[name] = Binding(value, span, not (isinstance(value, Tensor) or _is_tensorish(value)))

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

_LEAVES = (ast.Name, ast.Num, ast.Str, ast.Bool)


def _plain(x) -> bool:
    """An expression that makes no layer of its own (a module function: a closure that calls
    itself is a reference cycle, garbage the paused collector would keep for every statement)."""
    if isinstance(x, _LEAVES):
        return True
    if isinstance(x, ast.ListE):
        return all(_plain(i) for i in x.items)
    if isinstance(x, ast.Attr):
        return _plain(x.value)
    if isinstance(x, ast.Index):
        return _plain(x.value) and all(_plain(i) for i in x.items if not isinstance(i, ast.Slice))
    if isinstance(x, ast.Call):
        return isinstance(x.func, ast.Name) and x.func.id in FUNCTIONS and all(_plain(a.value) for a in x.args)
    return (
        isinstance(x, (ast.BinOp, ast.Neg))
        and all(_plain(c) for c in (getattr(x, "left", None), getattr(x, "right", None),
                                    getattr(x, "value", None)) if c is not None))


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
                   loader: Loader | None = None) -> DiGraph:
    """Build the graph of one network of a .net file (the only one, when `network` is None)."""
    own = loader is None
    loader = loader or Loader()
    with deep_stack(), cycle_collection_paused():
        try:
            return Elaborator(loader).network(path, network, overrides)
        except RecursionError:
            raise LimitProblem(f"{path}: the spec nests too deeply to elaborate") from None
        finally:
            if own:  # nobody else reads these files: free their trees now (see `Loader.release`)
                loader.release()
