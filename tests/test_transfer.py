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

from netspec.errors import DataProblem
from netspec.spec import load
from netspec.transfer import import_state_dict, init_arrays
from netspec.weights import save_safetensors, weight_specs

from . import tv_layouts as tv

MODELS = Path(__file__).resolve().parent.parent / "models"


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
    model = tv.randomize(tv.resnet(name))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got, want, log = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)
    assert any("conv1" in line and "-> x.0" in line for line in log)
    assert any(line.strip().startswith("fc ") and "-> logits.2" in line for line in log)


@pytest.mark.parametrize("name,network", [("resnet34", "ResNet34"), ("resnet101", "ResNet101"),
                                          ("resnet152", "ResNet152")])
def test_deeper_resnets_map_every_tensor_by_name_and_role(name, network, tmp_path):
    # The forward pass of ResNet18/50 above shows the mapping computes the function; for the
    # deeper ones (same blocks, more of them) check every tensor landed on its counterpart.
    spec = load(f"{MODELS}/resnet.net:{network}", params={"size": 32, "classes": 10})
    model = tv.randomize(tv.resnet(name, num_classes=10))
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


def test_vgg16_computes_the_source_function(tmp_path):
    # torchvision's key layout with a narrow classifier: every shape but the two hidden widths
    # is vgg16's (the conv stack is full size).
    spec = load(f"{MODELS}/vgg.net:VGG16", params={"size": 32, "hidden": 64, "classes": 10})
    model = tv.randomize(tv.vgg16(num_classes=10, hidden=64))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got, want, log = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)
    assert any("classifier.6" in line for line in log)


def test_mobilenet_v2_computes_the_source_function(tmp_path):
    spec = load(f"{MODELS}/mobilenet.net:MobileNetV2", params={"size": 64})
    model = tv.randomize(tv.MobileNetV2())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    got, want, _ = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)


def test_googlenet_with_aux_heads_computes_all_three_outputs(tmp_path):
    spec = load(f"{MODELS}/googlenet.net:GoogLeNet", params={"size": 96})
    model = tv.randomize(tv.GoogLeNet())
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
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
    model = tv.randomize(tv.GoogLeNet(aux_logits=False, transform_input=True))
    raw = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    imagenet = (raw - mean[:, None, None]) / std[:, None, None]
    arrays = import_state_dict(spec, _save(model, tmp_path), log=lambda _: None)
    with torch.no_grad():
        _assert_close(_module(spec, arrays)((raw - 0.5) / 0.5), model(imagenet)[0])


def test_googlenet_aux_weights_onto_the_network_without_aux(tmp_path):
    # torchvision's googlenet file holds aux1/aux2 even for the model without them.
    spec = load(f"{MODELS}/googlenet.net:GoogLeNetNoAux", params={"size": 64})
    model = tv.randomize(tv.GoogLeNet())
    path = _save(model, tmp_path)
    with pytest.raises(DataProblem, match=r"aux1\.conv\.conv.*has no layer in the spec"):
        import_state_dict(spec, path, log=lambda _: None)
    log = []
    arrays, fresh = init_arrays(spec, path, log=log.append)
    assert fresh == [] and arrays.keys() == weight_specs(spec.graph).keys()
    unused = next(line for line in log if "not used from the source" in line)
    assert "aux1.conv.conv (weight [128, 512, 1, 1])" in unused and "(2 more)" in unused


@pytest.mark.parametrize("depth", [2])
def test_vit_b_16_computes_the_source_function(depth, tmp_path):
    # vit_b_16's shapes (224 px, 16 px patches, 768 wide, 12 heads), fewer encoder layers.
    spec = load(f"{MODELS}/transformer.net:ViT_B_16", params={"depth": depth, "classes": 10})
    model = tv.randomize(tv.vit_b_16(num_classes=10, num_layers=depth))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    got, want, log = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)
    assert any("class_token" in line and "-> tokens.3" in line for line in log)
    assert any("encoder.pos_embedding" in line and "-> tokens.4" in line for line in log)


def test_vit_tiny_all_twelve_layers(tmp_path):
    spec = load(f"{MODELS}/transformer.net:ViT_Tiny")
    model = tv.randomize(tv.VisionTransformer(32, 4, 12, 3, 192, 768, num_classes=10))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    got, want, _ = _import_and_compare(spec, model, x, tmp_path)
    _assert_close(got, want)


# ---- fine-tuning: the lenient import -----------------------------------------------------------

def test_new_two_class_head_is_left_fresh_and_everything_else_loaded(tmp_path):
    spec = load(f"{MODELS}/resnet.net:ResNet18", params={"size": 32, "classes": 2})
    model = tv.randomize(tv.resnet("resnet18"))
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
    model = tv.randomize(tv.resnet("resnet18"))
    path = tmp_path / "resnet18.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    arrays = import_state_dict(spec, str(path), log=lambda _: None)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _assert_close(_module(spec, arrays)(x), model(x))


def test_batchnorm_without_num_batches_tracked_loads_as_torch_does(tmp_path):
    spec = load(f"{MODELS}/mobilenet.net:MobileNetV2", params={"size": 32})
    model = tv.randomize(tv.MobileNetV2())
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(old, path)
    log = []
    arrays = import_state_dict(spec, str(path), log=log.append)
    assert arrays["features.0.1.num_batches_tracked"].dtype == np.int64
    assert int(arrays["features.0.1.num_batches_tracked"]) == 0
    assert any("num_batches_tracked" in line for line in log)
