"""Train a netspec network with your own PyTorch loop, then run it in ONNX Runtime.

    python examples/train_from_python.py --epochs 5

`netspec train` does all of this for you; this script shows the pieces, for when you want
your own loop: the spec gives a plain torch module and takes the trained module back to
write ONNX.
"""

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

import netspec
from netspec.data import load_dataset

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(HERE.parent / "models" / "lenet5.net"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--onnx", help="also save the ONNX model here")
    args = p.parse_args()
    torch.manual_seed(0)

    # Parse and shape-check the spec; its declared input and target tell the loader what to make.
    spec = netspec.load(args.spec)
    (input_name, input_type), (_, target_type) = spec.inputs[0], spec.targets[0]
    print(f"{spec.name}: {spec.parameters:,} parameters, input {input_name}: {input_type.full()}")

    # The built-in digits, resized to the declared 32x32; 20% held out with a seeded split.
    train_set, val_set, info = load_dataset(None, input_type, target_type, val_split=0.2, seed=0)
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
    x_val, y_val = (t.numpy() for t in val_set.tensors)
    model.eval()
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x_val)).argmax(dim=1).numpy()

    # ONNX straight from the checked graph, with the trained module's weights.
    onnx_model = spec.to_onnx(model)
    if args.onnx:
        Path(args.onnx).write_bytes(onnx_model.SerializeToString())
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {input_name: x_val})[0]
    onnx_pred = logits.argmax(axis=1)

    print(f"PyTorch accuracy {np.mean(torch_pred == y_val):.4f} on {len(y_val)} held-out digits")
    print(f"ONNX Runtime accuracy {np.mean(onnx_pred == y_val):.4f} on {len(y_val)} held-out digits")
    print(f"predictions agree on {np.mean(onnx_pred == torch_pred):.1%} of them")


if __name__ == "__main__":
    main()
