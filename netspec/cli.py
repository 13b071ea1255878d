"""The `netspec` command: a thin click layer over the library.

Exit status: 0 on success, 1 for a mistake in the user's input (spec, data, weights),
2 for a usage error (unknown option, missing argument), 3 for an internal error (a bug).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from pathlib import Path

import click

from . import __version__, report
from .completion import complete_network, complete_spec
from .errors import DataProblem, NetspecError, UsageProblem
from .file_kinds import check_input, check_output, neighbour_hint

SPEC = click.argument("spec", metavar="FILE[:NETWORK]", shell_complete=complete_spec)


def _network_option(f):
    f = click.option("--set", "-D", "sets", multiple=True, metavar="NAME=VALUE",
                     help="Override a network parameter, e.g. -D classes=10 -D 'depths=[2, 2, 2, 2]'.")(f)
    return click.option("--network", "-n", metavar="NAME", shell_complete=complete_network,
                        help="The network to use when FILE defines several (or write FILE:NAME).")(f)


def user_errors(f):
    """Render a user's mistake as located diagnostics and exit 1, never as a traceback."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except UsageProblem as e:
            raise click.UsageError(e.diagnostics[0].message) from None
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
    return load(spec, network, _sets(sets))


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
        report.as_json(s.to_json(layers=not brief))
    else:
        report.summary(s, layers=not brief)


def _weights_for(s, weights: str | None, seed: int):
    """Arrays for the ONNX emitter: from a safetensors file (or a run folder), else fresh."""
    from .weights import init_weights, load_safetensors
    if weights is None:
        if s.run_dir is None:
            return init_weights(s.graph, seed=seed), "fresh initialisation"
        weights = s.run_dir  # `compile RUN`: the run's trained weights
    path = Path(weights)
    if path.is_dir():
        path = path / "weights.safetensors"
    check_input(path, hint="give a weights.safetensors that `netspec train` wrote, or its run folder")
    if not path.is_file():
        raise DataProblem(f"weights file '{path}' does not exist", hint=_neighbour_hint(path))
    if path.name == "checkpoint.safetensors":
        raise DataProblem(f"'{path}' is the training checkpoint (weights, optimizer and RNG state), "
                          "not a weights file",
                          hint=f"give {path.parent / 'weights.safetensors'} (the best epoch), "
                               f"{path.parent / 'last.safetensors'} (the last one), or the folder {path.parent}")
    return load_safetensors(path, s.graph), str(path)


def _refuse_nonfinite(arrays: dict, source: str) -> None:
    """A model with inf or NaN weights computes garbage: refuse it unless the user says otherwise."""
    import numpy as np
    bad = [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
        raise DataProblem(f"the weights from {source} hold inf or NaN in {len(bad)} tensor(s): {shown}",
                          hint="the training diverged (try a lower --lr); --allow-nonfinite compiles them anyway")


def _writable_folder(out: str) -> Path:
    """Refuse an output folder that is missing or read-only before the (possibly long) compile."""
    folder = Path(out).parent
    if not folder.is_dir():
        raise DataProblem(f"cannot write {out}: the folder '{folder}' does not exist",
                          hint="create it first, or give another -o path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataProblem(f"cannot write {out}: the folder '{folder}' is not writable",
                          hint="give an -o path in a folder you can write to")
    if Path(out).is_dir():
        raise DataProblem(f"cannot write {out}: it is a folder", hint="give a file name, not a folder")
    check_output(out)
    return folder


@contextlib.contextmanager
def _writing(out, hint: str = "older files at the output paths are as they were"):
    """Turn the OS refusing a write of `out` (a full disk, /proc, a read-only folder) into exit 1."""
    try:
        yield
    except OSError as e:
        # The user knows the output path, not our hidden temporaries beside it.
        name = Path(str(e.filename or out))
        where = out if any(part.startswith(".") for part in name.parts[-2:]) else name
        raise DataProblem(f"cannot write {where}: {e.strerror or e}", hint=hint) from None


def _classes_option(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise click.BadParameter(f"{text!r}: give distinct, non-empty names separated by commas",
                                 param_hint="--classes")
    return names
def _neighbour_hint(path: Path) -> str:
    """A did-you-mean among the weights files and run folders next to a missing one."""
    hint = neighbour_hint(path, (".safetensors", ".pt", ".pth"), "weights files", folders=True)
    if hint.startswith("did you mean") or "does not exist" in hint:
        return hint
    return f"{hint}; give the weights.safetensors that `netspec train` wrote, or its folder"


@main.command(name="compile")
@SPEC
@_network_option
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .onnx model.")
@click.option("--weights", "-w", metavar="FILE|RUN",
              help="A weights.safetensors, or the run folder (whose run.json also gives the class names).")
@click.option("--classes", metavar="A,B,...", help="Class names in label order to record in the model "
              "(default: the run folder's).")
@click.option("--opset", type=click.IntRange(13, 21), default=None, help="ONNX opset (default 17).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fresh initialisation.")
@click.option("--optimize", is_flag=True,
              help="Also write OUT.opt.onnx, graph-optimized by ONNX Runtime for its CPU provider.")
@click.option("--float16", is_flag=True,
              help="Also write OUT.fp16.onnx: float16 weights and compute, float32 inputs and outputs.")
@click.option("--int8", is_flag=True, help="Also write OUT.int8.onnx: int8 weights, dynamically quantized "
              "(statically, with --calibrate).")
@click.option("--calibrate", metavar="DATA", help="With --int8: quantize statically, activation ranges "
              "calibrated on DATA (a dataset as `train` reads it, or `digits` for the built-in one; 256 of its "
              "training items are used).")
@click.option("--keep-ends-float", is_flag=True, help="With --calibrate: leave the first and last "
              "Conv/Linear layers in float32.")
@click.option("--calibration-method", "calibration_method", type=click.Choice(["minmax", "percentile"]),
              help="With --calibrate: how each activation's range is set from the calibration items: their "
                   "min and max (default), or the 99.999th percentile of |value|, which ignores rare extreme values.")
@click.option("--allow-nonfinite", is_flag=True, help="Compile weights that hold inf or NaN.")
@click.option("--external-data/--single-file", "external_data", default=None,
              help="Where the weights go. Default: to OUT.data beside OUT when they are 1 MiB or more (ONNX "
                   "Runtime maps that file instead of copying the weights out of the model: faster to load, less "
                   "memory), else inside OUT. --external-data always writes OUT.data; --single-file never does "
                   "(up to protobuf's 2 GiB).")
@click.option("--no-fold", "no_fold", is_flag=True,
              help="Keep BatchNormalization nodes and the weights as the state dict has them (see docs/deploy.md).")
@user_errors
def compile_(spec, network, sets, out, weights, classes, opset, seed, optimize, float16, int8, calibrate,
             keep_ends_float, calibration_method, allow_nonfinite, external_data, no_fold):
    """Compile a spec to an ONNX model, with trained or freshly initialised weights.

    OUT is always the float32 model; each variant flag adds a file beside it (see docs/deploy.md).
    """
    from . import variants
    from .metadata import run_record
    start = time.perf_counter()
    if calibrate is not None and not int8:
        raise click.UsageError("--calibrate makes the int8 variant static: give --int8 with it")
    if keep_ends_float and calibrate is None:
        raise click.UsageError("--keep-ends-float applies to static int8: give --int8 --calibrate DATA")
    if calibration_method and calibrate is None:
        raise click.UsageError("--calibration-method applies to static int8: give --int8 --calibrate DATA")
    names = _classes_option(classes)
    _writable_folder(out)
    variants.sweep_stale(out)  # what a killed compile of this output left behind
    s = _load(spec, network, sets)
    arrays, source = _weights_for(s, weights, seed)
    if not allow_nonfinite:
        _refuse_nonfinite(arrays, source)
    # The run folder's record: `compile RUN`, or --weights given as the folder or a weights file inside it.
    record = s.run if weights is None else run_record(weights if Path(weights).is_dir() else Path(weights).parent)
    metadata = s.metadata(classes=names, run=record)
    calibration = None
    if calibrate is not None:
        from .static_int8 import Calibration, calibration_inputs
        calibration = Calibration(calibration_inputs(s, calibrate, record), calibration_method or "minmax",
                                  keep_ends_float)
    kinds = [k for k, on in (("optimize", optimize), ("float16", float16), ("int8", int8)) if on]
    # The tensors stay arrays until `save` writes them one at a time: the compile holds the
    # weights once. Variants are made from a whole ModelProto, so only they build one.
    model = s.lower(weights=arrays, opset=opset, metadata=metadata, fold=not no_fold)
    if kinds:
        model = model.to_proto()
        del arrays  # the model holds its own copy
    header = model if kinds else model.header
    nodes, version = len(header.graph.node), header.opset_import[0].version
    # Variants are built first and land only after OUT does, so a failure leaves older files as they were.
    with _writing(out), variants.staged(model, out, kinds, calibration, external_data) as written:
        # The file is checked as a deployment would load it, before it replaces an older one.
        from .lower_onnx import save
        side = save(model, out, external_data=external_data, check=True)
    size = variants.files_size(out)
    report.info(f"wrote {out}: {s.name}, {nodes:,} ONNX nodes, opset {version}, {s.parameters:,} "
                f"parameters, {size / 1e6:.1f} MB (weights: {source}) in {time.perf_counter() - start:.2f} s")
    if side is not None:
        report.info(f"  its weights are in {side.name} beside it: keep the two files together "
                    "(--single-file writes one)")
    for kind, path in written:
        vsize = variants.files_size(path)
        report.info(f"wrote {path}: {variants.describe(kind, calibration is not None)}, {vsize / 1e6:.1f} MB "
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
    run = s.run
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
@click.argument("model", type=click.Path(dir_okay=False), required=False)
@_network_option
@click.option("--data", "-d", metavar="PATH", help="The dataset (default: the built-in digits).")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True,
              help="Which split to evaluate: the held-out one, as `train` made it, or the training one.")
@click.option("--provider", default=None, metavar="NAME",
              help="ONNX Runtime execution provider (default: the best available).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True,
              help="Items per ONNX Runtime call; lower it if memory runs short.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--plot", is_flag=False, flag_value="confusion.png", default=None, metavar="[FILE]",
              help="Also draw the confusion matrix to FILE (default confusion.png).")
@user_errors
def evaluate(spec, model, network, sets, data, split, provider, batch_size, as_json, plot):
    """Run a compiled ONNX model in ONNX Runtime on a dataset split: accuracy, per-class scores, confusion.

    SPEC may be a run folder: then MODEL is optional (the run's best weights are compiled in
    memory) and the default data is the run's own, split as it was trained. The model's inputs
    and outputs are checked against the spec (and a run folder's class names), and the dataset's
    classes against the model's, before anything runs. Each classification output is reported;
    every loss term's mean is too (all a regression network gets).
    """
    from .evaluate import check_plot_path, evaluate_onnx, plot_confusion
    if plot:
        check_plot_path(plot)
        _writable_folder(plot)
    s = _load(spec, network, sets)
    run = s.run
    if model is None and run is None:
        raise click.UsageError("give MODEL.onnx, or a run folder as SPEC (its best weights are compiled in memory)")
    if data is None and run is not None:
        # The run's own data, split as it was trained (found from any folder: its absolute path).
        record = run.get("data") or {}
        data = record.get("path") if record.get("path") and Path(record["path"]).exists() else record.get("source")
    result = evaluate_onnx(s, model, data=data, split=split, provider=provider, batch_size=batch_size)
    heads = result["outputs"]
    if plot and not heads:
        raise DataProblem(f"'{s.name}' has no classification output, so there is no confusion matrix to plot",
                          hint="leave out --plot")
    plots = {}  # several classifiers: FILE-OUTPUT.png for each
    for out in heads if plot else ():
        path = plot if len(heads) == 1 else str(Path(plot).with_name(f"{Path(plot).stem}-{out}{Path(plot).suffix}"))
        try:
            plot_confusion({**result, **heads[out]}, path)
        except OSError as e:
            raise DataProblem(f"cannot write {path}: {e.strerror or e}") from None
        plots[out] = path
    if plots:
        result["plot"] = plot if len(heads) == 1 else plots
    if as_json:
        report.as_json(result)
        return
    report.info(f"{result['model']}: {result['items']:,} items ({split} split), on {result['provider']} "
                f"in {result['seconds']:.2f} s")
    for out, h in heads.items():
        top5 = f", top-5 {h['top5_accuracy']:.4f}" if "top5_accuracy" in h else ""
        report.info("")
        report.info(f"{out}: accuracy {h['accuracy']:.4f}{top5}")
        report.table([{**r, **{k: f"{r[k]:.4f}" for k in ("precision", "recall", "f1")}} for r in h["per_class"]],
                     [("class", "class"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
                      ("support", "support")])
        report.info("")
        report.info(f"{out}: confusion matrix (rows: true class, columns: predicted)")
        names = h["classes"]
        report.table([{"true": n, **{f"c{j}": v for j, v in enumerate(row)}} for n, row in zip(names, h["confusion"])],
                     [("true", "true")] + [(f"c{j}", n) for j, n in enumerate(names)])
    report.info("")
    report.table([{**t, "weight": f"{t['weight']:g}", "value": "-" if t["value"] is None else f"{t['value']:.6g}"}
                  for t in result["losses"]],
                 [("loss", "loss"), ("output", "output"), ("target", "target"), ("weight", "weight"),
                  ("value", "mean")])
    report.info(f"total loss {result['loss']:.6g}")
    for path in plots.values():
        report.info(f"wrote {path}")


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
    check_output(target)
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
    with _writing(out, hint="an older file at the output path is as it was"):
        save_safetensors(arrays, target)
    extra = f"; {len(fresh)} layer{'s' if len(fresh) != 1 else ''} freshly initialised (seed {seed})" if fresh else ""
    report.info(f"wrote {out}: {len(arrays)} tensors of {s.name}, {s.parameters:,} parameters{extra}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--top-k", "-k", type=click.IntRange(1), default=1, show_default=True,
              help="How many classes to print per item, best first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list of results.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: item, rank, class, index, score.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
              help="Images decoded and run per ONNX Runtime call.")
@click.option("--providers", metavar="A,B", help="ONNX Runtime execution providers in order of preference "
              "(default: CUDA if present, then CPU).")
@click.option("--output", metavar="NAME", help="The model output holding the logits (default: the metadata's).")
@user_errors
def predict(model, paths, top_k, as_json, as_csv, batch_size, providers, output):
    """Classify images (files, folders searched recursively) or the x of .npz files with an ONNX model.

    Preprocessing and class names come from the model's metadata; only ONNX Runtime, numpy and
    Pillow run (no torch). Unreadable files are named and skipped; the exit status is then 1.
    """
    import csv

    from . import predict as p
    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    sess = p.session(model, [s.strip() for s in providers.split(",")] if providers else None)
    c = p.contract(sess, output)
    if c.image and (c.height is None or c.width is None):
        raise DataProblem(f"the model's input {list(c.shape)} has no fixed height and width to resize images to")
    problems: list[str] = []
    items = p.gather(paths, problems)
    results = p.classify(sess, c, p.read_items(items, c, problems), batch_size, top_k)
    if as_json:
        report.info(p.as_json(list(results)))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(p.CSV_HEADER)
        for r in results:
            writer.writerows(p.as_csv_rows(r))
    else:
        for r in results:
            report.info(p.as_text(r))
    for problem in problems:
        report.fail(problem)
    if problems:
        raise SystemExit(1)


@main.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when a file would be reformatted (for CI).")
@click.option("--diff", is_flag=True, help="Change nothing; print what would change as a unified diff.")
@user_errors
def fmt(files, check, diff):
    """Lay out .net files the one canonical way, in place (`-` reads stdin, writes stdout).

    Comments are kept, the meaning never changes, and lines between `# fmt: off` and
    `# fmt: on` stay as written. See docs/tools.md for the layout.
    """
    import difflib
    from .fmt import format_text, net_files, replace_text
    if files == ("-",):
        click.echo(format_text(sys.stdin.read(), "<stdin>"), nl=False)
        return
    paths = net_files(files)
    changed, failed = [], 0
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            new = format_text(text, str(path))
        except NetspecError as e:
            report.error(e)
            failed += 1
            continue
        except (OSError, UnicodeDecodeError) as e:
            report.fail(f"cannot read {path}: {e}")
            failed += 1
            continue
        if new == text:
            continue
        changed.append(path)
        if diff:
            report.info("".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                     f"{path}", f"{path} (formatted)")).rstrip("\n"))
        if check or diff:
            report.note(f"would reformat {path}")
        else:
            try:
                with _writing(path, hint="the file is as it was"):
                    replace_text(path, new)
            except NetspecError as e:
                report.error(e)
                changed.pop()  # counted as failed, not as reformatted
                failed += 1
                continue
            report.note(f"reformatted {path}")
    done = "would be reformatted" if check or diff else "reformatted"
    report.note(f"{len(changed)} file{'s' * (len(changed) != 1)} {done}, {len(paths) - len(changed) - failed} "
                "unchanged" + (f", {failed} failed" if failed else ""))
    if failed or (check and changed):
        raise SystemExit(1)


@main.command()
@SPEC
@_network_option
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The picture: .svg, .png, .html (pan, zoom, click a layer) or .dot (for graphviz).")
@click.option("--depth", type=int, default=None, metavar="N",
              help="Draw each block nested N deep as one box (--depth 1: the top-level blocks).")
@user_errors
def graph(spec, network, sets, out, depth):
    """Draw a checked network: a box per layer, edges labelled with tensor shapes, blocks as clusters."""
    from .draw import write
    start = time.perf_counter()
    _writable_folder(out)
    s = _load(spec, network, sets)
    with _writing(out, hint="an older file at the output path is as it was"):
        path = write(s, out, depth)
    report.info(f"wrote {path}: {s.name}, {len(s.rows):,} layers in {time.perf_counter() - start:.2f} s")


@main.command()
@click.option("--stdio", is_flag=True, help="Talk over stdin and stdout (the default and only transport).")
def lsp(stdio):
    """Run the language server for editors: diagnostics, hover, go to definition, completion, formatting."""
    from .lsp import main as serve
    serve()
