"""The `netspec` command: a thin click layer over the library.

Exit status: 0 on success, 1 for a mistake in the user's input (spec, data, weights),
2 for a usage error (unknown option, missing argument), 3 for an internal error (a bug).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import click

from . import __version__, report
from .errors import DataProblem, NetspecError

SPEC = click.argument("spec", metavar="FILE[:NETWORK]")


def _network_option(f):
    f = click.option("--set", "-D", "sets", multiple=True, metavar="NAME=VALUE",
                     help="Override a network parameter, e.g. -D classes=10 -D 'depths=[2, 2, 2, 2]'.")(f)
    return click.option("--network", "-n", metavar="NAME",
                        help="The network to use when FILE defines several (or write FILE:NAME).")(f)


def user_errors(f):
    """Render a user's mistake as located diagnostics and exit 1, never as a traceback."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except NetspecError as e:
            report.error(e)
            raise SystemExit(1) from None
        except BrokenPipeError:
            # The reader (`| head`) left; point stdout at /dev/null so the exit flush is silent.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            report.fail("interrupted")
            raise SystemExit(130) from None
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except Exception as e:
            if os.environ.get("NETSPEC_DEBUG"):
                raise
            # Not the user's mistake: say so plainly, keep the traceback for whoever debugs it.
            report.fail(f"internal error: {type(e).__name__}: {e}\n  this is a bug in netspec, not in "
                        "your input; rerun with NETSPEC_DEBUG=1 for the traceback and report it")
            raise SystemExit(3) from None
    return wrapper


def _sets(sets: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in sets:
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        params[name.strip()] = value.strip()
    return params


def _load(spec: str, network: str | None, sets: tuple[str, ...] = ()):
    from .spec import load
    params = _sets(sets)
    if Path(spec).is_dir():
        return _load_run(Path(spec), network, params)
    return load(spec, network, params)


def _load_run(folder: Path, network: str | None, params: dict):
    """A run folder stands for its spec, with the --set values and settings it was trained with."""
    from .runfolder import SPEC_COPY, read_run
    from .spec import load
    from .trainconfig import TrainConfig
    if not (folder / "run.json").is_file():
        raise DataProblem(f"'{folder}' is a folder without run.json, so it is not a run folder",
                          hint="give a .net file, or a folder that `netspec train` wrote")
    run = read_run(folder)
    if network is not None and network != run["network"]:
        raise click.UsageError(f"--network {network} conflicts with the run folder '{folder}', which "
                               f"trained {run['network']}")
    if params:
        raise click.UsageError(f"a run folder fixes its --set values ({_shown_sets(run['sets'])}); "
                               "give the spec file to change them")
    record = run["spec"]
    original = Path(record.get("path") or "")
    path = folder / SPEC_COPY
    if original.is_file():
        import hashlib
        if hashlib.sha256(original.read_bytes()).hexdigest() == record.get("sha256"):
            path = original  # the file as trained: its imports resolve where they were written
    if not path.is_file():
        raise DataProblem(f"'{folder}' lacks {SPEC_COPY}, and {original} changed or is gone since the run",
                          hint="retrain, or restore the spec file the run used")
    s = load(str(path), run["network"], {k: str(v) for k, v in run["sets"].items()})
    try:
        s.graph.graph["train"] = TrainConfig.model_validate(run["train"])
    except ValueError as e:
        raise DataProblem(f"'{folder / 'run.json'}' holds invalid train settings: {str(e).splitlines()[0]}") from None
    s.graph.graph["run"] = run
    s.graph.graph["run_dir"] = str(folder)
    return s


def _shown_sets(sets: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sets.items()) or "none"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="netspec")
def main():
    """netspec: write a network once in a .net file; check it, train it, compile it to ONNX."""


@main.command()
@SPEC
@_network_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--brief", is_flag=True, help="Print the totals only, not a row per layer.")
@user_errors
def check(spec, network, sets, as_json, brief):
    """Parse and shape-check a spec; print its layers, shapes and parameter counts."""
    s = _load(spec, network, sets)
    if as_json:
        report.as_json(spec_json(s, layers=not brief))
    else:
        report.summary(s, layers=not brief)


def _tensor(name, t) -> dict:
    return {"name": name, "dtype": t.dtype, "shape": list(t.shape)}


def spec_json(s, layers: bool = True) -> dict:
    g = s.graph
    output_of = {ref: name for name, ref, _ in g.graph["outputs"]}
    out = {
        "network": s.name,
        "file": s.path,
        "parameters": s.parameters,
        "macs": sum(r["flops"] for r in s.rows),
        "inputs": [_tensor(n, t) for n, t in s.inputs],
        "outputs": [_tensor(n, t) for n, t in s.outputs],
        "targets": [_tensor(n, t) for n, t in s.targets],
        "losses": [{"op": g.nodes[n]["op"], "prediction": output_of[g.nodes[n]["args"][0]],
                    "target": g.nodes[n]["args"][1].node, "weight": g.nodes[n]["weight"]}
                   for n in g.graph["losses"]],
        "train": s.train_config.model_dump(mode="json"),
    }
    if layers:
        out["layers"] = s.rows
    return out


def _weights_for(s, weights: str | None, seed: int):
    """Arrays for the ONNX emitter: from a safetensors file (or a run folder), else fresh."""
    from .weights import init_weights, load_safetensors
    if weights is None:
        run_dir = s.graph.graph.get("run_dir")
        if run_dir is None:
            return init_weights(s.graph, seed=seed), "fresh initialisation"
        weights = run_dir  # `compile RUN`: the run's trained weights
    path = Path(weights)
    if path.is_dir():
        path = path / "weights.safetensors"
    if not path.is_file():
        raise DataProblem(f"weights file '{path}' does not exist", hint=_neighbour_hint(path))
    if path.name == "checkpoint.safetensors":
        raise DataProblem(f"'{path}' is the training checkpoint (weights, optimizer and RNG state), "
                          "not a weights file",
                          hint=f"give {path.parent / 'weights.safetensors'} (the best epoch), "
                               f"{path.parent / 'last.safetensors'} (the last one), or the folder {path.parent}")
    return load_safetensors(path, s.graph), str(path)


def _neighbour_hint(path: Path) -> str:
    """A did-you-mean among the files next to a missing one."""
    import difflib
    folder = path.parent
    if not folder.is_dir():
        return f"the folder '{folder}' does not exist either"
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".pt", ".pth") or p.is_dir())
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{folder / close[0]}'?"
    shown = ", ".join(names[:6]) if names else "no weights files"
    return f"'{folder}' holds: {shown}; give the weights.safetensors that `netspec train` wrote, or its folder"


@main.command(name="compile")
@SPEC
@_network_option
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .onnx model.")
@click.option("--weights", "-w", metavar="FILE", help="A weights.safetensors (or the run folder) to embed.")
@click.option("--opset", type=click.IntRange(13, 21), default=None, help="ONNX opset (default 17).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fresh initialisation.")
@click.option("--optimize", is_flag=True,
              help="Also write OUT.opt.onnx, graph-optimized by ONNX Runtime for its CPU provider.")
@click.option("--float16", is_flag=True,
              help="Also write OUT.fp16.onnx: float16 weights and compute, float32 inputs and outputs.")
@click.option("--int8", is_flag=True, help="Also write OUT.int8.onnx: int8 weights, dynamically quantized.")
@user_errors
def compile_(spec, network, sets, out, weights, opset, seed, optimize, float16, int8):
    """Compile a spec to an ONNX model, with trained or freshly initialised weights.

    OUT is always the float32 model; each variant flag adds a file beside it (see docs/deploy.md).
    """
    from . import lower_onnx, variants
    start = time.perf_counter()
    # Refuse a missing folder before the (possibly long) compile, not with an OSError after it.
    folder = Path(out).parent
    if not folder.is_dir():
        raise DataProblem(f"cannot write {out}: the folder '{folder}' does not exist",
                          hint="create it first, or give another -o path")
    s = _load(spec, network, sets)
    arrays, source = _weights_for(s, weights, seed)
    model = lower_onnx.to_onnx(s.graph, arrays, opset=opset or lower_onnx.DEFAULT_OPSET)
    del arrays  # the model holds its own copy; the checker below needs the memory
    nodes, version = len(model.graph.node), model.opset_import[0].version
    kinds = [k for k, on in (("optimize", optimize), ("float16", float16), ("int8", int8)) if on]
    # Variants are built first and land only after OUT does, so a failure leaves older files as they were.
    with variants.staged(model, out, kinds) as written:
        # The file is checked as a deployment would load it, before it replaces an older one.
        lower_onnx.save(model, out, check=True)
    size = sum(f.stat().st_size for f in Path(out).parent.glob(Path(out).name + "*"))
    report.info(f"wrote {out}: {s.name}, {nodes:,} ONNX nodes, opset {version}, {s.parameters:,} "
                f"parameters, {size / 1e6:.1f} MB (weights: {source}) in {time.perf_counter() - start:.2f} s")
    for kind, path in written:
        vsize = variants.files_size(path)
        report.info(f"wrote {path}: {variants.VARIANTS[kind].describe}, {vsize / 1e6:.1f} MB "
                    f"({vsize / size:.2f}x the float32 file)")


@main.command()
@SPEC
@_network_option
@click.option("--data", "-d", metavar="PATH",
              help="A folder of class subfolders of images, a .npz (x, y, or one array per input and "
                   "target name) or a .csv; default: the built-in digits.")
@click.option("--epochs", type=click.IntRange(1), help="Override the train block's epochs.")
@click.option("--batch-size", type=click.IntRange(1), help="Override the train block's batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Override the optimizer's learning rate (also when resuming: the new lr is used).")
@click.option("--seed", type=int, help="Override the train block's seed.")
@click.option("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (overrides the train block).")
@click.option("--threads", type=click.IntRange(1, 1024),
              help="CPU threads for torch (default: chosen from the model's size, up to the cores).")
@click.option("--out", "-o", "out_dir", metavar="DIR",
              help="Run folder (default runs/NETWORK, or runs/NETWORK-2, -3, ... when taken).")
@click.option("--resume", is_flag=True, help="Continue the run in DIR from its checkpoint.")
@click.option("--force", is_flag=True,
              help="Replace the run in DIR (its files go once the new run's first epoch is done).")
@click.option("--init", "init", metavar="WEIGHTS",
              help="Start from these weights: a run folder, a .safetensors or a PyTorch state dict "
                   "(.pth/.pt); layers that do not fit keep their fresh initialisation.")
@click.option("--tensorboard", is_flag=True, help="Also log the metrics for TensorBoard in DIR/tensorboard.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar (on a terminal).")
@user_errors
def train(spec, network, sets, data, epochs, batch_size, lr, seed, device, threads, out_dir, resume, force,
          init, tensorboard, progress):
    """Train a spec on a dataset into a run folder: weights, checkpoint, metrics, curves and run.json."""
    import shlex
    import warnings

    from .train import Interrupted
    from .train import train as run_training
    if resume and force:
        raise click.UsageError("--resume continues the run in DIR and --force replaces it: give one of them")
    if resume and init:
        raise click.UsageError("--init sets the weights a new run starts from; --resume continues from "
                               "the checkpoint's: give one of them")
    s = _load(spec, network, sets)
    params = _sets(sets)
    run = s.graph.graph.get("run")
    if run is not None:  # `netspec train RUN --resume`: the run's spec, --set values and folder
        out_dir, params = out_dir or spec, run["sets"]
    try:
        with warnings.catch_warnings():
            # A library's warning is one line here, not a quoted source line of netspec's.
            warnings.showwarning = lambda message, category, *_a, **_k: report.note(
                f"warning: {category.__name__}: {message}")
            metrics = run_training(s, data=data, out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, resume=resume, force=force, device=device, threads=threads,
                                   tensorboard=tensorboard, init=init, progress=progress, log=report.info,
                                   sets=params, command=["netspec", *sys.argv[1:]])
    except Interrupted as e:
        again = [a for a in sys.argv[1:] if a != "--force"]
        if not any(a in ("--out", "-o") or a.startswith("--out=") for a in again):
            again += ["--out", str(e.out)]
        again += [] if "--resume" in again else ["--resume"]
        report.fail(f"{e.message}\n  hint: `netspec {shlex.join(again)}` continues the run")
        raise SystemExit(130) from None
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 speaks for the run
    report.info(f"run folder: {metrics['out_dir']} (compile it with `netspec compile {metrics['out_dir']} "
                f"-o model.onnx`)")


@main.command()
@SPEC
@click.argument("model", type=click.Path(dir_okay=False))
@_network_option
@click.option("--data", "-d", metavar="PATH", help="The dataset (default: the built-in digits).")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True,
              help="Which split to evaluate: the held-out one, as `train` made it, or the training one.")
@click.option("--provider", default=None, metavar="NAME",
              help="ONNX Runtime execution provider (default: the best available).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@user_errors
def evaluate(spec, model, network, sets, data, split, provider, batch_size):
    """Run a compiled ONNX model in ONNX Runtime on a dataset split and print its accuracy."""
    from .evaluate import evaluate_onnx
    s = _load(spec, network, sets)
    run = s.graph.graph.get("run")
    if data is None and run is not None:
        # The run's own data, split as it was trained (found from any folder: its absolute path).
        record = run.get("data") or {}
        data = record.get("path") if record.get("path") and Path(record["path"]).exists() else record.get("source")
    result = evaluate_onnx(s, model, data=data, split=split, provider=provider, batch_size=batch_size)
    report.info(f"{model}: {result['items']:,} items ({split} split), accuracy {result['accuracy']:.4f}, "
                f"on {result['provider']} in {result['seconds']:.2f} s")


@main.group()
def weights():
    """Bring weights from elsewhere into a spec's layout."""


@weights.command(name="import")
@click.argument("source", metavar="SRC")
@click.option("--spec", "spec", required=True, metavar="FILE[:NETWORK]", help="The spec whose layers receive the weights.")
@_network_option
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .safetensors file (usable by `compile --weights` and `train --init`).")
@click.option("--strict/--lenient", default=True, show_default=True,
              help="Strict: every layer must match. Lenient: layers that match nothing (a new head) are "
                   "freshly initialised and listed.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the layers left fresh (--lenient).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@user_errors
def import_(source, spec, network, sets, out, strict, seed, force):
    """Map a PyTorch state dict (.pth/.pt, .safetensors or a run folder) onto a spec's layers.

    Layers are matched by structure (kind and shape, in graph order), not by name, so a state dict
    laid out as torchvision's ResNet, VGG, MobileNetV2, GoogLeNet or ViT maps onto the zoo's networks.
    """
    from .transfer import import_state_dict, init_arrays
    from .weights import init_weights, save_safetensors
    target = Path(out)
    if target.suffix != ".safetensors":
        raise DataProblem(f"the output {out} should end in .safetensors", hint=f"write -o {target.with_suffix('.safetensors')}")
    if not target.parent.is_dir():
        raise DataProblem(f"cannot write {out}: the folder '{target.parent}' does not exist",
                          hint="create it first, or give another -o path")
    if target.exists() and Path(source).exists() and target.resolve() == Path(source).resolve():
        raise DataProblem(f"the output {out} is the source file", hint="write the imported weights elsewhere")
    if target.exists() and not force:
        raise DataProblem(f"{out} already exists", hint="--force replaces it, or give another -o path")
    s = _load(spec, network, sets)
    if strict:
        arrays, fresh = import_state_dict(s, source, log=report.info), []
    else:
        arrays, fresh = init_arrays(s, source, log=report.info)
        drawn = init_weights(s.graph, seed=seed)
        arrays = {k: arrays.get(k, v) for k, v in drawn.items()}
    save_safetensors(arrays, target)
    extra = f"; {len(fresh)} layer{'s' if len(fresh) != 1 else ''} freshly initialised (seed {seed})" if fresh else ""
    report.info(f"wrote {out}: {len(arrays)} tensors of {s.name}, {s.parameters:,} parameters{extra}")
