"""The training loop: data checked against the spec, best-epoch keeping, checkpoints and exact resume.

A run lives in a run folder (see `runfolder`): `run.json` (the record of the run),
`checkpoint.safetensors` (the truth, see `checkpoint`), the files derived from it
(`weights.safetensors`: the best epoch by default; `last.safetensors`; `checkpoint.json`) and
the metric files (`metrics.jsonl`, `metrics.csv`, `curves.png`). Only rank 0 writes under
torchrun, and it holds an exclusive lock on the folder for the whole run.

Data order is a pure function of (seed, epoch) through the sampler, and checkpoints are taken at
epoch ends, so resuming needs the weights, optimizer, scheduler and RNG states, and no pickle.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from . import checkpoint, runfolder
from .data import Augmented
from .errors import DataProblem, ParamProblem
from .memory import refuse_past_memory, training_bytes
from .runlog import RunLog, read_rows, require_tensorboard
from .trainconfig import (TrainConfig, build_optimizer, build_scheduler, config_dict, cpu_threads, idle_cores,
                          with_overrides)
from .trainsetup import (apply_freeze, check_classes, describe_settings, input_record, load_data,
                         outputs_of_classes)

atomic_write = runfolder.atomic_write  # kept importable from here for older callers


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `message` says what is saved and how to continue."""

    def __init__(self, message: str, out: Path):
        super().__init__(message)
        self.message, self.out = message, out


def train(spec, data=None, out_dir=None, epochs=None, batch_size=None, lr=None, seed=None,
          resume=False, progress=True, log=print, force=False, device=None, tensorboard=False,
          init=None, sets=None, command=None, threads=None) -> dict:
    """Train `spec` on `data` (None: the built-in digits); return the last epoch's metrics.

    `out_dir` None picks `runs/NETWORK` (then `-2`, `-3`, ...). A folder holding a run is refused
    unless `resume` (continue it) or `force` (replace it, once this run's first epoch is done).
    `init` starts from other weights (a run folder or a safetensors file; see docs/training.md).
    `sets` (the `--set` values as typed) and `command` (argv) are recorded in run.json.
    """
    import torch

    from .augment import batch_generator

    cfg = with_overrides(spec.train_config, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         device=device, threads=threads)
    if tensorboard:
        require_tensorboard()
    out = Path(out_dir) if out_dir else runfolder.default_folder(spec.name, resume)
    runfolder.check_out(out, resume, force)
    dist = _Distributed()
    lock = runfolder.Lock(out) if dist.rank == 0 else None
    say = log if dist.rank == 0 else _quiet
    old_threads = torch.get_num_threads()
    try:
        if lock is not None:
            lock.acquire()
            if lock.stale:
                say(f"note: took over the lock of a run that is no longer running ({lock.stale})")
            removed = runfolder.remove_stale_temps(out)
            if removed:
                say(f"note: removed {len(removed)} temporary file(s) left by a killed process: {', '.join(removed[:4])}")
        torch_device = _device(cfg, dist)
        auto_threads = cfg.threads is None
        if torch_device.type == "cpu":
            macs = spec.macs + spec.elementwise  # all the arithmetic of one item
            cfg = cfg.model_copy(update={"threads": cpu_threads(cfg, macs, idle_cores(max(1, old_threads // dist.world)))})
            torch.set_num_threads(cfg.threads)
        use_amp = cfg.amp and torch_device.type == "cuda"
        if cfg.amp and not use_amp:
            say("note: amp needs a CUDA device; training in float32")
        _seed_all(cfg.seed)
        classes_of = outputs_of_classes(spec)
        if torch_device.type == "cpu":
            refuse_past_memory(training_bytes(spec, cfg.batch_size), f"training {spec.name} at batch {cfg.batch_size}",
                               hint="lower batch_size or the input size (--set), or train on a larger machine")
        train_ds, val_ds, info = load_data(spec, data, cfg, classes_of)
        check_classes(spec, data, info, classes_of, sets or {}, train_ds)
        train_ds, mix = _augmentation(spec, cfg, train_ds, classes_of)
        if cfg.monitor == "val_accuracy" and (val_ds is None or spec.classifier_output is None):
            raise ParamProblem("monitor = \"val_accuracy\" needs a validation set and a classification loss",
                               hint="use monitor = \"val_loss\", or set val_split > 0")

        model = spec.to_torch().to(torch_device)
        init_note = _initialise(model, spec, init, say)
        trainable, frozen_bn = apply_freeze(model, cfg.freeze)
        loss_fn = spec.loss_module().to(torch_device)
        net = dist.wrap(model, torch_device)
        optimizer = build_optimizer(cfg, trainable)
        sampler = torch.utils.data.DistributedSampler(
            train_ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.seed)
        loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                                             num_workers=cfg.num_workers,
                                             pin_memory=torch_device.type == "cuda")
        scheduler = build_scheduler(cfg, optimizer, len(loader))
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        state = {"epoch": 0, "best": None, "bad_epochs": 0, "saved": 0}
        best_state = None
        rows: list[dict] = []
        ckpt = out / "checkpoint.safetensors"
        if resume and ckpt.exists():
            meta, tensors = checkpoint.read(ckpt)
            _check_resumable(meta, cfg, ckpt)
            saved_threads = meta["config"].get("threads") if isinstance(meta.get("config"), dict) else None
            if auto_threads and torch_device.type == "cpu" and isinstance(saved_threads, int) and saved_threads >= 1:
                # The run's own thread count, whatever the load now: sums in another order change its numbers.
                cfg = cfg.model_copy(update={"threads": saved_threads})
                torch.set_num_threads(saved_threads)
            best_state = checkpoint.restore(ckpt, meta, tensors, model, optimizer, scheduler, scaler, spec.name)
            state = {"epoch": int(meta["epoch"]), "best": meta["best"], "bad_epochs": int(meta["bad_epochs"]),
                     "saved": int(meta["epoch"])}
            changed = _changed(meta["config"], cfg)
            if changed:
                say("note: settings changed since the checkpoint; this run uses the new ones: " + changed)
            if lock is not None:
                # The derived files follow the one true checkpoint, whatever a kill interrupted.
                try:
                    checkpoint.derive(out, meta, tensors, cfg.keep)
                except OSError as e:
                    raise runfolder.write_failed(Path(e.filename or out), e, "the checkpoint is intact") from None
                rows = [r for r in read_rows(out / "metrics.jsonl") if r.get("epoch", 0) <= state["epoch"]]
            del tensors
            say(f"resuming from epoch {state['epoch']} in '{out}'")
            if state["epoch"] >= cfg.epochs:
                say(f"nothing to train: the checkpoint is at epoch {state['epoch']} and --epochs asks for "
                    f"{cfg.epochs}; `--resume --epochs {state['epoch'] + max(1, cfg.epochs)}` would train "
                    f"{max(1, cfg.epochs)} more")
                dist.barrier()
                return {**(rows[-1] if rows else {}), "out_dir": str(out), "best": state["best"]}
        elif resume:
            say(f"note: no checkpoint in '{out}'; starting a new run")
        replacing = bool(runfolder.holds_run(out)) and state["epoch"] == 0

        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in trainable)
        run = _run_record(spec, cfg, info, data, sets, command, n_params, n_train, init_note)
        say(describe_settings(spec, cfg, torch_device, info, n_params, n_train, out, threads_chosen=auto_threads))
        for note in info.get("notes", []):
            say(f"note: {note}")

        runlog = RunLog(out, rows, tensorboard and dist.rank == 0)
        names = [n for n, _ in spec.outputs]
        in_names = [n for n, _ in spec.inputs]
        tgt_names = [n for n, _ in spec.targets]
        acc_output = spec.classifier_output
        acc_target = _target_of(spec, acc_output)
        bar = progress and dist.rank == 0 and sys.stderr.isatty()
        metrics = rows[-1] if rows else None
        started = time.perf_counter()
        stopped_early = False
        epoch = state["epoch"]
        try:
            for epoch in range(state["epoch"], cfg.epochs):
                start = time.perf_counter()
                sampler.set_epoch(epoch)
                if isinstance(train_ds, Augmented):
                    train_ds.set_epoch(epoch)
                if best_state is None and state["best"] is not None and cfg.keep == "best":
                    # The model is about to move on from its best epoch: keep that epoch's weights.
                    # Copied only now, so a run's first checkpoint needs no copy of the model.
                    best_state = checkpoint.cpu_state(model)
                net.train()
                for m in frozen_bn:
                    m.eval()  # frozen BatchNorm keeps its running statistics
                sums = torch.zeros(4, dtype=torch.float64, device=torch_device)  # loss, items, correct, labels
                batches = _progress(loader, bar, f"epoch {epoch + 1}/{cfg.epochs}")
                for step, (x, y) in enumerate(batches):
                    xs = _batch(x, in_names, torch_device)
                    ys = _batch(y, tgt_names, torch_device)
                    if mix is not None:
                        xs, ys = mix(xs, ys, batch_generator(cfg.seed, epoch, step, dist.rank))
                    with torch.autocast(torch_device.type, dtype=torch.float16, enabled=use_amp):
                        outs = _as_dict(names, net(*xs.values()))
                        total, _ = loss_fn(outs, ys)
                    if not torch.isfinite(total):
                        raise DataProblem(
                            f"training diverged: the loss became {total.item()} at epoch {epoch + 1}, "
                            f"step {step + 1} (the data was checked: it holds no NaN or infinity)",
                            hint=f"lower the learning rate (it is {cfg.lr:g}; try --lr {cfg.lr / 10:g}), or "
                                 "set grad_clip in the train block; " + _kept(state))
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(total).backward()
                    if cfg.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    n = len(next(iter(xs.values())))
                    sums[0] += total.detach().double() * n
                    sums[1] += n
                    if acc_output is not None:
                        sums[2:] += _correct(outs[acc_output].detach(), ys[acc_target])
                    if bar and step % 10 == 0:
                        batches.set_postfix(loss=f"{total.item():.4f}")
                sums = dist.sum(sums)
                metrics = {"epoch": epoch + 1, "train_loss": (sums[0] / sums[1]).item()}
                if acc_output is not None:
                    metrics["train_accuracy"] = (sums[2] / sums[3]).item()
                if val_ds is not None:
                    metrics.update(_evaluate(net, loss_fn, val_ds, cfg, dist, torch_device, names, in_names,
                                             tgt_names, acc_output, acc_target, use_amp))
                metrics["lr"] = optimizer.param_groups[0]["lr"]
                metrics["seconds"] = round(time.perf_counter() - start, 3)
                _check_finite(model, optimizer, metrics, epoch + 1, state, cfg)

                improved = _track_best(state, metrics, cfg)
                if improved:
                    best_state = None  # the model itself holds the best weights now
                state["epoch"] = epoch + 1
                stop = (cfg.early_stopping_patience is not None
                        and state["bad_epochs"] >= cfg.early_stopping_patience)
                if dist.rank == 0:
                    if replacing:
                        _clear_old_run(out)  # --force: the older run goes once this one has an epoch
                        replacing = False
                    runlog.add(metrics)
                    say(_describe(metrics, cfg.epochs, state))
                    due = stop or (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs
                    _write(out, runlog, run, state, due, model, best_state, optimizer, scheduler, scaler,
                           cfg, spec.name)
                if stop:
                    stopped_early = True
                    say(f"early stopping: {cfg.monitor} has not improved for {state['bad_epochs']} epochs")
                    break
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted during epoch {epoch + 1}; " + _kept(state), out) from None
        finally:
            runlog.close()
        if best_state is not None and cfg.keep == "best" and state["best"]["epoch"] != state["epoch"]:
            model.load_state_dict(best_state)  # the run ends with its best weights in memory too
        if stopped_early or state["epoch"] == cfg.epochs:
            say(_final(state, cfg, time.perf_counter() - started, out))
        dist.barrier()
        return {**(metrics or {}), "out_dir": str(out), "best": state["best"]}
    finally:
        torch.set_num_threads(old_threads)
        if lock is not None:
            lock.release()
        dist.close()


def _augmentation(spec, cfg: TrainConfig, train_ds, classes_of: dict):
    """The training split with the item augmentations, and the batch one (Mixup, CutMix) or None."""
    from .augment import batch_transform, check_input, check_loss, item_transform
    aug = cfg.augment
    if not aug:
        return train_ds, None
    if len(spec.inputs) != 1 or len(spec.targets) != 1:
        raise ParamProblem(f"augment works on networks with one input and one target; '{spec.name}' has "
                           f"{len(spec.inputs)} and {len(spec.targets)}", hint="drop augment from the train block")
    in_name, in_type = spec.inputs[0]
    check_input(aug, tuple(in_type.shape[1:]), f"input '{in_name}'")
    check_loss(aug, [spec.graph.nodes[n]["op"] for n in spec.graph.graph["losses"]])
    if aug.item_ops():
        train_ds = Augmented(train_ds, item_transform(aug), cfg.seed)
    batch = batch_transform(aug)
    if batch is None:
        return train_ds, None
    tgt = spec.targets[0][0]
    if tgt not in classes_of:
        raise ParamProblem("augment: Mixup and CutMix need a classification loss, to know the class count")
    k = classes_of[tgt][1]

    def mix(xs: dict, ys: dict, g):
        x, y = batch(xs[in_name], ys[tgt], k, g)
        return {in_name: x}, {tgt: y}
    return train_ds, mix


def _quiet(*_):
    pass


# ---------------------------------------------------------------- run state and files

def _kept(state: dict) -> str:
    if not state["saved"]:
        return "no epoch was saved"
    return f"the checkpoint of epoch {state['saved']} is kept, and `--resume` continues from it"


def _track_best(state: dict, metrics: dict, cfg: TrainConfig) -> bool:
    """Update state["best"] and the patience count; True when this epoch is the new best."""
    key = cfg.monitor if cfg.monitor in metrics else "train_loss"
    value = metrics[key]
    best = state["best"]
    better = best is None or (value > best["value"] if key == "val_accuracy" else value < best["value"])
    if better:
        state["best"] = {"epoch": metrics["epoch"], "monitor": key, "value": value,
                         **{k: v for k, v in metrics.items() if k not in ("epoch", "seconds")}}
        state["bad_epochs"] = 0
    else:
        state["bad_epochs"] += 1
    return better


def _check_finite(model, optimizer, metrics: dict, epoch: int, state: dict, cfg: TrainConfig) -> None:
    """Refuse to save a diverged epoch: weights, optimizer state or metrics with NaN or infinity.

    Adam's second moment overflows to infinity before the weights do; a resume from it is stuck.
    """
    import math
    import torch
    bad = checkpoint.non_finite(model.state_dict())
    names = {id(p): n for n, p in model.named_parameters()}
    bad += [f"{names.get(id(param), '?')} ({key})" for param, entry in optimizer.state.items()
            for key, v in entry.items() if torch.is_tensor(v) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]
    nan_metrics = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad and not nan_metrics:
        return
    what = (f"{len(bad)} weight or optimizer tensor(s) hold NaN or infinity ({', '.join(bad[:4])})" if bad
            else f"{', '.join(nan_metrics)} is {metrics[nan_metrics[0]]}")
    raise DataProblem(f"training diverged at epoch {epoch}: {what}; this epoch is not saved",
                      hint=f"lower the learning rate (it is {cfg.lr:g}; try --lr {cfg.lr / 10:g}) or set "
                           f"grad_clip; " + _kept(state))


def _clear_old_run(out: Path) -> None:
    import shutil
    for name in runfolder.RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    shutil.rmtree(out / "tensorboard", ignore_errors=True)


def _write(out: Path, runlog: RunLog, run: dict, state: dict, due: bool, model, best_state, optimizer,
           scheduler, scaler, cfg: TrainConfig, network: str) -> None:
    """The epoch's files: the checkpoint first (when due) and what derives from it, then metrics and run.json."""
    try:
        # Metrics first: rows past the checkpoint are dropped on resume, but a row the checkpoint
        # has must never be missing.
        runlog.write()
        if due:
            keep_best = cfg.keep == "best" and state["best"] is not None and state["best"]["epoch"] != state["epoch"]
            model_state = checkpoint.cpu_view(model)  # written at once: no copy needed
            meta = checkpoint.save(out, network, model_state, best_state if keep_best else None, optimizer,
                                   scheduler, scaler, config_dict(cfg), state)
            # The checkpoint is the truth: from here `--resume` continues from this epoch, and remakes
            # the files below from it if writing them fails.
            state["saved"] = state["epoch"]
            tensors = {f"model.{k}": v for k, v in model_state.items()}
            if keep_best:
                tensors.update({f"best.{k}": v for k, v in best_state.items()})
            checkpoint.derive(out, meta, tensors, cfg.keep)
        run["best"] = state["best"]
        if run["spec"]["text"] is not None:
            atomic_write(out / runfolder.SPEC_COPY, run["spec"]["text"].encode("utf-8"))
        runfolder.write_run(out, run)
    except OSError as e:
        saved = state["saved"]
        raise runfolder.write_failed(
            Path(e.filename) if e.filename else out, e,
            f"the checkpoint of epoch {saved} is intact" if saved else "no epoch was saved") from None


def _run_record(spec, cfg: TrainConfig, info: dict, data, sets, command, n_params: int, n_train: int,
                init_note) -> dict:
    try:
        record = runfolder.spec_record(spec.path)
    except OSError:
        record = {"path": spec.path, "sha256": None, "text": None}
    return {
        "format": runfolder.FORMAT,
        "network": spec.name,
        "spec": record,
        "sets": dict(sets or {}),
        "train": config_dict(cfg),
        "classes": info.get("classes"),
        "input": input_record(spec, data),
        "data": {"source": None if data is None else str(data),
                 "path": None if data is None else str(Path(data).resolve()), "description": info["source"],
                 "train_size": info["train_size"], "val_size": info["val_size"],
                 "val_split": cfg.val_split, "seed": cfg.seed},
        "parameters": {"total": n_params, "trainable": n_train, "frozen": n_params - n_train},
        "init": init_note,
        "best": None,
        "versions": runfolder.versions(),
        "seed": cfg.seed,
        "command": list(command) if command is not None else list(sys.argv),
    }


def _check_resumable(meta: dict, cfg: TrainConfig, path: Path) -> None:
    """Settings that would silently change what was already trained are refused on resume."""
    try:
        saved = meta["config"]
        for key, why in (("seed", "the train/validation split and the data order"),
                         ("val_split", "the train/validation split")):
            if saved[key] != getattr(cfg, key):
                raise DataProblem(f"cannot resume from '{path}' with {key} {getattr(cfg, key)}: the run used "
                                  f"{saved[key]}, and changing it would change {why}",
                                  hint=f"resume with {key} {saved[key]}, or start a new run with --force")
    except (KeyError, TypeError) as e:
        raise DataProblem(f"cannot resume from '{path}': its metadata lacks {e}",
                          hint="the checkpoint was damaged or edited; drop --resume (with --force)") from None


def _changed(saved: dict, cfg: TrainConfig) -> str:
    now = config_dict(cfg)
    parts = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and a.get("name") == b.get("name"):
            parts += [f"{key}.{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            parts.append(f"{key} {a} -> {b}")
    return ", ".join(parts)


def _initialise(model, spec, init, say):
    """Start from other weights (`--init`): the layers that fit are loaded, the others listed."""
    if init is None:
        return None
    from .trainsetup import init_from
    return init_from(model, spec, init, say)


# ---------------------------------------------------------------- pieces of the loop

def _as_dict(names, result) -> dict:
    if isinstance(result, (tuple, list)):
        return dict(zip(names, result))
    return {names[0]: result}


def _batch(part, names: list[str], device) -> dict:
    """A batch's inputs or targets by name: one tensor, or a list of them in declared order."""
    parts = part if isinstance(part, (list, tuple)) else [part]
    return {n: t.to(device, non_blocking=True) for n, t in zip(names, parts)}


def _target_of(spec, output: str | None) -> str | None:
    if output is None:
        return None
    g = spec.graph
    ref = next(r for n, r, _ in g.graph["outputs"] if n == output)
    for loss in g.graph["losses"]:
        args = g.nodes[loss]["args"]
        if args[0] == ref:
            return args[1].node
    return None


def _correct(logits, y):
    """(correct predictions, labels) of a batch, as float64 sums."""
    import torch
    pred = logits.argmax(dim=1)
    truth = y.argmax(dim=1) if y.is_floating_point() and y.dim() == pred.dim() + 1 else y
    return torch.stack([(pred == truth).sum().double(), torch.tensor(float(truth.numel()), dtype=torch.float64,
                                                                      device=logits.device)])


def _evaluate(net, loss_fn, val_ds, cfg, dist, device, names, in_names, tgt_names, acc_output, acc_target,
              use_amp) -> dict:
    import torch

    # Each rank takes every world-th item: no padding, so the summed metrics are exact.
    shard = torch.utils.data.Subset(val_ds, range(dist.rank, len(val_ds), dist.world))
    loader = torch.utils.data.DataLoader(shard, batch_size=cfg.batch_size, shuffle=False,
                                         num_workers=cfg.num_workers)
    was_training = [m.training for m in net.modules()]
    net.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, items, correct, labels
    with torch.no_grad():
        for x, y in loader:
            xs, ys = _batch(x, in_names, device), _batch(y, tgt_names, device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outs = _as_dict(names, net(*xs.values()))
                total, _ = loss_fn(outs, ys)
            n = len(next(iter(xs.values())))
            sums[0] += total.double() * n
            sums[1] += n
            if acc_output is not None:
                sums[2:] += _correct(outs[acc_output], ys[acc_target])
    for m, mode in zip(net.modules(), was_training):
        m.training = mode
    sums = dist.sum(sums)
    result = {"val_loss": (sums[0] / sums[1]).item()}
    if acc_output is not None:
        result["val_accuracy"] = (sums[2] / sums[3]).item()
    return result


def _progress(loader, enabled: bool, desc: str):
    if not enabled:
        return loader
    from tqdm import tqdm
    return tqdm(loader, desc=desc, leave=False, unit="batch")


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _describe(m: dict, epochs: int, state: dict) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"train_loss {_num(m['train_loss'])}"]
    for key in ("train_accuracy", "val_loss", "val_accuracy"):
        if key in m:
            parts.append(f"{key} {_num(m[key])}")
    parts.append(f"lr {m['lr']:.3g}")
    best = state["best"]
    mark = "  *best" if best and best["epoch"] == m["epoch"] else ""
    return "  ".join(parts) + f"  ({m['seconds']:.1f} s){mark}"


def _final(state: dict, cfg: TrainConfig, seconds: float, out: Path) -> str:
    best = state["best"]
    shown = ", ".join(f"{k} {_num(best.get(k))}" for k in ("val_loss", "val_accuracy", "train_loss")
                      if best and k in best)
    kept = f"epoch {best['epoch']}" if cfg.keep == "best" and best else f"epoch {state['epoch']} (keep = \"last\")"
    return (f"finished {state['epoch']} epoch{'' if state['epoch'] == 1 else 's'} in {seconds:.1f} s; best epoch {best['epoch'] if best else '-'} "
            f"by {best['monitor'] if best else cfg.monitor} ({shown}); {out / 'weights.safetensors'} holds {kept}")


def _seed_all(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(cfg: TrainConfig, dist: "_Distributed"):
    import torch
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParamProblem(f"device = \"{cfg.device}\" but torch sees no CUDA GPU",
                               hint="use --device cpu (or device = \"auto\" in the train block)")
        if dist.world > 1:
            want = f"cuda:{dist.local_rank}"  # one GPU per torchrun process
        dev = torch.device(want)
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParamProblem(f"device = \"{want}\" but there are {torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


class _Distributed:
    """The torchrun world (WORLD_SIZE > 1), or a world of one that does nothing."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False
        if self.world > 1:
            import torch
            import torch.distributed as td
            if not td.is_initialized():
                backend = "nccl" if torch.cuda.is_available() else "gloo"
                if backend == "nccl":
                    torch.cuda.set_device(self.local_rank)
                td.init_process_group(backend)
                self.owned = True

    def wrap(self, model, device):
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sum(self, t):
        if self.world > 1:
            import torch.distributed as td
            td.all_reduce(t)
        return t

    def barrier(self):
        if self.world > 1:
            import torch.distributed as td
            td.barrier()

    def close(self):
        if self.owned:
            import torch.distributed as td
            td.destroy_process_group()
            self.owned = False


__all__ = ["train", "atomic_write", "Interrupted"]
