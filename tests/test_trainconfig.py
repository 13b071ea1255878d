"""The train-block schema: defaults, the design doc's example, clear range errors, lr schedules."""

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from netspec.errors import ParamProblem
from netspec.trainconfig import (SCHEDULES, Adam, Constant, Cosine, OneCycle, TrainConfig, lr_factor,
                                 with_overrides)


def _errors(d: dict) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as info:
        TrainConfig.model_validate(d)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_defaults():
    cfg = TrainConfig()
    assert cfg.optimizer == Adam(lr=1e-3)
    assert cfg.schedule == Constant()
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.val_split) == (10, 64, 0, 0.2)
    assert cfg.grad_clip is None and cfg.device == "auto" and not cfg.amp
    assert cfg.checkpoint_every == 1 and cfg.early_stopping_patience is None


def test_design_example_and_bare_names():
    cfg = TrainConfig.model_validate({
        "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True},
        "schedule": {"name": "Cosine", "warmup_epochs": 5}, "epochs": 90, "batch_size": 256})
    assert cfg.optimizer.name == "SGD" and cfg.optimizer.nesterov and cfg.lr == 0.1
    assert cfg.schedule == Cosine(warmup_epochs=5)
    assert TrainConfig.model_validate({"schedule": {"name": "Constant"}}).schedule == Constant()
    assert TrainConfig.model_validate({"schedule": "OneCycle"}).schedule == OneCycle()
    # A config survives a JSON round trip, as checkpoint.json stores it.
    assert TrainConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_frozen_and_extra_forbidden():
    cfg = TrainConfig()
    with pytest.raises(ValidationError):
        cfg.epochs = 3
    assert _errors({"label_smoothing": 0.1})[0][0] == ("label_smoothing",)
    assert _errors({"optimizer": {"name": "SGD", "betas": [0.9, 0.99]}})[0][0] == ("optimizer", "SGD", "betas")


@pytest.mark.parametrize("bad, loc, message", [
    ({"optimizer": {"name": "SGD", "lr": -0.1}}, ("optimizer", "SGD", "lr"), "lr must be > 0, got -0.1"),
    ({"optimizer": {"name": "Adam", "lr": 0}}, ("optimizer", "Adam", "lr"), "lr must be > 0"),
    ({"optimizer": {"name": "Adam", "betas": [0.9, 1.0]}}, ("optimizer", "Adam", "betas", 1), "betas must be >= 0 and < 1"),
    ({"optimizer": {"name": "SGD", "momentum": True}}, ("optimizer", "SGD", "momentum"), "expected a number, got true"),
    ({"optimizer": {"name": "SGD", "nesterov": True}}, ("optimizer", "SGD"), "nesterov=true needs momentum > 0"),
    ({"optimizer": {"name": "sgd"}}, ("optimizer",), "did you mean 'SGD'"),
    ({"optimizer": {"name": "Lion"}}, ("optimizer",), "unknown optimizer 'Lion'"),
    ({"optimizer": {"lr": 0.1}}, ("optimizer",), "needs a name"),
    ({"schedule": "Cosin"}, ("schedule",), "did you mean 'Cosine'"),
    ({"schedule": {"name": "Step", "step_epochs": 0}}, ("schedule", "Step", "step_epochs"), "step_epochs must be >= 1"),
    ({"schedule": {"name": "MultiStep", "milestones": [5, 5]}}, ("schedule", "MultiStep"), "increase strictly"),
    ({"schedule": {"name": "MultiStep", "milestones": []}}, ("schedule", "MultiStep"), "at least one"),
    ({"schedule": {"name": "Exponential", "gamma": 1.5}}, ("schedule", "Exponential", "gamma"), "gamma must be > 0 and <= 1"),
    ({"schedule": {"name": "OneCycle", "pct_start": 1}}, ("schedule", "OneCycle", "pct_start"), "pct_start must be > 0 and < 1"),
    ({"epochs": 0}, ("epochs",), "epochs must be >= 1 and <= 100000, got 0"),
    ({"epochs": 2.5}, ("epochs",), "expected a whole number"),
    ({"batch_size": 2_000_000}, ("batch_size",), "batch_size must be >= 1 and <= 1000000"),
    ({"val_split": 1.0}, ("val_split",), "val_split must be >= 0 and < 1"),
    ({"grad_clip": 0}, ("grad_clip",), "grad_clip must be > 0"),
    ({"device": "gpu"}, ("device",), "device must be"),
    ({"early_stopping_patience": 0}, ("early_stopping_patience",), "must be >= 1"),
])
def test_clear_errors(bad, loc, message):
    errors = _errors(bad)
    assert any(e_loc == loc and message in msg for e_loc, msg in errors), errors


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_devices(device):
    assert TrainConfig(device=device).device == device


def test_with_overrides():
    cfg = TrainConfig.model_validate({"optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9}})
    new = with_overrides(cfg, epochs=3, batch_size=8, lr=0.5, seed=7)
    assert (new.epochs, new.batch_size, new.lr, new.seed) == (3, 8, 0.5, 7)
    assert new.optimizer.momentum == 0.9 and cfg.lr == 0.1
    assert with_overrides(cfg) == cfg
    with pytest.raises(ParamProblem, match="--lr: lr must be > 0"):
        with_overrides(cfg, lr=-1)
    with pytest.raises(ParamProblem, match="--batch-size"):
        with_overrides(cfg, batch_size=0)


def _cfg(schedule, epochs=10, lr=0.1):
    return TrainConfig.model_validate({"optimizer": {"name": "SGD", "lr": lr}, "schedule": schedule,
                                       "epochs": epochs})


def test_schedules_by_hand():
    spe = 4  # steps per epoch
    step = _cfg({"name": "Step", "step_epochs": 3, "gamma": 0.5})
    assert [lr_factor(step, e * spe, spe) for e in (0, 2, 3, 6)] == [1, 1, 0.5, 0.25]
    multi = _cfg({"name": "MultiStep", "milestones": [2, 5], "gamma": 0.1})
    assert [lr_factor(multi, e * spe, spe) for e in (1, 2, 5)] == pytest.approx([1, 0.1, 0.01])
    expo = _cfg({"name": "Exponential", "gamma": 0.9})
    assert lr_factor(expo, 3 * spe + 1, spe) == pytest.approx(0.9 ** 3)
    cos = _cfg({"name": "Cosine", "warmup_epochs": 1, "min_lr": 0.01})
    assert lr_factor(cos, 0, spe) == pytest.approx(0.25)  # warmup ramps over the first epoch's 4 steps
    assert lr_factor(cos, spe, spe) == pytest.approx(1.0)
    assert lr_factor(cos, 10 * spe, spe) == pytest.approx(0.1)  # min_lr / lr
    one = _cfg({"name": "OneCycle", "max_lr": 1.0, "pct_start": 0.25})
    peak = round(0.25 * 10 * spe)
    assert lr_factor(one, 0, spe) == pytest.approx(10 / 25)
    assert lr_factor(one, peak, spe) == pytest.approx(10.0)
    assert lr_factor(one, 10 * spe, spe) == pytest.approx(10 / 25e4)


def test_scheduler_matches_lr_factor():
    torch = pytest.importorskip("torch")
    from netspec.trainconfig import build_optimizer, build_scheduler

    cfg = _cfg({"name": "Cosine", "warmup_epochs": 2}, epochs=5)
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))])
    sched = build_scheduler(cfg, opt, steps_per_epoch=3)
    for i in range(15):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(cfg, i, 3))
        opt.step()
        sched.step()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_build_each_optimizer(name):
    torch = pytest.importorskip("torch")
    from netspec.trainconfig import build_optimizer

    opt = build_optimizer(TrainConfig(optimizer={"name": name, "lr": 0.02}), [torch.nn.Parameter(torch.ones(3))])
    assert type(opt).__name__ == name and opt.param_groups[0]["lr"] == 0.02


@settings(max_examples=25, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(SCHEDULES)), epochs=st.integers(1, 20), spe=st.integers(1, 7),
       warm=st.integers(0, 3), data=st.data())
def test_schedule_factors_are_finite_and_positive(name, epochs, spe, warm, data):
    schedule = {"name": name}
    if name not in ("OneCycle",):
        schedule["warmup_epochs"] = warm
    if name == "MultiStep":
        schedule["milestones"] = [2, 4]
    cfg = _cfg(schedule, epochs=epochs)
    step = data.draw(st.integers(0, epochs * spe - 1))
    f = lr_factor(cfg, step, spe)
    assert math.isfinite(f) and f > 0 or (name == "Cosine" and f >= 0)
    assert f <= 1.0 + 1e-12 or name == "OneCycle"


def test_no_torch_import():
    code = "import sys, netspec.trainconfig as t; t.TrainConfig(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cpu_threads_follow_the_model_size():
    from netspec.trainconfig import cpu_threads
    cfg = TrainConfig(batch_size=64)
    assert cpu_threads(cfg, 1_200, 16) == 1  # a tiny MLP: one thread
    assert cpu_threads(cfg, 1_800_000_000, 16) == 16  # ResNet-18: every core
    assert cpu_threads(cfg, 1_000_000, 16) == 6  # 64M MACs per batch
    assert cpu_threads(TrainConfig(threads=3), 1_800_000_000, 16) == 3  # the setting wins
    assert "--threads" in str(_override_error(threads=0))


def _override_error(**flags):
    with pytest.raises(ParamProblem) as info:
        with_overrides(TrainConfig(), **flags)
    return info.value


def test_new_settings_are_checked():
    assert "lr must be at most 3.403e+38 (float32's largest), got 1e+300" in str(_override_error(lr=1e300))
    assert "did you mean 'val_accuracy'" in _errors({"monitor": "val_acc"})[0][1]
    assert "keep must be one of 'best', 'last'" in _errors({"keep": "all"})[0][1]
    assert "freeze must be a layer-name pattern" in _errors({"freeze": [1]})[0][1]
    assert TrainConfig.model_validate({"freeze": "x.*"}).freeze == ("x.*",)
    assert _errors({"optimizer": {"name": "SGD", "lr": 1e39}})[0][1].endswith("got 1e+39")


def test_idle_cores_leave_the_busy_ones(monkeypatch):
    from netspec import trainconfig
    monkeypatch.setattr(trainconfig.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert trainconfig.idle_cores(2) == 2
    monkeypatch.setattr(trainconfig.os, "getloadavg", lambda: (1.4, 0.0, 0.0))
    assert trainconfig.idle_cores(2) == 1
    monkeypatch.setattr(trainconfig.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert trainconfig.idle_cores(2) == 1  # never none
