"""Deploying a classifier (issue 7): self-describing ONNX, `netspec predict`, `netspec evaluate`'s checks.

One tiny cats-vs-dogs model is trained for an epoch on generated photos, compiled from its run
folder, then predicted with class names and no torch, as a deployment would.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

import netspec
from netspec.cli import main
from netspec.data import IMAGE_SUFFIXES
from netspec.metadata import run_record
from netspec.predict import IMAGE_SUFFIXES as PREDICT_SUFFIXES

ROOT = Path(__file__).resolve().parent.parent
CATS = ROOT / "examples" / "cats_vs_dogs.net"
SMALL = ["-D", "size=16", "-D", "width=4"]
CLASSES = ["cat", "dog"]
COLOURS = {"cat": (200, 120, 40), "dog": (40, 90, 200)}


def _photo(path: Path, colour, rng, size=(20, 24)):
    a = rng.integers(0, 60, (*size, 3)) + np.array(colour)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def cats(tmp_path_factory):
    """photos/{cat,dog}/, a run folder trained for one epoch, with the run.json that train records."""
    root = tmp_path_factory.mktemp("deploy")
    rng = np.random.default_rng(0)
    for cls, colour in COLOURS.items():
        (root / "photos" / cls).mkdir(parents=True)
        for i in range(12):
            _photo(root / "photos" / cls / f"{i:02d}.png", colour, rng)
    runs = root / "runs" / "cats"
    r = run("train", CATS, *SMALL, "--data", root / "photos", "--out", runs, "--epochs", "1",
            "--batch-size", "8", "--no-progress")
    assert r.exit_code == 0, r.output
    if not (runs / "run.json").exists():  # the schema `netspec train` writes
        (runs / "run.json").write_text(json.dumps({
            "classes": CLASSES,
            "input": {"name": "image", "dtype": "float32", "shape": ["N", 3, 16, 16], "layout": "NCHW",
                      "channels": 3, "height": 16, "width": 16, "value_range": [0, 1], "mean": None, "std": None}}))
    model = root / "cats.onnx"
    r = run("compile", CATS, *SMALL, "--weights", runs, "-o", model)
    assert r.exit_code == 0, r.output
    return {"root": root, "photos": root / "photos", "run": runs, "onnx": model}


def props(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# ---------------------------------------------------------------- the metadata contract

def test_model_describes_itself(cats):
    p = props(cats["onnx"])
    assert p["netspec.network"] == "CatsVsDogs"
    assert p["netspec.spec_sha256"] == hashlib.sha256(CATS.read_bytes()).hexdigest()
    assert p["netspec.spec_file"] == "cats_vs_dogs.net"
    assert json.loads(p["netspec.set"]) == {"size": "16", "width": "4"}
    assert p["netspec.version"] == netspec.__version__
    assert json.loads(p["netspec.classes"]) == CLASSES
    assert json.loads(p["netspec.output"]) == {"name": "logits", "scores": "logits"}
    contract = json.loads(p["netspec.input"])
    assert contract["layout"] == "NCHW" and (contract["channels"], contract["height"], contract["width"]) == (3, 16, 16)
    assert contract["value_range"] == [0, 1] and contract["mean"] is None
    # The network normalises internally: the caller gives [0, 1] pixels; a third party sees the statistics.
    assert contract["normalized_in_model"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    # No folder of the build machine anywhere in the file.
    assert str(cats["root"]).encode() not in cats["onnx"].read_bytes()
    assert str(ROOT).encode() not in cats["onnx"].read_bytes()


def test_run_record_is_read_and_checked(tmp_path):
    assert run_record(tmp_path) is None
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(netspec.NetspecError, match="is not valid JSON"):
        run_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"classes": ["cat", "dog"]}))
    with pytest.raises(netspec.NetspecError, match="has format None"):
        run_record(tmp_path)
    record = {"format": "netspec-run-1", "network": "Net", "spec": {"text": "", "path": None, "sha256": None},
              "sets": {}, "train": {}, "classes": [1, 2]}
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(netspec.NetspecError, match="'classes' must be a list of names"):
        run_record(tmp_path)


def test_compile_refuses_class_names_of_another_count(cats, tmp_path):
    r = run("compile", CATS, *SMALL, "--classes", "cat,dog,bird", "-o", tmp_path / "m.onnx")
    assert r.exit_code == 1 and "3 class names (cat, dog, bird) for the output 'logits' of 2 classes" in r.output
    assert not (tmp_path / "m.onnx").exists()


def test_library_and_cli_write_the_same_metadata(cats):
    s = netspec.load(CATS, params={"size": 16, "width": 4})
    model = s.to_onnx(metadata=s.metadata(run=run_record(cats["run"])))
    library = {p.key: p.value for p in model.metadata_props}
    assert library == props(cats["onnx"])


ZOO = ["models/lenet5.net", "models/resnet.net:ResNet18", "models/mobilenet.net", "models/googlenet.net:GoogLeNet",
       "models/transformer.net:ViT_Tiny", "models/mlp.net", str(CATS)]


@pytest.mark.parametrize("target", ZOO)
def test_every_layer_result_has_netspecs_shape_and_strict_inference_agrees(target):
    s = netspec.load(ROOT / target if not target.startswith("/") else target)
    model = s.to_onnx()
    onnx.shape_inference.infer_shapes(model, strict_mode=True, check_type=True, data_prop=True)
    typed = {vi.name for vi in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    layer_names = {r["name"] for r in s.rows}
    produced_by_layer = {o for n in model.graph.node if n.name in layer_names for o in n.output}
    assert produced_by_layer <= typed
    assert all(n.doc_string for n in model.graph.node)


def test_strict_inference_catches_a_wrong_shape():
    """The check above has teeth: a value_info that disagrees with ONNX's own inference fails."""
    model = netspec.load(ROOT / "models/lenet5.net").to_onnx()
    vi = model.graph.value_info[0]
    vi.type.tensor_type.shape.dim[1].dim_value += 1
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.shape_inference.infer_shapes(model, strict_mode=True, check_type=True)


def test_doc_strings_name_the_spec_line():
    model = netspec.load(ROOT / "models/resnet.net:ResNet18").to_onnx()
    lines = (ROOT / "models/resnet.net").read_text().splitlines()
    stem = next(n for n in model.graph.node if n.name == "x.0")
    file, line = stem.doc_string.split()[0].split(":")
    assert file == "resnet.net" and "Conv2d(64" in lines[int(line) - 1]
    inner = next(n for n in model.graph.node if n.name.startswith("x.4.0.") and n.op_type == "Conv")
    # A layer inside a block names the block's line and the call that made it.
    assert inner.doc_string.startswith("resnet.net:") and " in " in inner.doc_string and " at resnet.net:" in inner.doc_string


# ---------------------------------------------------------------- predict

def _no_torch(*argv, cwd=None):
    """Run `netspec` in a fresh interpreter where importing torch fails."""
    code = ("import sys; sys.modules['torch'] = None; from netspec.cli import main; "
            f"sys.argv = ['netspec'] + {[str(a) for a in argv]!r}; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_predict_a_folder_with_class_names_without_torch(cats):
    r = _no_torch("predict", cats["onnx"], cats["photos"], "--top-k", "2", "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert len(results) == 24
    assert results[0]["item"] == str(cats["photos"] / "cat" / "00.png")  # recursive, sorted
    for res in results:
        assert [t["class"] for t in res["top"]] in (CLASSES, CLASSES[::-1])
        assert res["top"][0]["score"] >= res["top"][1]["score"]
        assert sum(t["score"] for t in res["top"]) == pytest.approx(1.0)


def test_predict_matches_evaluate_and_reads_npz(cats, tmp_path):
    from netspec.predict import contract, load_image, session
    sess = session(cats["onnx"])
    c = contract(sess)
    images = sorted((cats["photos"] / "dog").glob("*.png"))[:3]
    x = np.stack([load_image(p, 3, 16, 16) for p in images])
    np.savez(tmp_path / "x.npz", x=x)
    r = run("predict", cats["onnx"], *images, tmp_path / "x.npz", "--csv")
    assert r.exit_code == 0, r.output
    rows = [line.split(",") for line in r.output.splitlines()]
    assert rows[0] == ["item", "rank", "class", "index", "score"]
    by_image, by_npz = rows[1:4], rows[4:7]
    assert [row[0] for row in by_npz] == [f"{tmp_path / 'x.npz'}[{i}]" for i in range(3)]
    # The same pixels through Pillow or through the array give the same scores.
    assert [row[2:] for row in by_image] == [row[2:] for row in by_npz]
    logits = sess.run([c.output], {c.input: x})[0]
    assert [int(row[3]) for row in by_image] == logits.argmax(axis=1).tolist()


def test_predict_names_unreadable_files_and_goes_on(cats, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    good = next((cats["photos"] / "cat").iterdir())
    (tmp_path / "empty").mkdir()
    r = run("predict", cats["onnx"], tmp_path / "broken.png", good, tmp_path / "missing.jpg", tmp_path / "empty")
    assert r.exit_code == 1
    assert r.output.splitlines()[0].startswith(f"{good}\t")
    assert f"cannot read image '{tmp_path / 'broken.png'}'" in r.output
    assert f"cannot read '{tmp_path / 'missing.jpg'}': no such file or folder" in r.output
    assert f"'{tmp_path / 'empty'}' holds no images" in r.output
    assert "Traceback" not in r.output


def test_predict_bad_provider_lists_the_available_ones(cats):
    r = run("predict", cats["onnx"], cats["photos"], "--providers", "NoSuchExecutionProvider")
    assert r.exit_code == 1
    assert "no provider 'NoSuchExecutionProvider'" in r.output and "CPUExecutionProvider" in r.output


def test_predict_usage_mistakes(cats):
    assert run("predict", cats["onnx"], cats["photos"], "--json", "--csv").exit_code == 2
    r = run("predict", cats["root"] / "nope.onnx", cats["photos"])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_predict_reads_the_image_suffixes_training_reads():
    assert PREDICT_SUFFIXES == IMAGE_SUFFIXES


# ---------------------------------------------------------------- evaluate checks, then reports

def test_evaluate_refuses_a_model_of_another_network(cats):
    r = run("evaluate", ROOT / "models/lenet5.net", cats["onnx"])
    assert r.exit_code == 1, r.output
    assert "made from network CatsVsDogs" in r.output and "image: float32[N,3,16,16]" in r.output
    assert "LeNet5" in r.output and "float32[N,1,32,32]" in r.output


def test_evaluate_refuses_another_class_count(cats):
    r = run("evaluate", CATS, *SMALL, "-D", "classes=3", cats["onnx"], "--data", cats["photos"])
    assert r.exit_code == 1 and "logits: float32[N,2]" in r.output and "float32[N,3]" in r.output
    # The digits have 10 classes; the model scores 2.
    r = run("evaluate", CATS, *SMALL, cats["onnx"])
    assert r.exit_code == 1 and "has 10 classes, but the model" in r.output and "scores 2" in r.output


def test_evaluate_refuses_other_class_names(cats, tmp_path):
    rng = np.random.default_rng(3)
    for cls in ("cow", "pig"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            _photo(tmp_path / cls / f"{i}.png", (90, 90, 90), rng)
    r = run("evaluate", CATS, *SMALL, cats["onnx"], "--data", tmp_path)
    assert r.exit_code == 1
    assert "classes cow, pig" in r.output and "trained on cat, dog" in r.output


def test_evaluate_reports_per_class_scores_and_confusion(cats, tmp_path):
    r = run("evaluate", CATS, *SMALL, cats["onnx"], "--data", cats["photos"], "--json", "--plot", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    confusion = np.array(out["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == out["items"]
    assert out["accuracy"] == pytest.approx(np.trace(confusion) / out["items"])
    assert [c["class"] for c in out["per_class"]] == CLASSES
    for i, c in enumerate(out["per_class"]):
        assert c["support"] == confusion[i].sum()
        if confusion[:, i].sum():
            assert c["precision"] == pytest.approx(confusion[i, i] / confusion[:, i].sum())
    assert "top5_accuracy" not in out  # two classes
    assert Image.open(tmp_path / "c.png").size[0] > 100

    text = run("evaluate", CATS, *SMALL, cats["onnx"], "--data", cats["photos"])
    assert text.exit_code == 0
    assert "precision" in text.output and "confusion matrix" in text.output and "cat" in text.output


def test_evaluate_a_run_of_photos_without_torch_gives_its_best_val_accuracy(cats):
    r = _no_torch("evaluate", cats["run"], "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    best = json.loads((cats["run"] / "run.json").read_text())["best"]
    assert out["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)
    assert out["classes"] == CLASSES and out["items"] == 4  # 20 % of 24 photos
    # The file compiled from the run says the same about the same items.
    with_model = json.loads(run("evaluate", cats["run"], cats["onnx"], "--json").output)
    assert with_model["confusion"] == out["confusion"]


def test_evaluate_top5_on_ten_classes(tmp_path):
    model = tmp_path / "lenet.onnx"
    assert run("compile", ROOT / "models/lenet5.net", "-o", model).exit_code == 0
    out = json.loads(run("evaluate", ROOT / "models/lenet5.net", model, "--json").output)
    assert out["items"] == 359 and len(out["per_class"]) == 10
    assert out["accuracy"] <= out["top5_accuracy"] <= 1.0


# ---------------------------------------------------------------- static int8

def _argmax(path, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"image": x})[0].argmax(axis=1)


def test_static_int8_calibrated_on_the_photos(cats, tmp_path):
    out = tmp_path / "m.onnx"
    r = run("compile", CATS, *SMALL, "--weights", cats["run"], "-o", out, "--int8", "--calibrate", cats["photos"])
    assert r.exit_code == 0, r.output
    int8 = tmp_path / "m.int8.onnx"
    assert f"wrote {int8}: int8 weights and activations, statically quantized (QDQ)" in r.output
    model = onnx.load(str(int8))
    onnx.checker.check_model(model, full_check=True)
    p = {q.key: q.value for q in model.metadata_props}
    assert p["netspec.variant"] == "int8-static" and json.loads(p["netspec.classes"]) == CLASSES
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # Per-channel weights: a conv weight's scale holds one value per output channel.
    inits = {t.name: t for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight_dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    assert weight_dq.op_type == "DequantizeLinear" and list(inits[weight_dq.input[1]].dims) == [4]
    # It classifies as the float32 model does on the photos it was calibrated on.
    from netspec.predict import load_image
    x = np.stack([load_image(f, 3, 16, 16) for f in sorted(cats["photos"].rglob("*.png"))])
    assert (_argmax(out, x) == _argmax(int8, x)).mean() >= 0.9
    # predict reads the int8 file's metadata too.
    r = run("predict", int8, cats["photos"] / "cat", "--json")
    assert r.exit_code == 0 and json.loads(r.output)[0]["top"][0]["class"] in CLASSES


def test_static_int8_can_keep_the_first_and_last_layers_float(cats, tmp_path):
    out = tmp_path / "m.onnx"
    r = run("compile", CATS, *SMALL, "--weights", cats["run"], "-o", out, "--int8", "--calibrate",
            cats["photos"], "--keep-ends-float")
    assert r.exit_code == 0, r.output
    model = onnx.load(str(tmp_path / "m.int8.onnx"))
    inits = {t.name for t in model.graph.initializer}
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    float_weight = [n.input[1] in inits for n in layers]
    assert float_weight[0] and float_weight[-1] and not any(float_weight[1:-1])


def test_calibrate_needs_int8_and_a_dataset_of_the_models_input(cats, tmp_path):
    r = run("compile", CATS, *SMALL, "-o", tmp_path / "m.onnx", "--calibrate", cats["photos"])
    assert r.exit_code == 2 and "give --int8 with it" in r.output
    r = run("compile", CATS, *SMALL, "-o", tmp_path / "m.onnx", "--int8", "--calibrate", tmp_path / "none")
    assert r.exit_code == 1 and "does not exist" in r.output
    assert not (tmp_path / "m.onnx").exists()


def test_a_run_that_normalised_outside_the_network_tells_predict_to(cats, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(cats["run"], run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["input"].update(mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    (run_dir / "run.json").write_text(json.dumps(record))
    out = tmp_path / "m.onnx"
    assert run("compile", CATS, *SMALL, "--weights", run_dir / "weights.safetensors", "-o", out).exit_code == 0
    assert json.loads(props(out)["netspec.input"])["mean"] == [0.5, 0.4, 0.3]
    from netspec.predict import contract, load_image, session
    c = contract(session(out))
    assert (c.mean, c.std, c.classes) == ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), tuple(CLASSES))
    image = next((cats["photos"] / "cat").iterdir())
    r = run("predict", out, image, "--json")
    x = load_image(image, 3, 16, 16, c.mean, c.std)[None]
    logits = session(out).run(["logits"], {"image": x})[0][0]
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert json.loads(r.output)[0]["top"][0]["score"] == pytest.approx(p.max())


@pytest.mark.parametrize("name, says", [("c.txt", ".txt is not an image type"), ("c", "no file type"),
                                        ("missing/c.png", "does not exist")])
def test_evaluate_refuses_a_plot_it_cannot_write_before_running(cats, tmp_path, name, says):
    r = run("evaluate", CATS, *SMALL, cats["onnx"], "--data", cats["photos"], "--plot", tmp_path / name)
    assert r.exit_code == 1 and says in r.output, r.output
    assert "accuracy" not in r.output  # refused before the evaluation ran
