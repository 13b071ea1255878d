"""The `train { ... }` block: optimizers, learning-rate schedules and run settings.

Pure pydantic so that `netspec check` validates hyperparameters without torch; the builders
at the bottom import torch only when a run actually starts.
"""

from __future__ import annotations

import math
import os
import re
from typing import Annotated, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator,
                      ValidationError, ValidationInfo, model_validator)

from .augment import Augment
from .errors import ParamProblem, did_you_mean


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use


def _no_bool(v):
    # pydantic's lax mode reads true/false as 1/0; in a train block that is always a slip.
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {str(v).lower()}")
    return v


def _whole(v):
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"expected a whole number, got {v!r}")
    return v


FLOAT32_MAX = 3.4028234663852886e38


def _range(lo=None, hi=None, lo_open=False, hi_open=False):
    """A validator whose message names the field and the rule, e.g. `lr must be > 0, got -1`."""

    def check(v, info: ValidationInfo):
        if v is None:
            return v
        bad = ((lo is not None and (v <= lo if lo_open else v < lo))
               or (hi is not None and (v >= hi if hi_open else v > hi)))
        if isinstance(v, float) and math.isfinite(v) and abs(v) > FLOAT32_MAX:
            # Finite in Python, infinite once torch holds it in a float32 tensor.
            raise ValueError(f"{info.field_name} must be at most {FLOAT32_MAX:.4g} (float32's largest), got {v:g}")
        if bad or (isinstance(v, float) and not math.isfinite(v)):
            rules = []
            if lo is not None:
                rules.append(f"{'>' if lo_open else '>='} {lo}")
            if hi is not None:
                rules.append(f"{'<' if hi_open else '<='} {hi}")
            raise ValueError(f"{info.field_name} must be {' and '.join(rules)}, got {v}")
        return v

    return AfterValidator(check)


Num = Annotated[float, BeforeValidator(_no_bool)]
Whole = Annotated[int, BeforeValidator(_whole), BeforeValidator(_no_bool)]
Positive = Annotated[Num, _range(0, lo_open=True)]
NonNeg = Annotated[Num, _range(0)]
Fraction = Annotated[Num, _range(0, 1, hi_open=True)]  # [0, 1)
Decay = Annotated[Num, _range(0, 1, lo_open=True)]  # (0, 1]
NonNegWhole = Annotated[Whole, _range(0)]


# ---------------------------------------------------------------- optimizers

class SGD(_Frozen):
    name: Literal["SGD"] = "SGD"
    lr: Positive = 0.01  # step size
    momentum: Fraction = 0.0  # heavy-ball momentum; 0 turns it off
    weight_decay: NonNeg = 0.0  # L2 penalty added to the gradient
    nesterov: bool = False  # Nesterov momentum; needs momentum > 0 and dampening 0
    dampening: Fraction = 0.0  # scales down the gradient entering the momentum buffer

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov=true needs momentum > 0 and dampening = 0")
        return self


class Adam(_Frozen):
    name: Literal["Adam"] = "Adam"
    lr: Positive = 1e-3  # step size
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)  # decay of the gradient mean and variance
    eps: Positive = 1e-8  # added to the denominator for numerical stability
    weight_decay: NonNeg = 0.0  # L2 penalty added to the gradient (coupled, unlike AdamW)


class AdamW(_Frozen):
    name: Literal["AdamW"] = "AdamW"
    lr: Positive = 1e-3  # step size
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)  # decay of the gradient mean and variance
    eps: Positive = 1e-8  # added to the denominator for numerical stability
    weight_decay: NonNeg = 0.01  # decoupled weight decay, applied to the weights directly


class RMSprop(_Frozen):
    name: Literal["RMSprop"] = "RMSprop"
    lr: Positive = 0.01  # step size
    alpha: Fraction = 0.99  # decay of the squared-gradient average
    eps: Positive = 1e-8  # added to the denominator for numerical stability
    weight_decay: NonNeg = 0.0  # L2 penalty added to the gradient
    momentum: Fraction = 0.0  # momentum on the scaled step; 0 turns it off
    centered: bool = False  # divide by the gradient's variance rather than its raw 2nd moment


OPTIMIZERS = {c.__name__: c for c in (SGD, Adam, AdamW, RMSprop)}


# ---------------------------------------------------------------- schedules
# Every schedule is a multiplier on the optimizer's lr, evaluated per iteration, so a
# resumed run needs only the step count to continue exactly.

class Constant(_Frozen):
    name: Literal["Constant"] = "Constant"
    warmup_epochs: NonNegWhole = 0  # linear ramp from ~0 to lr over these first epochs


class Step(_Frozen):
    name: Literal["Step"] = "Step"
    step_epochs: Annotated[Whole, _range(1)] = 30  # multiply lr by gamma every this many epochs
    gamma: Decay = 0.1  # the factor applied at each step
    warmup_epochs: NonNegWhole = 0  # linear ramp from ~0 to lr over these first epochs


class MultiStep(_Frozen):
    name: Literal["MultiStep"] = "MultiStep"
    milestones: tuple[Annotated[Whole, _range(1)], ...]  # epochs at which lr is multiplied by gamma
    gamma: Decay = 0.1  # the factor applied at each milestone
    warmup_epochs: NonNegWhole = 0  # linear ramp from ~0 to lr over these first epochs

    @model_validator(mode="after")
    def _increasing(self):
        if not self.milestones:
            raise ValueError("milestones must list at least one epoch")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones must increase strictly, got {list(self.milestones)}")
        return self


class Cosine(_Frozen):
    name: Literal["Cosine"] = "Cosine"
    warmup_epochs: NonNegWhole = 0  # linear ramp from ~0 to lr, then the cosine decay starts
    min_lr: NonNeg = 0.0  # the lr reached at the last iteration


class OneCycle(_Frozen):
    name: Literal["OneCycle"] = "OneCycle"
    max_lr: Annotated[Num | None, _range(0, lo_open=True)] = None  # peak lr; default the optimizer's lr
    pct_start: Annotated[Num, _range(0, 1, lo_open=True, hi_open=True)] = 0.3  # share of the run spent rising


class Exponential(_Frozen):
    name: Literal["Exponential"] = "Exponential"
    gamma: Decay = 0.95  # lr is multiplied by this once per epoch
    warmup_epochs: NonNegWhole = 0  # linear ramp from ~0 to lr over these first epochs


SCHEDULES = {c.__name__: c for c in (Constant, Step, MultiStep, Cosine, OneCycle, Exponential)}


def _named(kind: str, choices: dict):
    """Accept a bare name, and refuse an unknown one with a 'did you mean'."""

    def check(v):
        if isinstance(v, str):
            v = {"name": v}
        if isinstance(v, dict):
            name = v.get("name")
            if name is None:
                raise ValueError(f"the {kind} needs a name: one of {', '.join(choices)}")
            if name not in choices:
                hint = did_you_mean(str(name), choices)
                raise ValueError(f"unknown {kind} '{name}'" + (f"; {hint}" if hint else "")
                                 + f" (choose from {', '.join(choices)})")
        return v

    return BeforeValidator(check)


Optimizer = Annotated[Union[SGD, Adam, AdamW, RMSprop], Discriminator("name"),
                      _named("optimizer", OPTIMIZERS)]
Schedule = Annotated[Union[Constant, Step, MultiStep, Cosine, OneCycle, Exponential],
                     Discriminator("name"), _named("schedule", SCHEDULES)]

MONITORS = ("val_loss", "val_accuracy")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _device(v):
    if not isinstance(v, str) or not _DEVICE.fullmatch(v):
        raise ValueError(f"device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got {v!r}")
    return v


def _choice(name: str, choices: tuple[str, ...]):
    def check(v):
        if v not in choices:
            hint = did_you_mean(str(v), choices)
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {v!r}"
                             + (f"; {hint}" if hint else ""))
        return v
    return BeforeValidator(check)


def _patterns(v):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in v):
        raise ValueError("freeze must be a layer-name pattern or a list of them, e.g. [\"features.*\"]")
    return tuple(v)


class TrainConfig(_Frozen):
    """Everything a training run needs besides the network and the data."""

    optimizer: Optimizer = Adam()  # how the weights move
    schedule: Schedule = Constant()  # how the lr changes over the run
    epochs: Annotated[Whole, _range(1, 100_000)] = 10  # passes over the training set
    batch_size: Annotated[Whole, _range(1, 1_000_000)] = 64  # items per step (per process under torchrun)
    seed: Annotated[Whole, _range(0, 2**32 - 1)] = 0  # seeds weights, data order, split and dropout
    val_split: Fraction = 0.2  # share held out for validation when the data has no val set
    grad_clip: Annotated[Num | None, _range(0, lo_open=True)] = None  # max global grad norm; None: no clipping
    num_workers: Annotated[Whole, _range(0, 256)] = 0  # DataLoader worker processes
    device: Annotated[str, AfterValidator(_device)] = "auto"  # "auto" picks cuda when present
    threads: Annotated[Whole | None, _range(1, 1024)] = None  # CPU threads for torch; None: chosen from the model's size
    amp: bool = False  # float16 autocast with loss scaling; only takes effect on cuda
    checkpoint_every: Annotated[Whole, _range(1)] = 1  # epochs between checkpoints (the last is always saved)
    early_stopping_patience: Annotated[Whole | None, _range(1)] = None  # epochs without improvement before stopping
    monitor: Annotated[str, _choice("monitor", MONITORS)] = "val_loss"  # what "best" means (and early stopping watches)
    keep: Annotated[str, _choice("keep", ("best", "last"))] = "best"  # which epoch weights.safetensors holds
    freeze: Annotated[tuple[str, ...], BeforeValidator(_patterns)] = ()  # layer-name patterns whose parameters stay fixed
    augment: Augment = Augment()  # training-split augmentations, seeded per item by (seed, epoch, index)

    @property
    def lr(self) -> float:
        return self.optimizer.lr


def config_dict(cfg: TrainConfig, mode: str = "json") -> dict:
    """The settings as plain data (checkpoints, run.json); pydantic's serializer warnings about
    tuples held as lists are noise for the user, not a change of value."""
    return cfg.model_dump(mode=mode, warnings=False)


def with_overrides(cfg: TrainConfig, epochs=None, batch_size=None, lr=None, seed=None,
                   device=None, threads=None) -> TrainConfig:
    """Apply command-line flags on top of the spec's train block, revalidating them."""
    d = config_dict(cfg, "python")
    flags = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "device": device, "threads": threads}
    d.update({k: v for k, v in flags.items() if v is not None})
    if lr is not None:
        d["optimizer"] = {**d["optimizer"], "lr": lr}
    try:
        return TrainConfig.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        where = "--" + str(err["loc"][-1] if err["loc"][0] != "optimizer" else "lr").replace("_", "-")
        raise ParamProblem(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


# ---------------------------------------------------------------- builders (torch inside)

WORK_PER_THREAD = 10e6  # multiply-accumulates per batch that make one more CPU thread pay for itself


def cpu_threads(cfg: TrainConfig, macs_per_item: int, cores: int) -> int:
    """The CPU thread count: the setting, else one per WORK_PER_THREAD of a batch's work, up to the cores.

    A small network is faster on one thread than on many (the threads' handoffs cost more than
    its arithmetic), and a machine shared by several jobs is not oversubscribed by tiny ones.
    """
    if cfg.threads is not None:
        return cfg.threads
    return max(1, min(cores, int(macs_per_item * cfg.batch_size // WORK_PER_THREAD)))


def idle_cores(cores: int) -> int:
    """Of `cores`, those the 1-minute load average leaves free (at least one).

    torch's threads spin while they wait for each other: on a 2-core machine already running
    another job, a LeNet-5 epoch took 5-21 s on 2 threads against 0.5 s on 1.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return cores
    return max(1, min(cores, cores - int(load + 0.5)))


def build_optimizer(cfg: TrainConfig, params):
    import torch

    o = cfg.optimizer
    if isinstance(o, SGD):
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.nesterov, dampening=o.dampening)
    if isinstance(o, (Adam, AdamW)):
        cls = torch.optim.Adam if isinstance(o, Adam) else torch.optim.AdamW
        return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    return torch.optim.RMSprop(params, lr=o.lr, alpha=o.alpha, eps=o.eps, weight_decay=o.weight_decay,
                               momentum=o.momentum, centered=o.centered)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The multiplier on the optimizer's lr at iteration `step` (0-based) of the run."""
    s = cfg.schedule
    total = max(1, cfg.epochs * steps_per_epoch)
    epoch = step // steps_per_epoch
    if isinstance(s, OneCycle):
        # torch's OneCycleLR shape: from peak/25 up to peak, then cosine down to peak/25e4.
        peak = (s.max_lr or cfg.lr) / cfg.lr
        start, end = peak / 25, peak / 25e4
        up = max(1, round(s.pct_start * total))
        if step < up:
            return start + (peak - start) * (1 - math.cos(math.pi * step / up)) / 2
        t = min(1.0, (step - up) / max(1, total - up))
        return end + (peak - end) * (1 + math.cos(math.pi * t)) / 2
    warm = s.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    if isinstance(s, Constant):
        return 1.0
    if isinstance(s, Step):
        return s.gamma ** (epoch // s.step_epochs)
    if isinstance(s, MultiStep):
        return s.gamma ** sum(epoch >= m for m in s.milestones)
    if isinstance(s, Exponential):
        return s.gamma ** epoch
    floor = s.min_lr / cfg.lr  # Cosine
    t = min(1.0, (step - warm) / max(1, total - warm))
    return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2


def build_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """A LambdaLR stepped once per iteration; its state is just the step count."""
    import torch

    steps_per_epoch = max(1, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))


__all__ = ["TrainConfig", "config_dict", "cpu_threads", "idle_cores", "with_overrides", "build_optimizer", "build_scheduler", "lr_factor",
           "OPTIMIZERS", "SCHEDULES"] + list(OPTIMIZERS) + list(SCHEDULES)
