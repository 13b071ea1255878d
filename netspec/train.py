"""The training loop: data, optimizer, schedule, metrics, checkpoints and exact resume.

Files in `out_dir` (all written atomically, only by rank 0 under torchrun):

- ``metrics.jsonl``: one JSON line per epoch;
- ``weights.safetensors``: the model's state dict, keyed by layer name (what `compile --weights` reads);
- ``checkpoint.safetensors``: ``model.*`` and ``optim.*`` tensors, plus every other piece of
  state as JSON in its metadata, so one atomic file is always self-consistent;
- ``checkpoint.json``: the same JSON state, for people and tools to read.

Data order is a pure function of (seed, epoch) through the sampler, and checkpoints are taken at
epoch ends, so resuming needs the weights, optimizer, scheduler and RNG states, and no pickle.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .data import load_dataset
from .errors import DataProblem, ParamProblem
from .trainconfig import TrainConfig, build_optimizer, build_scheduler, with_overrides

FORMAT = "netspec-checkpoint-1"


def train(spec, data=None, out_dir=None, epochs=None, batch_size=None, lr=None, seed=None,
          resume=False, progress=True, log=print) -> dict:
    """Train `spec` on `data` (None: the built-in digits); return the last epoch's metrics."""
    import torch

    if len(spec.inputs) != 1 or len(spec.targets) != 1:
        raise DataProblem(
            f"training reads one input and one target; '{spec.name}' has {len(spec.inputs)} "
            f"input(s) and {len(spec.targets)} target(s)",
            hint="declare a loss on one output, or train the model from Python with your own loop")
    cfg = with_overrides(spec.train_config, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    out = Path(out_dir or Path("runs") / spec.name)
    dist = _Distributed()
    try:
        device = _device(cfg, dist)
        use_amp = cfg.amp and device.type == "cuda"
        if cfg.amp and not use_amp and dist.rank == 0:
            log("note: amp needs a CUDA device; training in float32")
        _seed_all(cfg.seed)
        (_, in_type), (tgt_name, tgt_type) = spec.inputs[0], spec.targets[0]
        train_ds, val_ds, info = load_dataset(data, in_type, tgt_type, cfg.val_split, cfg.seed)

        model = spec.to_torch().to(device)
        loss_fn = spec.loss_module().to(device)
        net = dist.wrap(model, device)
        optimizer = build_optimizer(cfg, model.parameters())
        sampler = torch.utils.data.DistributedSampler(
            train_ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.seed)
        loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                                             num_workers=cfg.num_workers,
                                             pin_memory=device.type == "cuda")
        scheduler = build_scheduler(cfg, optimizer, len(loader))
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        state = {"epoch": 0, "best": None, "bad_epochs": 0}
        if resume and (out / "checkpoint.safetensors").exists():
            state = _load_checkpoint(out, model, optimizer, scheduler, scaler, cfg, log if dist.rank == 0 else _quiet)
        elif resume and dist.rank == 0:
            log(f"note: no checkpoint in '{out}'; starting a new run")
        if dist.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            _trim_metrics(out / "metrics.jsonl", state["epoch"])
            if state["epoch"] == 0:
                log(f"training {spec.name} on {info['source']}: {info['train_size']} train, "
                    f"{info['val_size']} val, device {device}")

        names = [n for n, _ in spec.outputs]
        acc_output = spec.classifier_output
        bar = progress and dist.rank == 0 and sys.stderr.isatty()
        metrics = _last_metrics(out / "metrics.jsonl")
        for epoch in range(state["epoch"], cfg.epochs):
            start = time.perf_counter()
            sampler.set_epoch(epoch)
            net.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            seen = 0
            batches = _progress(loader, bar, f"epoch {epoch + 1}/{cfg.epochs}")
            for step, (x, y) in enumerate(batches):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    total, _ = loss_fn(_as_dict(names, net(x)), {tgt_name: y})
                if not torch.isfinite(total):
                    raise DataProblem(f"the loss became {total.item()} at epoch {epoch + 1}, step {step + 1}",
                                      hint="lower the learning rate, or set grad_clip in the train block")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += total.detach().double() * len(x)
                seen += len(x)
                if bar and step % 10 == 0:
                    batches.set_postfix(loss=f"{total.item():.4f}")
            sums = dist.sum(torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=device)]))
            metrics = {"epoch": epoch + 1, "train_loss": (sums[0] / sums[1]).item()}
            if val_ds is not None:
                metrics.update(_evaluate(net, loss_fn, val_ds, cfg, dist, device, names, tgt_name,
                                         acc_output, use_amp))
            metrics["lr"] = optimizer.param_groups[0]["lr"]
            metrics["seconds"] = round(time.perf_counter() - start, 3)

            watched = metrics.get("val_loss", metrics["train_loss"])
            if state["best"] is None or watched < state["best"]:
                state["best"], state["bad_epochs"] = watched, 0
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            stop = (cfg.early_stopping_patience is not None
                    and state["bad_epochs"] >= cfg.early_stopping_patience)
            if dist.rank == 0:
                _append_metrics(out / "metrics.jsonl", metrics)
                log(_describe(metrics, cfg.epochs))
                if stop or (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                    _save_checkpoint(out, model, optimizer, scheduler, scaler, cfg, state)
            if stop:
                if dist.rank == 0:
                    log(f"early stopping: no improvement for {state['bad_epochs']} epochs")
                break
        dist.barrier()
        return {**(metrics or {}), "out_dir": str(out)}
    finally:
        dist.close()


def _quiet(*_):
    pass


# ---------------------------------------------------------------- pieces of the loop

def _as_dict(names, result) -> dict:
    if isinstance(result, (tuple, list)):
        return dict(zip(names, result))
    return {names[0]: result}


def _evaluate(net, loss_fn, val_ds, cfg, dist, device, names, tgt_name, acc_output, use_amp) -> dict:
    import torch

    # Each rank takes every world-th item: no padding, so the summed metrics are exact.
    shard = torch.utils.data.Subset(val_ds, range(dist.rank, len(val_ds), dist.world))
    loader = torch.utils.data.DataLoader(shard, batch_size=cfg.batch_size, shuffle=False,
                                         num_workers=cfg.num_workers)
    net.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, items, correct, labels
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outs = _as_dict(names, net(x))
                total, _ = loss_fn(outs, {tgt_name: y})
            sums[0] += total.double() * len(x)
            sums[1] += len(x)
            if acc_output is not None:
                pred = outs[acc_output].argmax(dim=1)
                truth = y.argmax(dim=1) if y.is_floating_point() and y.dim() == pred.dim() + 1 else y
                sums[2] += (pred == truth).sum()
                sums[3] += truth.numel()
    net.train()
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


def _describe(m: dict, epochs: int) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"train_loss {m['train_loss']:.4f}"]
    if "val_loss" in m:
        parts.append(f"val_loss {m['val_loss']:.4f}")
    if "val_accuracy" in m:
        parts.append(f"val_accuracy {m['val_accuracy']:.4f}")
    parts.append(f"lr {m['lr']:.3g}")
    return "  ".join(parts) + f"  ({m['seconds']:.1f} s)"


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
                               hint="set device = \"auto\" or \"cpu\" in the train block")
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


# ---------------------------------------------------------------- files

def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _last_metrics(path: Path) -> dict | None:
    rows = _read_metrics(path)
    return rows[-1] if rows else None


def _append_metrics(path: Path, row: dict) -> None:
    # Rewriting the whole file keeps the append atomic; it is one short line per epoch.
    old = path.read_bytes() if path.exists() else b""
    atomic_write(path, old + (json.dumps(row) + "\n").encode())


def _trim_metrics(path: Path, epoch: int) -> None:
    """Drop lines past the checkpoint (a run killed after logging but before saving)."""
    rows = [r for r in _read_metrics(path) if r.get("epoch", 0) <= epoch]
    if path.exists() or rows:
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _cpu(t):
    return t.detach().to("cpu").contiguous().clone()


def _save_checkpoint(out: Path, model, optimizer, scheduler, scaler, cfg: TrainConfig, state: dict) -> None:
    import torch
    from safetensors.torch import save

    weights = {k: _cpu(v) for k, v in model.state_dict().items()}
    tensors = {f"model.{k}": v for k, v in weights.items()}
    opt = optimizer.state_dict()
    opt_meta = {}
    for idx, entry in opt["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = _cpu(v)
            else:
                opt_meta.setdefault(str(idx), {})[k] = v
    meta = {
        "format": FORMAT,
        "epoch": state["epoch"],
        "best": state["best"],
        "bad_epochs": state["bad_epochs"],
        "data_position": {"epoch": state["epoch"], "batch": 0, "sampler_seed": cfg.seed},
        "optimizer": {"param_groups": opt["param_groups"], "state": opt_meta},
        "scheduler": _jsonable(scheduler.state_dict()),
        "scaler": _jsonable(scaler.state_dict()),
        "rng": _rng_state(),
        "config": cfg.model_dump(mode="json"),
    }
    text = json.dumps(meta)
    atomic_write(out / "weights.safetensors", save(weights, metadata={"format": "pt"}))
    atomic_write(out / "checkpoint.safetensors", save(tensors, metadata={"netspec": text}))
    atomic_write(out / "checkpoint.json", json.dumps(meta, indent=1).encode())


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _load_checkpoint(out: Path, model, optimizer, scheduler, scaler, cfg: TrainConfig, log) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = out / "checkpoint.safetensors"
    try:
        raw = path.read_bytes()
        tensors = load(raw)
        # The safetensors header: 8 bytes of length, then JSON holding our metadata.
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["netspec"])
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}")
    except (OSError, SafetensorError, ValueError, KeyError, TypeError) as e:
        raise DataProblem(f"cannot resume from '{path}': {e}",
                          hint="drop --resume to start a new run") from None
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict = {}
        for key, v in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = v
        for idx, entry in meta["optimizer"]["state"].items():
            opt_state.setdefault(int(idx), {}).update(entry)
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]})
        scheduler.load_state_dict(meta["scheduler"])
        if scaler.is_enabled() and meta["scaler"]:
            scaler.load_state_dict(meta["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise DataProblem(f"the checkpoint in '{out}' does not fit this network: {str(e).splitlines()[0]}",
                          hint="resume with the spec that wrote it, or drop --resume") from None
    _set_rng_state(meta["rng"])
    saved = dict(meta["config"], epochs=cfg.epochs)
    if saved != cfg.model_dump(mode="json") | {"epochs": cfg.epochs}:
        log("note: the train settings differ from the checkpoint's; continuing with the new ones")
    log(f"resuming from epoch {meta['epoch']} in '{out}'")
    return {"epoch": meta["epoch"], "best": meta["best"], "bad_epochs": meta["bad_epochs"]}


def _b64(t) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _rng_state() -> dict:
    import torch
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    def tensor(s):
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([tensor(s) for s in saved])


__all__ = ["train", "atomic_write"]
