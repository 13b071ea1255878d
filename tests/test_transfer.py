"""Importing PyTorch state dicts laid out as torchvision's models onto the zoo's networks.

Each test saves a torchvision-layout model (tests/tv_layouts.py) with random weights and
BatchNorm statistics, imports the file onto the spec, and checks that the netspec network
computes the source model's function in eval mode (max abs diff <= 1e-4 * max(1, max |y|)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from click.testing import CliRunner

from netspec.cli import main
from netspec.errors import DataProblem
from netspec.spec import load
from netspec.transfer import import_state_dict, init_arrays, plan
from netspec.weights import save_safetensors, weight_specs

from . import tv_layouts as tv

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The models are small; on a shared machine more threads mostly spin.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save(model, tmp_path, name="source.pth"):
    path = tmp_path / name
    torch.save(model.state_dict(), path)
    return str(path)


def _module(spec, arrays):
    net = spec.to_torch()
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, strict=True)
    return net.eval()


def _assert_close(got, want):
    got, want = got.detach(), want.detach()
    assert got.shape == want.shape
    tol = 1e-4 * max(1.0, want.abs().max().item())
    diff = (got - want).abs().max().item()
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol:.3g}"


def _import_and_compare(spec, model, x, tmp_path):
    log = []
    arrays = import_state_dict(spec, _save(model, tmp_path), log=log.append)
    with torch.no_grad():
        got, want = _module(spec, arrays)(x), model(x)
    return got, want, log


@pytest.mark.parametrize("name,network", [("resnet18", "ResNet18"), ("resnet50", "ResNet50")])
def test_resnet_computes_the_source_function(name, network, tmp_path):
    spec = load(f"{MODELS}/resnet.net:{network}", params={"size": 64})
    model = tv.build(tv.resnet, name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got, want, log = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)
    assert any("conv1" in line and "-> x.0" in line for line in log)
    assert any(line.strip().startswith("fc ") and "-> logits.2" in line for line in log)


@pytest.mark.parametrize("name,network", [("resnet34", "ResNet34"), ("resnet101", "ResNet101"),
                                          ("resnet152", "ResNet152")])
def test_deeper_resnets_compute_the_source_function(name, network, tmp_path):
    # Same blocks as ResNet18/50, more of them: at 32 px the forward pass is cheap, and every
    # tensor is also checked to have landed on its counterpart by torchvision's name.
    spec = load(f"{MODELS}/resnet.net:{network}", params={"size": 32, "classes": 10})
    model = tv.build(tv.resnet, name, num_classes=10)
    arrays = import_state_dict(spec, _save(model, tmp_path), log=lambda _: None)
    source = model.state_dict()
    assert len(arrays) == len(source)
    placed = {id(v): k for k, v in arrays.items()}
    stages = {"x.4": "layer1", "x.5": "layer2", "x.6": "layer3", "x.7": "layer4"}
    for key, value in arrays.items():
        # x.6.35.main.3.weight <- layer3.35.conv2.weight: the same stage, unit and role.
        parts = key.split(".")
        if key.startswith("logits"):
            src = "fc." + parts[-1]
        elif len(parts) == 3:
            src = {"x.0": "conv1", "x.1": "bn1"}[".".join(parts[:2])] + "." + parts[2]
        else:
            stage, unit, branch, idx = stages[".".join(parts[:2])], parts[2], parts[3], int(parts[4])
            local = ".".join(parts[5:])
            if branch == "main":
                src = f"{stage}.{unit}.{('conv', 'bn')[idx % 3 != 0]}{idx // 3 + 1}.{local}"
            else:
                src = f"{stage}.{unit}.downsample.{idx}.{local}"
        np.testing.assert_array_equal(value, source[src].numpy(), err_msg=f"{key} should come from {src}")
    assert len(placed) == len(arrays)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        _assert_close(_module(spec, arrays)(x), model(x))


@pytest.mark.parametrize("network,bn", [("VGG16", False), ("VGG16_BN", True)])
def test_vgg16_computes_the_source_function(network, bn, tmp_path):
    # torchvision's key layout with a narrow classifier: every shape but the two hidden widths
    # is vgg16's (the conv stack is full size).
    spec = load(f"{MODELS}/vgg.net:{network}", params={"size": 32, "hidden": 64, "classes": 10})
    model = tv.build(tv.vgg16, num_classes=10, hidden=64, batch_norm=bn)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got, want, log = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)
    assert any("classifier.6" in line for line in log)


def test_mobilenet_v2_computes_the_source_function(tmp_path):
    spec = load(f"{MODELS}/mobilenet.net:MobileNetV2", params={"size": 64})
    model = tv.build(tv.MobileNetV2)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    got, want, _ = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)


def test_googlenet_with_aux_heads_computes_all_three_outputs(tmp_path):
    spec = load(f"{MODELS}/googlenet.net:GoogLeNet", params={"size": 64})
    model = tv.build(tv.GoogLeNet)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    log = []
    arrays = import_state_dict(spec, _save(model, tmp_path), log=log.append)
    with torch.no_grad():
        logits, aux1, aux2 = _module(spec, arrays)(x)
        want_logits, want_aux1, want_aux2 = model(x)
    _assert_close(logits, want_logits)
    _assert_close(aux1, want_aux1)
    _assert_close(aux2, want_aux2)
    # torchvision keeps fc after the aux heads; netspec's graph has the head first.
    assert any(line.strip().startswith("fc ") and "-> logits.3" in line for line in log)


def test_googlenet_transform_input_is_the_input_normalization(tmp_path):
    # torchvision's pretrained googlenet sets transform_input: the imported network then expects
    # the transformed input, which is the image normalized with mean 0.5 and std 0.5.
    spec = load(f"{MODELS}/googlenet.net:GoogLeNetNoAux", params={"size": 64})
    model = tv.build(tv.GoogLeNet, aux_logits=False, transform_input=True)
    raw = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    imagenet = (raw - mean[:, None, None]) / std[:, None, None]
    arrays = import_state_dict(spec, _save(model, tmp_path), log=lambda _: None)
    with torch.no_grad():
        _assert_close(_module(spec, arrays)((raw - 0.5) / 0.5), model(imagenet)[0])


def test_googlenet_aux_weights_onto_the_network_without_aux(tmp_path):
    # torchvision's googlenet file holds aux1/aux2 even for the model without them.
    spec = load(f"{MODELS}/googlenet.net:GoogLeNetNoAux", params={"size": 64})
    model = tv.build(tv.GoogLeNet)
    path = _save(model, tmp_path)
    with pytest.raises(DataProblem, match=r"aux1\.conv\.conv.*has no layer in the spec"):
        import_state_dict(spec, path, log=lambda _: None)
    log = []
    arrays, fresh = init_arrays(spec, path, log=log.append)
    assert fresh == [] and arrays.keys() == weight_specs(spec.graph).keys()
    unused = next(line for line in log if "not used from the source" in line)
    assert "aux1.conv.conv (weight [128, 512, 1, 1])" in unused and "(2 more)" in unused


def test_vit_b_16_computes_the_source_function(tmp_path):
    # vit_b_16's layer shapes (16 px patches, 768 wide, 12 heads, MLP 3072); 2 of its 12 encoder
    # layers and 112 px images keep the test fast.
    spec = load(f"{MODELS}/transformer.net:ViT_B_16", params={"depth": 2, "size": 112, "classes": 10})
    model = tv.build(tv.VisionTransformer, 112, 16, 2, 12, 768, 3072, num_classes=10)
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(6))
    got, want, log = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)
    assert any("class_token" in line and "-> tokens.3" in line for line in log)
    assert any("encoder.pos_embedding" in line and "-> tokens.4" in line for line in log)


def test_vit_tiny_all_twelve_layers(tmp_path):
    spec = load(f"{MODELS}/transformer.net:ViT_Tiny")
    model = tv.build(tv.VisionTransformer, 32, 4, 12, 3, 192, 768, num_classes=10)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    got, want, _ = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)


# ---- full-size layouts, by shape only ----------------------------------------------------------

@pytest.mark.parametrize("target,make,reordered", [
    ("resnet.net:ResNet18", lambda: tv.resnet("resnet18"), 0),
    ("resnet.net:ResNet34", lambda: tv.resnet("resnet34"), 0),
    ("resnet.net:ResNet50", lambda: tv.resnet("resnet50"), 0),
    ("resnet.net:ResNet101", lambda: tv.resnet("resnet101"), 0),
    ("resnet.net:ResNet152", lambda: tv.resnet("resnet152"), 0),
    ("vgg.net:VGG16", tv.vgg16, 0),
    ("vgg.net:VGG16_BN", lambda: tv.vgg16(batch_norm=True), 0),
    ("mobilenet.net:MobileNetV2", tv.MobileNetV2, 0),
    ("googlenet.net:GoogLeNet", tv.GoogLeNet, 1),  # fc, defined after the aux heads
    ("transformer.net:ViT_B_16", tv.vit_b_16, 1),  # class_token, defined before conv_proj
])
def test_full_size_torchvision_layouts_map_completely(target, make, reordered):
    # The tests above run smaller variants; this maps the full-size state dicts (1000 classes,
    # VGG's 4096-wide classifier, all 12 ViT layers at 224 px) without allocating a tensor.
    spec = load(f"{MODELS}/{target}")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in make().state_dict().items()}
    m = plan(spec, shapes)
    assert not m.fresh and not m.unused and m.reordered == reordered
    assert sum(len(src.keys) for src, _ in m.pairs) == len(shapes) == len(weight_specs(spec.graph))
    position = {key: i for i, key in enumerate(shapes)}
    starts = [min(position[k] for k in src.keys.values()) for src, _ in m.pairs]
    out_of_order = sum(a > b for a, b in zip(starts, starts[1:]))
    assert out_of_order == reordered
    names = {src.name: layer.name for src, layer in m.pairs}
    if target.endswith("ViT_B_16"):
        assert names["class_token"] == "tokens.3" and names["encoder.pos_embedding"] == "tokens.4"
        assert names["encoder.layers.encoder_layer_11.self_attention"] == "tokens.16.attn.1"
        assert names["encoder.layers.encoder_layer_11.mlp.3"] == "tokens.16.ff.4"
        assert names["heads.head"] == "logits.1"
    if target.endswith("GoogLeNet"):
        assert names["fc"] == "logits.3" and names["aux2.fc2"] == "aux2.6"


def test_names_do_not_matter_only_structure():
    # torchvision's ViT checkpoints before its MLP rename call the MLP's Linears linear_1 and
    # linear_2 (torchvision converts them when loading); the structure is the same.
    spec = load(f"{MODELS}/transformer.net:ViT_B_16")
    with torch.device("meta"):
        shapes = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): tuple(v.shape)
                  for k, v in tv.vit_b_16().state_dict().items()}
    m = plan(spec, shapes)
    assert not m.fresh and not m.unused
    names = {src.name: layer.name for src, layer in m.pairs}
    assert names["encoder.layers.encoder_layer_0.mlp.linear_1"] == "tokens.5.ff.1"
    assert names["encoder.layers.encoder_layer_0.mlp.linear_2"] == "tokens.5.ff.4"


# ---- fine-tuning: the lenient import -----------------------------------------------------------

def test_new_two_class_head_is_left_fresh_and_everything_else_loaded(tmp_path):
    spec = load(f"{MODELS}/resnet.net:ResNet18", params={"size": 32, "classes": 2})
    model = tv.build(tv.resnet, "resnet18")
    path = _save(model, tmp_path)
    log = []
    arrays, fresh = init_arrays(spec, path, log=log.append)
    assert fresh == ["logits.2"]
    specs = weight_specs(spec.graph)
    assert arrays.keys() == specs.keys() - {"logits.2.weight", "logits.2.bias"}
    source = model.state_dict()
    assert len(arrays) == len(source) - 2
    np.testing.assert_array_equal(arrays["x.0.weight"], source["conv1.weight"].numpy())
    np.testing.assert_array_equal(arrays["x.7.1.main.4.running_var"], source["layer4.1.bn2.running_var"].numpy())
    assert any("left fresh: logits.2" in line for line in log)
    assert any("fc" in line and "not used" in line for line in log)
    # The loaded backbone computes the source's features: with the first two rows of the
    # source's fc as the new head, the logits are the source's first two.
    head = {"logits.2.weight": source["fc.weight"][:2].numpy(), "logits.2.bias": source["fc.bias"][:2].numpy()}
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        _assert_close(_module(spec, {**arrays, **head})(x), model(x)[:, :2])
    # and the strict import refuses the head, naming both sides.
    with pytest.raises(DataProblem) as err:
        import_state_dict(spec, path, log=lambda _: None)
    text = err.value.render()
    assert "logits.2 (Linear: weight [2, 512], bias [2])" in text
    assert "fc (weight [1000, 512], bias [1000])" in text


def test_a_netspec_run_folder_is_loaded_by_name(tmp_path):
    spec10 = load(f"{MODELS}/resnet.net:ResNet18", params={"size": 32, "classes": 10})
    from netspec.weights import init_weights
    trained = init_weights(spec10.graph, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    save_safetensors(trained, run / "weights.safetensors")
    same = import_state_dict(spec10, str(run), log=lambda _: None)
    assert all(np.array_equal(same[k], trained[k]) for k in trained)
    spec2 = load(f"{MODELS}/resnet.net:ResNet18", params={"size": 32, "classes": 2})
    arrays, fresh = init_arrays(spec2, str(run / "weights.safetensors"), log=lambda _: None)
    assert fresh == ["logits.2"] and "logits.2.weight" not in arrays and len(arrays) == len(trained) - 2


def test_a_safetensors_file_in_another_layout_is_matched_without_its_order(tmp_path):
    spec = load(f"{MODELS}/resnet.net:ResNet18", params={"size": 32})
    model = tv.build(tv.resnet, "resnet18")
    path = tmp_path / "resnet18.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    arrays = import_state_dict(spec, str(path), log=lambda _: None)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _assert_close(_module(spec, arrays)(x), model(x))


def test_batchnorm_without_num_batches_tracked_loads_as_torch_does(tmp_path):
    spec = load(f"{MODELS}/mobilenet.net:MobileNetV2", params={"size": 32})
    model = tv.build(tv.MobileNetV2)
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(old, path)
    log = []
    arrays = import_state_dict(spec, str(path), log=log.append)
    assert arrays["features.0.1.num_batches_tracked"].dtype == np.int64
    assert int(arrays["features.0.1.num_batches_tracked"]) == 0
    assert any("num_batches_tracked" in line for line in log)


# ---- the command -------------------------------------------------------------------------------

def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_weights_import_writes_weights_that_compile_uses(tmp_path):
    model = tv.build(tv.resnet, "resnet18")
    src = _save(model, tmp_path)
    out = tmp_path / "r18.safetensors"
    r = _run("weights", "import", src, "--spec", f"{MODELS}/resnet.net:ResNet18", "-D", "size=32", "-o", out)
    assert r.exit_code == 0, r.output
    assert "layer4.1.bn2" in r.output and "-> x.7.1.main.4" in r.output
    assert f"wrote {out}: 122 tensors of ResNet18" in r.output
    from safetensors.numpy import load_file
    np.testing.assert_array_equal(load_file(str(out))["logits.2.weight"], model.fc.weight.detach().numpy())
    # A later import does not overwrite it silently.
    again = _run("weights", "import", src, "--spec", f"{MODELS}/resnet.net:ResNet18", "-D", "size=32", "-o", out)
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    onnx_out = tmp_path / "r18.onnx"
    c = _run("compile", f"{MODELS}/resnet.net:ResNet18", "-D", "size=32", "-w", out, "-o", onnx_out)
    assert c.exit_code == 0, c.output


def test_weights_import_strict_refuses_a_new_head_and_lenient_fills_it(tmp_path):
    src = _save(tv.build(tv.resnet, "resnet18"), tmp_path)
    out = tmp_path / "two.safetensors"
    args = ("weights", "import", src, "--spec", f"{MODELS}/resnet.net:ResNet18", "-D", "classes=2", "-o", out)
    r = _run(*args)
    assert r.exit_code == 1 and not out.exists()
    assert "logits.2 (Linear: weight [2, 512], bias [2])" in r.output and "fc (weight [1000, 512]" in r.output
    assert "--lenient" in r.output
    r = _run(*args, "--lenient", "--seed", "4")
    assert r.exit_code == 0, r.output
    assert "left fresh: logits.2" in r.output and "1 layer freshly initialised (seed 4)" in r.output
    from safetensors.numpy import load_file
    from netspec.weights import init_weights
    fresh = init_weights(load(f"{MODELS}/resnet.net:ResNet18", params={"classes": 2}).graph, seed=4)
    np.testing.assert_array_equal(load_file(str(out))["logits.2.weight"], fresh["logits.2.weight"])


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    (b"not a pickle", "cannot read"),
    (bytes(range(200, 256)) * 4, "it is not a file that torch.save wrote"),
    ("model", "holds a pickled object (torch.nn.modules.linear.Linear)"),
    ("list", "holds no state dict"),
])
def test_weights_import_bad_sources_are_exit_1(content, message, tmp_path):
    src = tmp_path / "bad.pth"
    if content == "model":
        torch.save(torch.nn.Linear(2, 2), src)
    elif content == "list":
        torch.save([torch.zeros(2)], src)
    elif content is not None:
        src.write_bytes(content)
    r = _run("weights", "import", src, "--spec", f"{MODELS}/mlp.net", "-o", tmp_path / "o.safetensors")
    assert r.exit_code == 1, r.output
    assert message in r.output
    assert "Warning" not in r.output  # torch's pickle-protocol warning is not shown before the refusal
    assert not (tmp_path / "o.safetensors").exists()


def test_weights_import_checks_the_output_before_reading(tmp_path):
    src = tmp_path / "missing.pth"  # never read: the output is refused first
    r = _run("weights", "import", src, "--spec", f"{MODELS}/mlp.net", "-o", tmp_path / "no" / "o.safetensors")
    assert r.exit_code == 1 and "does not exist" in r.output and "'" + str(tmp_path / "no") + "'" in r.output
    r = _run("weights", "import", src, "--spec", f"{MODELS}/mlp.net", "-o", tmp_path / "o.pth")
    assert r.exit_code == 1 and "should end in .safetensors" in r.output


def test_a_checkpoint_dict_holding_the_state_dict_is_read(tmp_path):
    model = tv.build(tv.resnet, "resnet18")
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 7, "state_dict": model.state_dict()}, path)
    spec = load(f"{MODELS}/resnet.net:ResNet18", params={"size": 32})
    arrays = import_state_dict(spec, str(path), log=lambda _: None)
    np.testing.assert_array_equal(arrays["x.0.weight"], model.conv1.weight.detach().numpy())


def test_init_upcasts_float16_but_refuses_int8_weights(tmp_path):
    from safetensors.numpy import save_file

    from netspec.weights import init_weights
    s = load(MODELS / "mlp.net")
    fresh = init_weights(s.graph)
    half, quantized = tmp_path / "half.safetensors", tmp_path / "int8.safetensors"
    save_file({k: v.astype(np.float16) for k, v in fresh.items()}, str(half))
    save_file({k: (v * 100).astype(np.int8) for k, v in fresh.items()}, str(quantized))
    arrays, left = init_arrays(s, str(half), log=lambda *_: None)
    assert left == [] and all(a.dtype == np.float32 for a in arrays.values())  # lossless
    with pytest.raises(DataProblem, match="is int8, the spec wants float32"):
        init_arrays(s, str(quantized), log=lambda *_: None)
