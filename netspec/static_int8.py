"""Static int8: quantize a float32 model with activation ranges calibrated on real data.

ONNX Runtime's `quantize_static` writes QDQ pairs (QuantizeLinear/DequantizeLinear) around each
Conv, MatMul and Gemm, with per-channel int8 weights and uint8 activations whose scales come from
running the model on calibration items (min/max, or the 99.999th percentile, which ignores rare
extreme values). ONNX Runtime then fuses each pattern into an
integer kernel (QLinearConv, MatMulInteger), which is what makes int8 fast on CPUs with int8
dot-product instructions (AVX-512 VNNI, AVX-VNNI, ARM dot-product). Dynamic quantization, the
`--int8` default, has to measure activations at run time and runs ResNet-50 slower than float32.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .errors import DataProblem

CALIBRATION_ITEMS = 256  # more changes the ranges little and costs a forward pass each
CALIBRATION_BATCH = 16
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# `--calibration-method`: how an activation's range is taken from what the calibration items
# produced; the values are ONNX Runtime's CalibrationMethod members. Not its Entropy method:
# `quantize_static` builds it with 128 histogram bins for 128 quantized ones, which leaves it one
# candidate range, the min/max.
METHODS = {"minmax": "MinMax", "percentile": "Percentile"}


@dataclass(frozen=True)
class Calibration:
    """What static quantization needs beyond the model."""

    inputs: np.ndarray  # calibration items, as the model takes them
    method: str = "minmax"  # a key of METHODS
    keep_ends: bool = False  # leave the first and last Conv/MatMul/Gemm in float32


def calibration_inputs(spec, data, record: dict | None = None, items: int = CALIBRATION_ITEMS,
                       seed: int = 0) -> np.ndarray:
    """Up to `items` inputs of the training split of `data`, read as `netspec train` reads them.

    `data` is a dataset path, or `digits` for the built-in one; `record` is the run folder's
    (netspec.metadata.run_record), whose input normalization, if any, is applied as in training.
    Reading a dataset imports torch (netspec.data builds torch datasets); only --calibrate does.
    """
    from .data import load_dataset
    if len(spec.inputs) != 1:
        raise DataProblem(f"--calibrate feeds one input, but '{spec.name}' has {len(spec.inputs)}")
    if data == "digits" and not Path(data).exists():
        data = None  # the built-in dataset, as `train` uses it without --data
    contract = (record or {}).get("input") or {}
    normalize = (contract["mean"], contract["std"]) if contract.get("mean") is not None else None
    target = spec.targets[0][1] if spec.targets else None
    cfg = spec.train_config
    train, _, _ = load_dataset(data, spec.inputs[0][1], target, cfg.val_split, cfg.seed, normalize=normalize)
    if len(train) == 0:
        raise DataProblem(f"the calibration dataset '{data}' is empty")
    pick = np.sort(np.random.default_rng(seed).permutation(len(train))[:items])
    return np.stack([np.asarray(train[int(i)][0]) for i in pick]).astype(np.float32)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an array of inputs."""

    def __init__(self, name: str, x: np.ndarray):
        # Batches of one size: ONNX Runtime's histogram calibrators stack the batches' outputs
        # into one array and fail on a shorter last batch.
        size = max(d for d in range(1, CALIBRATION_BATCH + 1) if len(x) % d == 0)
        self._batches = iter([{name: x[i:i + size]} for i in range(0, len(x), size)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # part of the protocol; every method reads the items in one pass
        pass


def _ends(model: onnx.ModelProto) -> list[str]:
    """The names of the first and the last quantizable node, in graph order."""
    nodes = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    return sorted({nodes[0], nodes[-1]}) if nodes else []


def quantize_static_int8(source: Path, path: Path, calibration: Calibration, big: bool = False) -> None:
    """Write a QDQ int8 model of the float32 file `source` to `path`, calibrated as `calibration` says.

    The model is first pre-processed as ONNX Runtime advises (its basic graph optimizations fold
    BatchNorm into Conv, so the folded weights are what gets quantized).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(source), load_external_data=False)
    if not any(n.op_type in QUANTIZED_OPS for n in model.graph.node):
        raise DataProblem("the network has no Conv, Linear or MatMul layer, so an int8 variant would "
                          "be the float32 model", hint="leave out --int8")
    inputs = [i.name for i in model.graph.input]
    if len(inputs) != 1:
        raise DataProblem(f"--calibrate feeds one input, but the model has {len(inputs)}: {', '.join(inputs)}")
    del model
    pre = path.with_name(path.name + ".pre.onnx")
    # The quantizer logs advice to the root logger ("consider pre-processing"); it is not the user's.
    logging.disable(logging.WARNING)
    try:
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True, save_as_external_data=big,
                          all_tensors_to_one_file=True, external_data_location=pre.name + ".data")
        exclude = _ends(onnx.load(str(pre), load_external_data=False)) if calibration.keep_ends else []
        # The histogram methods print their progress to stdout, into compile's own report.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(pre), str(path), _Reader(inputs[0], calibration.inputs),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, METHODS[calibration.method]),
                            nodes_to_exclude=exclude,
                            use_external_data_format=big)
    finally:
        logging.disable(logging.NOTSET)
        for p in (pre, pre.with_name(pre.name + ".data")):
            p.unlink(missing_ok=True)
