"""Losses and the train block of a network: loss terms as graph nodes, targets (declared or
named by a loss), and the validated `TrainConfig`."""

from __future__ import annotations

from pydantic import ValidationError

from . import ast
from .builder import Scope, add_layer, op_params
from .digraph import DiGraph
from .errors import GraphProblem, NameProblem, ParamProblem, clip, did_you_mean
from .graph import add_target
from .ops import REGISTRY, get_op
from .validation import first as first_error
from .values import FUNCTIONS, Layer, Tensor, show as _show


class Objectives:
    """The loss and train statements of the elaborator (mixed into `Elaborator`)."""

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

    def _check_targets(self, g: DiGraph) -> None:
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
        if isinstance(e, ast.ListE):  # `augment = [RandomCrop(padding=4), HorizontalFlip]`
            return [self._setting(x, scope, path + (i,), spans) for i, x in enumerate(e.items)]
        v = self.evaluate(e, scope)
        return list(v) if isinstance(v, tuple) else v

    # Expressions ---------------------------------------------------------------------------

