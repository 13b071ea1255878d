"""Train a netspec network with your own PyTorch loop, then run it in ONNX Runtime.

    python examples/train_from_python.py --epochs 5
    python examples/train_from_python.py --spec examples/cats_vs_dogs.net --set classes=10 --set size=32
    python examples/train_from_python.py --spec examples/cats_vs_dogs.net --data photos/ --epochs 3

`netspec train` does all of this for you; this script shows the pieces, for when you want
your own loop: the spec gives a plain torch module and takes the trained module back to
write ONNX. A mistake in the input (a spec error, a dataset that does not fit the network)
is printed as netspec prints it, with exit status 1, as the `netspec` command does.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

import netspec
from netspec.data import load_dataset
from netspec.errors import NetspecError

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(HERE.parent / "models" / "lenet5.net"),
                   help="the .net file (FILE or FILE:NETWORK) to train; default LeNet-5")
    p.add_argument("--set", "-D", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="override a network parameter, as `netspec --set` does (repeatable)")
    p.add_argument("--data", help="a dataset as `netspec train --data` reads it (default: the built-in digits)")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training set (>= 1)")
    p.add_argument("--onnx", help="also save the ONNX model here")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    for item in args.sets:
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            p.error(f"--set {item!r} is not NAME=VALUE")
    return args


def run(args) -> None:
    torch.manual_seed(0)
    params = dict(item.split("=", 1) for item in args.sets)

    # Parse and shape-check the spec; its declared input and target tell the loader what to make.
    spec = netspec.load(args.spec, params=params)
    if len(spec.inputs) != 1 or len(spec.targets) != 1 or spec.classifier_output is None:
        raise NetspecError(f"{spec.name}: this example trains a classifier with one input and one "
                           f"target; use `netspec train` for other networks")
    (input_name, input_type), (_, target_type) = spec.inputs[0], spec.targets[0]
    classes = dict(spec.outputs)[spec.classifier_output].shape[1]
    print(f"{spec.name}: {spec.parameters:,} parameters, input {input_name}: {input_type.full()}")

    # The data (by default the built-in digits, resized to the declared input); 20% held out with a
    # seeded split. n_classes makes the loader refuse a network with too few outputs for its classes.
    train_set, val_set, info = load_dataset(args.data, input_type, target_type, val_split=0.2, seed=0,
                                            n_classes=classes)
    if val_set is None:
        raise NetspecError(f"{info['source']}: too few items to hold any out for validation")
    loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)

    model = spec.to_torch()  # a torch.fx.GraphModule: an ordinary nn.Module
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        print(f"epoch {epoch + 1}/{args.epochs}  train_loss {total / len(train_set):.4f}")

    # Validation set as plain arrays, for both runtimes.
    batches = list(torch.utils.data.DataLoader(val_set, batch_size=256))
    x_val = torch.cat([x for x, _ in batches]).numpy()
    y_val = torch.cat([y for _, y in batches]).numpy()
    model.eval()
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x_val)).argmax(dim=1).numpy()

    # ONNX straight from the checked graph, with the trained module's weights.
    onnx_model = spec.to_onnx(model)
    if args.onnx:
        try:
            Path(args.onnx).write_bytes(onnx_model.SerializeToString())
        except OSError as e:
            raise NetspecError(f"cannot write --onnx '{args.onnx}': {e.strerror}") from None
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {input_name: x_val})[0]
    onnx_pred = logits.argmax(axis=1)

    print(f"PyTorch accuracy {np.mean(torch_pred == y_val):.4f} on {len(y_val)} held-out items")
    print(f"ONNX Runtime accuracy {np.mean(onnx_pred == y_val):.4f} on {len(y_val)} held-out items")
    print(f"predictions agree on {np.mean(onnx_pred == torch_pred):.1%} of them")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except NetspecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
