"""The route netspec replaces: build the torch module, then torch.onnx.export(dynamo=True).

Usage: python bench/export_dynamo.py FILE:NETWORK OUT.onnx

The module gets the same fresh weights `netspec compile` embeds (seed 0), so both ONNX files
can be checked against one PyTorch reference.
"""

from __future__ import annotations

import sys
import warnings


def main(target: str, out: str) -> None:
    import torch

    import netspec
    from netspec.weights import init_weights

    spec = netspec.load(target)
    module = spec.to_torch().eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in init_weights(spec.graph, seed=0).items()})
    ((name, t),) = spec.inputs
    example = torch.randn(2, *t.shape[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about torchvision ops it cannot find
        torch.onnx.export(module, (example,), out, dynamo=True, input_names=[name],
                          dynamic_shapes=({0: torch.export.Dim("N")},))


if __name__ == "__main__":
    main(*sys.argv[1:])
