"""`netspec evaluate RUN`: the run's best weights compiled in memory, several inputs and heads read
by name as `train` reads them, loss values for every term (all a regression network gets), and no
torch anywhere on the way."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from netspec.cli import main

TINY = """
network Tiny(classes = 10, hidden = 16) {
    input image: float32[N, 64]
    output logits = image -> Linear(hidden) -> ReLU -> Linear(classes)
}
loss CrossEntropy(logits, label)
train {
    optimizer = Adam(lr=0.01)
    epochs = 2
    batch_size = 128
}
"""

# The digits resized by a scale that is not a whole number (8 -> 12).
SMALL_CNN = """
network SmallCnn(classes = 10) {
    input image: float32[N, 1, 12, 12]
    output logits = image -> Conv2d(4, 3) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(classes)
}
loss CrossEntropy(logits, label)
train {
    optimizer = Adam(lr=0.01)
    epochs = 1
    batch_size = 128
}
"""

# Two inputs; a classifier head and a regression head; a second classifier reading the same features.
HEADS = """
network Heads(width = 16) {
    input  x: float32[N, 16], mask: float32[N, 16]
    target label: int64[N]
    target parity: int64[N]
    target quality: float32[N, 1]
    h = (x * mask) -> Linear(width) -> ReLU
    output logits = h -> Linear(3)
    output odd = h -> Linear(2)
    output score = h -> Linear(1) -> Sigmoid
    loss CrossEntropy(logits, label)
    loss CrossEntropy(odd, parity, weight=0.5)
    loss MSE(score, quality)
}
train {
    optimizer = Adam(lr=0.02)
    epochs = 3
    batch_size = 32
}
"""

REGRESSION = """
network Reg {
    input  x: float32[N, 8], z: float32[N, 4]
    target y: float32[N, 2]
    target flags: float32[N, 3]
    hx = x -> Linear(16) -> ReLU
    h = Concat(hx, z)
    output y_hat = h -> Linear(2)
    output flag_logits = h -> Linear(3)
    loss L1(y_hat, y)
    loss BCEWithLogits(flag_logits, flags, pos_weight=[1.0, 2.0, 0.5])
}
train {
    optimizer = Adam(lr=0.01)
    epochs = 3
    batch_size = 50
}
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _no_torch(*argv):
    """Run `netspec` in a fresh interpreter where importing torch fails."""
    code = ("import sys; sys.modules['torch'] = None; from netspec.cli import main; "
            f"sys.argv = ['netspec'] + {[str(a) for a in argv]!r}; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _best(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())["best"]


def _train(tmp, name, text, *args) -> Path:
    (tmp / f"{name}.net").write_text(text)
    out = tmp / "runs" / name
    r = run("train", tmp / f"{name}.net", "--out", out, "--no-progress", *args)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 16)).astype(np.float32)
    mask = (rng.random((n, 16)) > 0.2).astype(np.float32)
    label = np.argmax((x * mask)[:, :3], axis=1)
    parity = (x[:, 5] > 0).astype(np.int64)
    quality = (1 / (1 + np.exp(-(x * mask)[:, 3:4]))).astype(np.float32)
    np.savez(tmp / "heads.npz", x=x, mask=mask, label=label, parity=parity, quality=quality)
    rx, rz = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 4)).astype(np.float32)
    y = np.stack([rx[:, 0] + rz[:, 1], rx[:, 2] - rz[:, 0]], axis=1).astype(np.float32)
    flags = (np.stack([rx[:, 0], rz[:, 2], rx[:, 3]], axis=1) > 0).astype(np.float32)
    np.savez(tmp / "reg.npz", x=rx, z=rz, y=y, flags=flags)
    return {"tmp": tmp,
            "tiny": _train(tmp, "tiny", TINY),  # the built-in digits
            "lenet": _train(tmp, "lenet", SMALL_CNN),  # the built-in digits, resized
            "heads": _train(tmp, "heads", HEADS, "--data", tmp / "heads.npz"),
            "reg": _train(tmp, "reg", REGRESSION, "--data", tmp / "reg.npz")}


def test_resized_digits_evaluate_to_the_runs_own_accuracy(runs):
    folder = runs["lenet"]
    out = json.loads(run("evaluate", folder, "--json").output)
    assert out["items"] == 359 and out["accuracy"] == _best(folder)["val_accuracy"]


def test_a_run_alone_reproduces_its_best_val_accuracy(runs):
    folder = runs["tiny"]
    r = run("evaluate", folder, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["split"] == "val" and out["items"] == 359  # the digits' 20 % held out
    assert out["accuracy"] == pytest.approx(_best(folder)["val_accuracy"], abs=1e-4)
    assert out["loss"] == pytest.approx(_best(folder)["val_loss"], rel=1e-4)
    assert out["model"].startswith(str(folder)) and "compiled in memory" in out["model"]
    assert list(out["outputs"]) == ["logits"] and out["classes"] == [str(i) for i in range(10)]
    # The same run compiled to a file gives the same figures.
    model = runs["tmp"] / "tiny.onnx"
    assert run("compile", folder, "-o", model).exit_code == 0
    again = json.loads(run("evaluate", folder, model, "--json").output)
    assert again["accuracy"] == out["accuracy"] and again["confusion"] == out["confusion"]
    text = run("evaluate", folder)
    assert text.exit_code == 0 and "logits: accuracy" in text.output and "CrossEntropy" in text.output


def test_a_model_of_other_classes_is_refused_against_the_run(runs):
    folder = runs["tiny"]
    model = runs["tmp"] / "letters.onnx"
    letters = ",".join("abcdefghij")
    assert run("compile", folder, "--classes", letters, "-o", model).exit_code == 0
    r = run("evaluate", folder, model)
    assert r.exit_code == 1, r.output
    assert "a, b, c, d, e, f, g, h, i, j" in r.output and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in r.output
    assert "Traceback" not in r.output


def test_two_inputs_and_three_heads_are_reported_by_output(runs, tmp_path):
    folder = runs["heads"]
    r = run("evaluate", folder, "--json", "--plot", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    best = _best(folder)
    assert list(out["outputs"]) == ["logits", "odd"]
    # train's val_accuracy is the first classifier's
    assert out["outputs"]["logits"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)
    assert out["accuracy"] == out["outputs"]["logits"]["accuracy"]
    assert out["loss"] == pytest.approx(best["val_loss"], rel=1e-4)
    assert [(t["loss"], t["output"], t["weight"]) for t in out["losses"]] == [
        ("CrossEntropy", "logits", 1.0), ("CrossEntropy", "odd", 0.5), ("MSE", "score", 1.0)]
    for name, width in (("logits", 3), ("odd", 2)):
        head = out["outputs"][name]
        assert np.asarray(head["confusion"]).shape == (width, width)
        assert np.asarray(head["confusion"]).sum() == out["items"] == 60
        assert [c["class"] for c in head["per_class"]] == [str(i) for i in range(width)]
    assert out["plot"] == {"logits": str(tmp_path / "c-logits.png"), "odd": str(tmp_path / "c-odd.png")}
    assert (tmp_path / "c-logits.png").stat().st_size > 0 and (tmp_path / "c-odd.png").stat().st_size > 0

    # Accuracy recomputed by hand from the model's own outputs on the held-out items.
    from netspec.data import split_indices
    from netspec.predict import session
    model = tmp_path / "heads.onnx"
    assert run("compile", folder, "-o", model).exit_code == 0
    d = np.load(runs["tmp"] / "heads.npz")
    _, va = split_indices(300, 0.2, 0)
    odd = session(model).run(["odd"], {"x": d["x"][va], "mask": d["mask"][va]})[0]
    assert out["outputs"]["odd"]["accuracy"] == pytest.approx(float((odd.argmax(1) == d["parity"][va]).mean()))


def test_a_regression_network_gets_its_loss_terms(runs, tmp_path):
    folder = runs["reg"]
    r = run("evaluate", folder, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["outputs"] == {} and "accuracy" not in out
    assert [t["loss"] for t in out["losses"]] == ["L1", "BCEWithLogits"]
    assert out["loss"] == pytest.approx(_best(folder)["val_loss"], rel=1e-4)
    text = run("evaluate", folder)
    assert text.exit_code == 0 and "BCEWithLogits" in text.output and "total loss" in text.output
    r = run("evaluate", folder, "--plot", tmp_path / "c.png")
    assert r.exit_code == 1 and "no classification output" in r.output


def test_evaluate_runs_without_torch(runs):
    for name in ("tiny", "lenet", "heads", "reg"):  # the digits flat and resized, a .npz with two heads, a regression
        folder = runs[name]
        r = _no_torch("evaluate", folder, "--json")
        assert r.returncode == 0, r.stderr
        out, ref = json.loads(r.stdout), json.loads(run("evaluate", folder, "--json").output)
        assert out["loss"] == pytest.approx(ref["loss"], rel=1e-12)
        assert out["outputs"].keys() == ref["outputs"].keys()
        for head in out["outputs"]:
            assert out["outputs"][head]["confusion"] == ref["outputs"][head]["confusion"]


def test_usage_mistakes(runs, tmp_path):
    (tmp_path / "tiny.net").write_text(TINY)
    r = run("evaluate", tmp_path / "tiny.net")
    assert r.exit_code == 2 and "give MODEL.onnx, or a run folder" in r.output
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(runs["tiny"], bare)
    (bare / "weights.safetensors").unlink()
    r = run("evaluate", bare)
    assert r.exit_code == 1 and "has no weights.safetensors" in r.output
    # A diverged run: weights with NaN would score garbage, so they are refused.
    from safetensors.numpy import load_file, save_file
    weights = load_file(str(runs["tiny"] / "weights.safetensors"))
    first = sorted(weights)[0]
    weights[first] = np.full_like(weights[first], np.nan)
    save_file(weights, str(bare / "weights.safetensors"))
    r = run("evaluate", bare)
    assert r.exit_code == 1 and "inf or NaN in 1 tensor(s)" in r.output and "lower --lr" in r.output
    # A dataset without the arrays the network names: each missing one named, as train names them.
    np.savez(tmp_path / "partial.npz", x=np.zeros((4, 16), np.float32), label=np.zeros(4, np.int64))
    r = run("evaluate", runs["heads"], "--data", tmp_path / "partial.npz")
    assert r.exit_code == 1 and "lacks the array(s) mask, parity, quality" in r.output
    # Labels past a head's classes are refused, naming the array and the item.
    d = dict(np.load(runs["tmp"] / "heads.npz"))
    d["parity"] = d["parity"] + 1
    np.savez(tmp_path / "bad.npz", **d)
    r = run("evaluate", runs["heads"], "--data", tmp_path / "bad.npz")
    assert r.exit_code == 1 and "(parity)" in r.output and "out of range" in r.output


@pytest.mark.parametrize("op, params", [
    ("CrossEntropy", {"label_smoothing": 0.1, "ignore_index": 2}),
    ("CrossEntropy", {}),
    ("NLL", {"ignore_index": 0}),
    ("MSE", {}),
    ("L1", {}),
    ("BCEWithLogits", {"pos_weight": [0.5, 3.0, 1.0, 2.0]}),
    ("BCEWithLogits", {}),
])
def test_numpy_losses_equal_torchs(op, params):
    import torch
    import torch.nn.functional as F
    from netspec.evaluate import loss_sums
    from netspec.ops import get_op
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(32, 4)).astype(np.float32) * 3
    p = get_op(op).Params(**params)
    if op in ("CrossEntropy", "NLL"):
        target = rng.integers(0, 4, size=32)
        if op == "NLL":
            pred = torch.log_softmax(torch.tensor(pred), 1).numpy()
        ignore = -100 if p.ignore_index is None else p.ignore_index
        fn = F.cross_entropy if op == "CrossEntropy" else F.nll_loss
        extra = {"label_smoothing": p.label_smoothing} if op == "CrossEntropy" else {}
        want = fn(torch.tensor(pred), torch.tensor(target), ignore_index=ignore, **extra)
    else:
        target = (rng.random((32, 4)) > 0.5).astype(np.float32) if op == "BCEWithLogits" else rng.normal(size=(32, 4))
        t = torch.tensor(target, dtype=torch.float32)
        if op == "BCEWithLogits":
            pw = None if p.pos_weight is None else torch.tensor(p.pos_weight)
            want = F.binary_cross_entropy_with_logits(torch.tensor(pred), t, pos_weight=pw)
        else:
            want = (F.mse_loss if op == "MSE" else F.l1_loss)(torch.tensor(pred), t)
    # Summed over two halves, as evaluate sums batches.
    a, b = loss_sums(op, p, pred[:13], target[:13]), loss_sums(op, p, pred[13:], target[13:])
    assert (a[0] + b[0]) / (a[1] + b[1]) == pytest.approx(float(want), rel=1e-5)
