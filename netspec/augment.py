"""Data augmentation: the train block's `augment` setting and the transforms it builds.

    augment = [RandomResizedCrop(scale=[0.5, 1.0]), HorizontalFlip, ColorJitter(brightness=0.2), Mixup]

The settings are pure pydantic (`netspec check` validates them without torch); the transforms
import torch when they are built. Every random draw comes from a generator seeded by (seed,
epoch, item index), so an item's augmentation does not depend on worker count, order or resume.
"""

from __future__ import annotations

import math
import operator
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, PlainValidator,
                      ValidationError, ValidationInfo, model_validator)

from .errors import DataProblem, ParamProblem, did_you_mean


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use


# ---------------------------------------------------------------- value checks
# Kept here, not shared with trainconfig, because trainconfig imports this module.

def _number(v, field: str):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        shown = str(v).lower() if isinstance(v, bool) else repr(v)
        raise ValueError(f"{field} must be a number, got {shown}")
    if not math.isfinite(v):
        raise ValueError(f"{field} must be finite, got {v}")
    return float(v)


def _rule(lo, hi, lo_open, hi_open) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


def _outside(v, lo, hi, lo_open, hi_open) -> bool:
    return ((lo is not None and (v <= lo if lo_open else v < lo))
            or (hi is not None and (v >= hi if hi_open else v > hi)))


def _scalar(lo=None, hi=None, lo_open=False, hi_open=False):
    """A number within a range; the message names the field and the rule."""

    def check(v, info: ValidationInfo):
        v = _number(v, info.field_name)
        if _outside(v, lo, hi, lo_open, hi_open):
            raise ValueError(f"{info.field_name} must be {_rule(lo, hi, lo_open, hi_open)}, got {v:g}")
        return v

    return BeforeValidator(check)


def _pair(lo=None, hi=None, lo_open=False, hi_open=False, widen=None, shorthand=""):
    """`[min, max]` within a range, min <= max; `widen` turns one number into a pair (torchvision's shorthand)."""

    def check(v, info: ValidationInfo):
        name = info.field_name
        if widen is not None and not isinstance(v, (list, tuple)):
            v = _number(v, name)
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v:g}")
            v = widen(v)
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"{name} must be [min, max]{shorthand}, got {_show(v)}")
        a, b = (_number(x, name) for x in v)
        for x in (a, b):
            if _outside(x, lo, hi, lo_open, hi_open):
                raise ValueError(f"{name} must lie within {_rule(lo, hi, lo_open, hi_open)}, got {_show(v)}")
        if a > b:
            raise ValueError(f"{name} must be [min, max] with min <= max, got {_show(v)}")
        return (a, b)

    return BeforeValidator(check)


def _fill(v, info: ValidationInfo):
    """One value in [0, 1] for every channel, or one per channel (checked against the input later)."""
    name = info.field_name
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError(f"{name} must be a number or one number per channel, got []")
        vals = tuple(_number(x, name) for x in v)
    else:
        vals = (_number(v, name),)
    if any(not 0 <= x <= 1 for x in vals):
        raise ValueError(f"{name} must lie within [0, 1] (pixels before normalization), got {_show(v)}")
    return vals[0] if not isinstance(v, (list, tuple)) else vals


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def _choice(options: tuple[str, ...]):
    def check(v, info: ValidationInfo):
        if not isinstance(v, str) or v not in options:
            hint = did_you_mean(str(v), options) if isinstance(v, str) else None
            raise ValueError(f"{info.field_name} must be one of {', '.join(map(_show, options))}, got {_show(v)}"
                             + (f"; {hint}" if hint else ""))
        return v

    return BeforeValidator(check)


Prob = Annotated[float, _scalar(0, 1)]
Fill = Annotated[Any, PlainValidator(_fill)]
AreaShare = Annotated[tuple[float, float], _pair(0, 1, lo_open=True)]
Ratio = Annotated[tuple[float, float], _pair(0, lo_open=True)]
Alpha = Annotated[float, _scalar(0, lo_open=True)]
MixProb = Annotated[float | None, _scalar(0, 1)]


def _factor(v):  # torchvision's ColorJitter shorthand: b -> [max(0, 1 - b), 1 + b]
    return (max(0.0, 1 - v), 1 + v)


Factor = Annotated[tuple[float, float], _pair(0, widen=_factor, shorthand=" or one number b for [1-b, 1+b]")]


def _hue(v):
    if v > 0.5:
        raise ValueError(f"hue must be <= 0.5, got {v:g}")
    return (-v, v)


HueShift = Annotated[tuple[float, float], _pair(-0.5, 0.5, widen=_hue, shorthand=" or one number h for [-h, h]")]


def _degrees(v):
    return (-v, v)


Degrees = Annotated[tuple[float, float], _pair(-360, 360, widen=_degrees, shorthand=" or one number d for [-d, d]")]


def _padding(v, info: ValidationInfo):
    """torchvision's forms: p, [left/right, top/bottom] or [left, top, right, bottom], as (l, t, r, b)."""
    vals = list(v) if isinstance(v, (list, tuple)) else [v]
    if len(vals) not in (1, 2, 4):
        raise ValueError(f"padding must be p, [left/right, top/bottom] or [left, top, right, bottom], got {_show(v)}")
    out = []
    for x in vals:
        x = _number(x, "padding")
        if x < 0 or not x.is_integer():
            raise ValueError(f"padding must be whole numbers >= 0, got {_show(v)}")
        out.append(int(x))
    if len(out) == 1:
        out *= 4
    elif len(out) == 2:
        out *= 2
    if sum(out) == 0:
        raise ValueError("padding must be > 0: a RandomCrop without padding keeps the image as it is")
    return tuple(out)


# ---------------------------------------------------------------- the ops
# Every item op has `p`, the chance it is applied to an item.

class RandomResizedCrop(_Frozen):
    """torchvision's RandomResizedCrop, resized back to the input's size."""
    name: Literal["RandomResizedCrop"] = "RandomResizedCrop"
    scale: AreaShare = (0.08, 1.0)  # the crop's share of the image's area, drawn uniformly
    ratio: Ratio = (3 / 4, 4 / 3)  # the crop's width / height, drawn log-uniformly
    p: Prob = 1.0  # chance the item is cropped


Padding = Annotated[tuple[int, int, int, int], BeforeValidator(_padding)]
PadMode = Annotated[str, _choice(("constant", "edge", "reflect", "symmetric"))]
Interpolation = Annotated[str, _choice(("bilinear", "nearest"))]


class RandomCrop(_Frozen):
    """torchvision's RandomCrop(size=input size, padding, fill, padding_mode)."""
    name: Literal["RandomCrop"] = "RandomCrop"
    padding: Padding = (4, 4, 4, 4)  # pixels added on the left, top, right, bottom before cutting H x W
    fill: Fill = 0.0  # the padded pixels' value with padding_mode "constant", one or one per channel
    padding_mode: PadMode = "constant"  # np.pad's and torchvision's modes
    p: Prob = 1.0  # chance the item is shifted


class HorizontalFlip(_Frozen):
    """torchvision's RandomHorizontalFlip: mirror left-right."""
    name: Literal["HorizontalFlip"] = "HorizontalFlip"
    p: Prob = 0.5  # chance the item is flipped


class VerticalFlip(_Frozen):
    """torchvision's RandomVerticalFlip: mirror top-bottom."""
    name: Literal["VerticalFlip"] = "VerticalFlip"
    p: Prob = 0.5  # chance the item is flipped


class Rotation(_Frozen):
    """torchvision's RandomRotation about the image's centre, keeping its size."""
    name: Literal["Rotation"] = "Rotation"
    degrees: Degrees  # the angle, drawn uniformly, counter-clockwise; d means [-d, d]
    interpolation: Interpolation = "bilinear"  # how pixels between grid points are read
    fill: Fill = 0.0  # the value of pixels rotated in from outside the image
    p: Prob = 1.0  # chance the item is rotated


class ColorJitter(_Frozen):
    """torchvision's ColorJitter: the four adjustments in a random order, each with its own factor."""
    name: Literal["ColorJitter"] = "ColorJitter"
    brightness: Factor = (1.0, 1.0)  # multiplier of every pixel; b means [max(0, 1-b), 1+b]
    contrast: Factor = (1.0, 1.0)  # blend with the mean grey level; b means [max(0, 1-b), 1+b]
    saturation: Factor = (1.0, 1.0)  # blend with the grey image; 1-channel images are left as they are
    hue: HueShift = (0.0, 0.0)  # turn of the colour wheel, in turns; 1-channel images are left as they are
    p: Prob = 1.0  # chance the item is jittered

    @model_validator(mode="after")
    def _does_something(self):
        if (self.brightness == self.contrast == self.saturation == (1.0, 1.0)) and self.hue == (0.0, 0.0):
            raise ValueError("ColorJitter changes nothing: give brightness, contrast, saturation or hue, "
                             "e.g. ColorJitter(brightness=0.2)")
        return self


def _erase_value(v, info: ValidationInfo):
    if isinstance(v, str):
        if v != "random":
            hint = did_you_mean(v, ["random"])
            raise ValueError(f'value must be a number in [0, 1], one per channel, or "random", got {_show(v)}'
                             + (f"; {hint}" if hint else ""))
        return v
    return _fill(v, info)


class RandomErasing(_Frozen):
    """torchvision's RandomErasing (Zhong et al. 2017): blank out one rectangle."""
    name: Literal["RandomErasing"] = "RandomErasing"
    p: Prob = 0.5  # chance a rectangle is erased
    scale: AreaShare = (0.02, 0.33)  # the rectangle's share of the image's area
    ratio: Ratio = (0.3, 3.3)  # the rectangle's height / width, drawn log-uniformly
    value: Annotated[Any, PlainValidator(_erase_value)] = 0.0  # in [0, 1], one per channel, or "random" noise


class Mixup(_Frozen):
    """torchvision's MixUp (Zhang et al. 2018): blend each item and its target with the previous item's."""
    name: Literal["Mixup"] = "Mixup"
    alpha: Alpha = 1.0  # the blend weight is drawn from Beta(alpha, alpha) once per batch
    p: MixProb = None  # share of batches mixed this way; default 1, or 0.5 each beside CutMix


class CutMix(_Frozen):
    """torchvision's CutMix (Yun et al. 2019): paste a box of the previous item, targets weighted by area."""
    name: Literal["CutMix"] = "CutMix"
    alpha: Alpha = 1.0  # the kept area is drawn from Beta(alpha, alpha) once per batch
    p: MixProb = None  # share of batches mixed this way; default 1, or 0.5 each beside Mixup


# The Augment field each op fills, in the order the item ops run; Mixup and CutMix act on batches.
FIELDS = {"RandomResizedCrop": "random_resized_crop", "RandomCrop": "random_crop",
          "HorizontalFlip": "horizontal_flip", "VerticalFlip": "vertical_flip", "Rotation": "rotation",
          "ColorJitter": "color_jitter", "RandomErasing": "random_erasing", "Mixup": "mixup", "CutMix": "cutmix"}
OPS = {c.__name__: c for c in (RandomResizedCrop, RandomCrop, HorizontalFlip, VerticalFlip, Rotation,
                               ColorJitter, RandomErasing, Mixup, CutMix)}
BATCH_OPS = ("Mixup", "CutMix")
# What users of torchvision will type; the hint names netspec's word for it.
_TORCHVISION = {"RandomHorizontalFlip": "HorizontalFlip", "RandomVerticalFlip": "VerticalFlip",
                "RandomRotation": "Rotation", "MixUp": "Mixup", "Cutmix": "CutMix"}
# Losses that accept the soft targets Mixup and CutMix make.
SOFT_TARGET_LOSSES = ("CrossEntropy", "BCEWithLogits")


class AugmentError(ValueError):
    """A mistake in one item of the augment list; `loc` is (index, setting) for locating it."""

    def __init__(self, message: str, loc: tuple = (), hint: str | None = None):
        super().__init__(message)
        self.loc, self.hint = loc, hint


def _item(v, i: int) -> tuple[str, BaseModel]:
    """One list item (`HorizontalFlip` or `ColorJitter(brightness=0.2)`, as a name or a dict) as its op."""
    if isinstance(v, str):
        v = {"name": v}
    if not isinstance(v, dict) or not isinstance(v.get("name"), str):
        raise AugmentError(f"item {i + 1} must be an augmentation such as HorizontalFlip or "
                           f"RandomResizedCrop(scale=[0.5, 1]), got {_show(v)}", (i,),
                           hint=f"augmentations: {', '.join(OPS)}")
    name = v["name"]
    if name not in OPS:
        hint = (f"torchvision's {name} is {_TORCHVISION[name]} here" if name in _TORCHVISION
                else did_you_mean(name, OPS))
        raise AugmentError(f"unknown augmentation '{name}'", (i, "name"),
                           hint=hint or f"augmentations: {', '.join(OPS)}")
    cls = OPS[name]
    try:
        return name, cls.model_validate(v)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else None
        settings = [f for f in cls.model_fields if f != "name"]
        if err["type"] == "extra_forbidden":
            raise AugmentError(f"{name} has no setting '{field}'", (i, field),
                               hint=did_you_mean(field, settings) or f"{name}'s settings: {', '.join(settings)}")
        if err["type"] == "missing":
            raise AugmentError(f"{name} needs {field}, e.g. {name}({field}=...)", (i, "name"))
        msg = err["msg"].removeprefix("Value error, ")
        raise AugmentError(msg if msg.startswith(name) else f"{name}: {msg}",
                           (i, field) if field else (i, "name")) from None


class Augment(_Frozen):
    """The train block's `augment` setting: which augmentations run, with their settings.

    Written in a spec as a list, `[RandomResizedCrop(scale=[0.5, 1]), HorizontalFlip, Mixup]`;
    the fields below are in the order the item ops run.
    """

    random_resized_crop: RandomResizedCrop | None = None  # crop a random box and resize it to the input's size
    random_crop: RandomCrop | None = None  # pad, then crop the input's size at a random offset
    horizontal_flip: HorizontalFlip | None = None  # mirror left-right
    vertical_flip: VerticalFlip | None = None  # mirror top-bottom
    rotation: Rotation | None = None  # rotate about the centre
    color_jitter: ColorJitter | None = None  # brightness, contrast, saturation and hue
    random_erasing: RandomErasing | None = None  # blank out a rectangle
    mixup: Mixup | None = None  # batch level: blend pairs of items and their targets
    cutmix: CutMix | None = None  # batch level: paste a box from another item, targets by area

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, v):
        """The spec's list form (or one op alone); a dict is the stored form, field by field."""
        if v is None:
            return {}
        if isinstance(v, dict) and "name" not in v:
            return v
        items = list(v) if isinstance(v, (list, tuple)) else [v]
        out, rank = {}, []
        for i, item in enumerate(items):
            name, op = _item(item, i)
            field = FIELDS[name]
            if field in out:
                raise AugmentError(f"{name} is given twice", (i, "name"))
            # One fixed order, so that a spec that checks means what it says.
            order = list(OPS).index(name) if name not in BATCH_OPS else len(OPS)
            if rank and order < rank[-1][0]:
                raise AugmentError(f"{name} must come before {rank[-1][1]}", (i, "name"),
                                   hint=f"augmentations run in this order: {', '.join(list(OPS)[:7])}, "
                                        "then Mixup or CutMix on whole batches")
            rank.append((order, name))
            out[field] = op
        return _mix_shares(out)

    @model_validator(mode="after")
    def _shares(self):
        ps = [m.p for m in (self.mixup, self.cutmix) if m is not None]
        if None in ps:
            raise ValueError("Mixup and CutMix need their p")  # only reachable by building Augment field by field
        if sum(ps) > 1 + 1e-9:
            raise ValueError(f"Mixup's p and CutMix's p add up to {sum(ps):g}, but a batch gets at most one "
                             "of them: make them add up to at most 1, e.g. Mixup(p=0.5), CutMix(p=0.5)")
        return self

    def item_ops(self) -> list[BaseModel]:
        return [op for f, op in self if op is not None and f not in ("mixup", "cutmix")]

    def __bool__(self) -> bool:
        return any(op is not None for _, op in self)

    def describe(self) -> str:
        """The settings as a spec would write them, e.g. for the run's log."""
        ops = [op for _, op in self if op is not None]
        if not ops:
            return "none"
        return ", ".join(f"{op.name}(" + ", ".join(f"{k}={_show(v)}" for k, v in _settings(op)) + ")"
                         for op in ops)


def _settings(op) -> list[tuple[str, Any]]:
    """An op's settings for a log line: ColorJitter's unused adjustments left out, even padding as one number."""
    out = []
    for k, v in op:
        if k == "name" or (isinstance(op, ColorJitter) and k != "p" and v == ColorJitter.model_fields[k].default):
            continue
        if k == "padding" and len(set(v)) == 1:
            v = v[0]
        out.append((k, v))
    return out


def _mix_shares(out: dict) -> dict:
    """Mixup's and CutMix's default p: 1 alone, 0.5 each together, or what the other leaves."""
    mix, cut = out.get("mixup"), out.get("cutmix")
    if mix is not None and cut is not None:
        if mix.p is None and cut.p is None:
            out["mixup"], out["cutmix"] = mix.model_copy(update={"p": 0.5}), cut.model_copy(update={"p": 0.5})
        elif mix.p is None:
            out["mixup"] = mix.model_copy(update={"p": max(0.0, 1 - cut.p)})
        elif cut.p is None:
            out["cutmix"] = cut.model_copy(update={"p": max(0.0, 1 - mix.p)})
    elif mix is not None and mix.p is None:
        out["mixup"] = mix.model_copy(update={"p": 1.0})
    elif cut is not None and cut.p is None:
        out["cutmix"] = cut.model_copy(update={"p": 1.0})
    return out


def parse_augment(value) -> Augment:
    """The raw `augment` value (list, single op, stored dict or None) as an Augment, or a ParamProblem."""
    try:
        return Augment.model_validate(value)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        hint = getattr(cause, "hint", None)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{err['loc'][0]}'"
            hint = did_you_mean(str(err["loc"][0]), Augment.model_fields)
        raise ParamProblem(f"augment: {msg}", hint=hint) from None


def check_input(cfg: Augment, shape: tuple, what: str = "the input") -> None:
    """Refuse, before training starts, augmentations that cannot act on an item of this shape."""
    ops = [op for _, op in cfg if op is not None]
    spatial = [op.name for op in ops if op.name != "Mixup"]
    if spatial and len(shape) != 3:
        raise ParamProblem(f"augment: {', '.join(spatial)} need{'s' if len(spatial) == 1 else ''} images "
                           f"[C, H, W], but {what} has items of shape {list(shape)}",
                           hint="Mixup alone works on any input")
    if not spatial:
        return
    c = shape[0]
    j = cfg.color_jitter
    if j is not None and c not in (1, 3) and (j.contrast, j.saturation, j.hue) != ((1.0, 1.0), (1.0, 1.0), (0.0, 0.0)):
        raise ParamProblem(f"augment: ColorJitter's contrast, saturation and hue need 1 or 3 channels, "
                           f"but {what} has {c}", hint="brightness alone works on any number of channels")
    for op in ops:
        for field in ("fill", "value"):
            v = getattr(op, field, None)
            if isinstance(v, tuple) and len(v) != c:
                raise ParamProblem(f"augment: {op.name}'s {field} gives {len(v)} values, but {what} has {c} "
                                   f"channel{'s' if c != 1 else ''}", hint=f"give one value or {c}")


def check_loss(cfg: Augment, losses: list[str]) -> None:
    """Mixup and CutMix make soft targets; refuse a loss that cannot read them."""
    mixing = [n for n in BATCH_OPS if getattr(cfg, FIELDS[n]) is not None]
    bad = [n for n in losses if n not in SOFT_TARGET_LOSSES]
    if mixing and bad:
        raise ParamProblem(f"augment: {' and '.join(mixing)} make soft targets (class probabilities), "
                           f"which {', '.join(bad)} cannot read",
                           hint=f"use {' or '.join(SOFT_TARGET_LOSSES)}, or drop {' and '.join(mixing)}")


# ---------------------------------------------------------------- random draws (torch inside)
# Every draw is one float64 from torch.rand on the generator, in the order documented in
# docs/training.md, so a reference implementation can replay it.

_ITEM, _BATCH = 0, 1  # keeps item and batch streams apart


def _generator(*key: int):
    import numpy as np
    import torch

    whole = []
    for k in key:
        try:  # numpy and torch integers too, as samplers hand them out
            k = None if isinstance(k, bool) else operator.index(k)
        except TypeError:
            k = None
        if k is None or k < 0:
            raise ValueError(f"seed, epoch and index must be whole numbers >= 0, got {key[:-1]}")
        whole.append(k)
    hi, lo = np.random.SeedSequence(whole).generate_state(2, dtype=np.uint32)
    g = torch.Generator()
    g.manual_seed((int(hi) << 32) | int(lo))
    return g


def item_generator(seed: int, epoch: int, index: int):
    """A torch.Generator for one item of one epoch: the same (seed, epoch, index), the same draws."""
    return _generator(seed, epoch, index, _ITEM)


def batch_generator(seed: int, epoch: int, step: int, rank: int = 0):
    """A torch.Generator for one batch (Mixup, CutMix) of one epoch on one process."""
    return _generator(seed, epoch, step, rank, _BATCH)


def uniform(g, lo: float = 0.0, hi: float = 1.0) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def randint(g, n: int) -> int:
    """0..n-1 from one uniform draw."""
    return min(int(uniform(g) * n), n - 1)


def beta(g, alpha: float) -> float:
    """Beta(alpha, alpha) from one 62-bit draw that seeds numpy's sampler."""
    import numpy as np
    import torch

    seed = int(torch.randint(0, 2**62, (), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


# ---------------------------------------------------------------- geometry

def resized_crop_box(h: int, w: int, scale, ratio, g) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, height, width)."""
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * uniform(g, *scale)
        aspect = math.exp(uniform(g, log_lo, log_hi))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return randint(g, h - ch + 1), randint(g, w - cw + 1), ch, cw
    # Ten misses: the whole image, trimmed to the nearest allowed ratio, centred.
    if w / h < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif w / h > ratio[1]:
        cw, ch = round(h * ratio[1]), h
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def erasing_box(h: int, w: int, scale, ratio, g) -> tuple[int, int, int, int] | None:
    """torchvision's RandomErasing.get_params: (top, left, height, width), or None after ten misses."""
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * uniform(g, *scale)
        aspect = math.exp(uniform(g, log_lo, log_hi))
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if eh < h and ew < w:
            return randint(g, h - eh + 1), randint(g, w - ew + 1), eh, ew
    return None


def cutmix_box(h: int, w: int, lam: float, g) -> tuple[int, int, int, int]:
    """torchvision's CutMix box around a uniform centre: (top, left, bottom, right), clipped."""
    cy, cx = randint(g, h), randint(g, w)
    r = 0.5 * math.sqrt(1.0 - lam)
    rh, rw = int(r * h), int(r * w)
    return max(cy - rh, 0), max(cx - rw, 0), min(cy + rh, h), min(cx + rw, w)


# ---------------------------------------------------------------- pixel operations

def _channels(value, c: int, like):
    import torch

    v = torch.as_tensor(value if isinstance(value, tuple) else (value,), dtype=like.dtype, device=like.device)
    return v.reshape(-1, 1, 1).expand(c, 1, 1)


def _pad_index(n: int, start: int, length: int, mode: str, device=None):
    """Source indices of positions start..start+length-1 of a padded axis of size n (np.pad's modes); -1 is outside."""
    import torch

    i = torch.arange(start, start + length, device=device)
    if mode == "constant":
        return torch.where((i >= 0) & (i < n), i, -1)
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect":  # mirror about the edge pixel: period 2n - 2
        m = i % (2 * n - 2)
        return torch.where(m >= n, 2 * n - 2 - m, m)
    m = i % (2 * n)  # symmetric: mirror including the edge pixel
    return torch.where(m >= n, 2 * n - 1 - m, m)


def random_crop(x, op: RandomCrop, g):
    import torch

    c, h, w = x.shape
    left, top, right, bottom = op.padding
    i, j = randint(g, top + bottom + 1), randint(g, left + right + 1)
    rows = _pad_index(h, i - top, h, op.padding_mode, x.device)
    cols = _pad_index(w, j - left, w, op.padding_mode, x.device)
    out = x[:, rows.clamp(min=0)][:, :, cols.clamp(min=0)]
    if op.padding_mode == "constant":
        outside = (rows < 0)[:, None] | (cols < 0)[None, :]
        out = torch.where(outside, _channels(op.fill, c, x), out)
    return out


def resized_crop(x, op: RandomResizedCrop, g):
    import torch.nn.functional as F

    c, h, w = x.shape
    top, left, ch, cw = resized_crop_box(h, w, op.scale, op.ratio, g)
    crop = x[None, :, top:top + ch, left:left + cw]
    # The crop is never larger than the image, so this only enlarges: no antialiasing to choose.
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]


def rotate(x, op: Rotation, g):
    import torch
    import torch.nn.functional as F

    c, h, w = x.shape
    theta = math.radians(uniform(g, *op.degrees))
    cos, sin = math.cos(theta), math.sin(theta)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=x.device),
                            torch.arange(w, dtype=torch.float64, device=x.device), indexing="ij")
    dx, dy = xs - (w - 1) / 2, ys - (h - 1) / 2
    # Output pixel -> source pixel: the inverse of a counter-clockwise turn (y points down).
    sx = cos * dx - sin * dy + (w - 1) / 2
    sy = sin * dx + cos * dy + (h - 1) / 2
    grid = torch.stack(((2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1), dim=-1)[None].to(x.dtype)
    if op.fill == 0:  # grid_sample's zero padding is the fill
        return F.grid_sample(x[None], grid, mode=op.interpolation, padding_mode="zeros", align_corners=False)[0]
    # A ones channel says how much of each output pixel came from inside the image; the rest is fill.
    src = torch.cat((x, torch.ones(1, h, w, dtype=x.dtype, device=x.device)))[None]
    out = F.grid_sample(src, grid, mode=op.interpolation, padding_mode="zeros", align_corners=False)[0]
    return out[:c] + (1 - out[c:]) * _channels(op.fill, c, out)


def _gray(x):
    """ITU-R 601-2 luma, as torchvision's rgb_to_grayscale; a 1-channel image is its own grey."""
    if x.shape[0] == 1:
        return x
    return (0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]


def _blend(a, b, f: float):
    return (f * a + (1 - f) * b).clamp(0, 1)


def _shift_hue(x, turn: float):
    """Turn the HSV hue by `turn` (in turns), as colorsys and torchvision's adjust_hue do.

    In closed form: with hue6 = 6·hue, channel n (R 5, G 3, B 1) becomes
    max - (max - min)·clamp(min(k, 4 - k), 0, 1), where k = (n + hue6 + 6·turn) mod 6;
    saturation and value are unchanged.
    """
    import torch

    r, g, b = x[0], x[1], x[2]
    maxc, minc = x.amax(0), x.amin(0)
    delta = maxc - minc
    d = torch.where(delta > 0, delta, 1)  # grey pixels have delta 0: any hue gives them back
    hue6 = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, 2 + (b - r) / d, 4 + (r - g) / d))
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).reshape(3, 1, 1) + (hue6 + 6 * turn)) % 6
    return maxc - delta * torch.minimum(k, 4 - k).clamp(0, 1)


def color_jitter(x, op: ColorJitter, g):
    import torch

    order = torch.tensor([uniform(g) for _ in range(4)], dtype=torch.float64).argsort().tolist()
    factors = (uniform(g, *op.brightness), uniform(g, *op.contrast), uniform(g, *op.saturation), uniform(g, *op.hue))
    gray_image = x.shape[0] == 1
    for k in order:
        f = factors[k]
        if k == 0 and op.brightness != (1.0, 1.0):
            x = (x * f).clamp(0, 1)
        elif k == 1 and op.contrast != (1.0, 1.0):
            x = _blend(x, _gray(x).mean(), f)
        elif k == 2 and op.saturation != (1.0, 1.0) and not gray_image:
            x = _blend(x, _gray(x), f)
        elif k == 3 and op.hue != (0.0, 0.0) and not gray_image:
            x = _shift_hue(x, f)
    return x


def random_erasing(x, op: RandomErasing, g):
    import torch

    c, h, w = x.shape
    box = erasing_box(h, w, op.scale, op.ratio, g)
    if box is None:
        return x
    top, left, eh, ew = box
    x = x.clone()
    if op.value == "random":
        x[:, top:top + eh, left:left + ew] = torch.rand((c, eh, ew), generator=g, dtype=torch.float64).to(x)
    else:
        x[:, top:top + eh, left:left + ew] = _channels(op.value, c, x)
    return x


def _flip(dim):
    def run(x, op, g):
        return x.flip(dim)
    return run


_ITEM_OPS = {RandomResizedCrop: resized_crop, RandomCrop: random_crop, HorizontalFlip: _flip(-1),
             VerticalFlip: _flip(-2), Rotation: rotate, ColorJitter: color_jitter, RandomErasing: random_erasing}


class ItemTransform:
    """(x [C, H, W] float in [0, 1], generator) -> augmented x of the same shape and dtype.

    The item ops run in Augment's field order; each first draws one uniform against its p,
    then its own draws. The input is never modified in place, so a dataset held in memory
    stays as it was. Holds only the settings, so DataLoader workers started by spawn can
    take it along.
    """

    def __init__(self, cfg: Augment):
        self.cfg = cfg

    def __call__(self, x, g):
        if x.dim() != 3 or not x.is_floating_point():
            raise ValueError(f"augment: expected one float image [C, H, W], got {x.dtype} {list(x.shape)}")
        # ColorJitter clips to [0, 1]; data in another range would be flattened without a word.
        if self.cfg.color_jitter is not None and (float(x.min()) < 0 or float(x.max()) > 1):
            raise DataProblem(f"augment: an image has values in [{float(x.min()):g}, {float(x.max()):g}], "
                              "but ColorJitter works on pixels in [0, 1]",
                              hint="scale the data to [0, 1]; normalize after augmenting, not before")
        for op in self.cfg.item_ops():
            if uniform(g) < op.p:
                x = _ITEM_OPS[type(op)](x, op, g)
        return x


class BatchTransform:
    """(x [N, ...], y [N] class indices or [N, K] soft targets, K, generator) -> (x, y [N, K] float).

    One uniform picks Mixup (below Mixup's p), CutMix (below the sum of both p) or neither;
    then one Beta(alpha, alpha) draw, and for CutMix the box's centre. Each item is mixed with
    the previous one in the batch (the first with the last: torch.roll by one, as torchvision
    does). The targets come back as probabilities whether or not the batch was mixed.
    """

    def __init__(self, cfg: Augment):
        self.cfg = cfg

    def __call__(self, x, y, num_classes: int, g):
        import torch

        mixup, cutmix = self.cfg.mixup, self.cfg.cutmix
        if y.dim() == 1 and not y.is_floating_point():
            y = torch.nn.functional.one_hot(y, num_classes)
        elif y.dim() != 2 or y.shape[1] != num_classes:
            raise ValueError(f"augment: targets must be class indices [N] or soft targets [N, {num_classes}], "
                             f"got shape {list(y.shape)}")
        y = y.to(x.dtype if x.is_floating_point() else torch.float32)
        p_mix = mixup.p if mixup is not None else 0.0
        p_cut = cutmix.p if cutmix is not None else 0.0
        u = uniform(g)
        if u < p_mix:
            lam = beta(g, mixup.alpha)
            # lerp: previous + lam * (own - previous), one new tensor instead of three
            return x.roll(1, 0).lerp_(x, lam), y.roll(1, 0).lerp_(y, lam)
        if u < p_mix + p_cut:
            if x.dim() != 4:
                raise ValueError(f"augment: CutMix needs images [N, C, H, W], got shape {list(x.shape)}")
            h, w = x.shape[-2:]
            lam = beta(g, cutmix.alpha)
            top, left, bottom, right = cutmix_box(h, w, lam, g)
            patch = x[..., top:bottom, left:right].roll(1, 0)
            x = x.clone()
            x[..., top:bottom, left:right] = patch
            lam = 1.0 - (bottom - top) * (right - left) / (h * w)
            return x, lam * y + (1 - lam) * y.roll(1, 0)
        return x, y


def item_transform(cfg: Augment) -> ItemTransform:
    """The item ops of `cfg` as one callable (x [C, H, W], generator) -> x."""
    return ItemTransform(cfg)


def batch_transform(cfg: Augment) -> BatchTransform | None:
    """Mixup/CutMix of `cfg` as one callable (x, y, num_classes, generator) -> (x, soft y); None without them."""
    if cfg.mixup is None and cfg.cutmix is None:
        return None
    return BatchTransform(cfg)


__all__ = ["Augment", "parse_augment", "check_input", "check_loss", "item_generator", "batch_generator",
           "item_transform", "batch_transform", "ItemTransform", "BatchTransform", "AugmentError", "OPS",
           "SOFT_TARGET_LOSSES"] + list(OPS)
