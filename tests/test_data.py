"""Dataset loaders: digits adapters, image folders, npz and csv files, and clear DataProblems."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from netspec.data import load_dataset, resize_bilinear, split_indices  # noqa: E402
from netspec.errors import DataProblem  # noqa: E402
from netspec.types import TensorType  # noqa: E402

LABEL = TensorType("int64", ("N",))


def f32(*shape):
    return TensorType("float32", ("N", *shape))


@pytest.mark.parametrize("shape", [(64,), (1, 8, 8), (1, 32, 32), (3, 8, 8), (3, 16, 12)])
def test_digits_adapt_to_the_declared_input(shape):
    train, val, info = load_dataset(None, f32(*shape), LABEL, 0.2, 0)
    assert len(train) + len(val) == 1797 and len(val) == 359
    x, y = train[0]
    assert tuple(x.shape) == shape and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert info["classes"] == [str(i) for i in range(10)]
    if shape[0] == 3:
        assert torch.equal(x[0], x[2])


def test_digits_flat_and_image_views_agree():
    flat, _, _ = load_dataset(None, f32(64), LABEL, 0.2, 0)
    image, _, _ = load_dataset(None, f32(1, 8, 8), LABEL, 0.2, 0)
    assert torch.equal(flat[5][0], image[5][0].reshape(64))


@pytest.mark.parametrize("size", [(32, 32), (28, 28), (224, 224), (5, 5), (13, 40), (1, 1)])
def test_resize_matches_torchs_bilinear(size):
    x = (np.random.default_rng(0).integers(0, 17, (20, 1, 8, 8)) / 16.0).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=False)
    ours = resize_bilinear(x, *size)
    assert ours.dtype == np.float32 and ours.shape == tuple(ref.shape)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=1e-6)
    if size == (32, 32):  # a whole-number scale: the same bits
        assert np.array_equal(ours, ref.numpy())


def test_digits_as_arrays_are_the_training_items(tmp_path):
    # evaluate reads the digits without torch; its items must be the very ones training saw.
    train, val, _ = load_dataset(None, f32(3, 28, 28), LABEL, 0.2, 0)
    a_train, a_val, _ = load_dataset(None, f32(3, 28, 28), LABEL, 0.2, 0, tensors=False)
    assert np.array_equal(val.tensors[0].numpy(), a_val.inputs[0])
    assert np.array_equal(val.tensors[1].numpy(), a_val.targets[0])
    assert np.array_equal(train.tensors[0].numpy(), a_train.inputs[0])


def test_split_is_deterministic_per_seed():
    a, _, _ = load_dataset(None, f32(64), LABEL, 0.2, 3)
    b, _, _ = load_dataset(None, f32(64), LABEL, 0.2, 3)
    c, _, _ = load_dataset(None, f32(64), LABEL, 0.2, 4)
    assert torch.equal(a.tensors[0], b.tensors[0])
    assert not torch.equal(a.tensors[0], c.tensors[0])
    tr, va = split_indices(10, 0.3, 0)
    assert len(va) == 3 and sorted(set(tr) | set(va)) == list(range(10)) and not set(tr) & set(va)


def test_no_val_split():
    train, val, info = load_dataset(None, f32(64), LABEL, 0.0, 0)
    assert val is None and len(train) == 1797 and info["val_size"] == 0


@pytest.mark.parametrize("shape", [(2, 8, 8), (8, 8), (63,), (1, 8, "W")])
def test_digits_refuse_unfit_shapes(shape):
    with pytest.raises(DataProblem) as info:
        load_dataset(None, f32(*shape), LABEL, 0.2, 0)
    assert "[N, 64]" in info.value.render() or "symbolic" in str(info.value)


def _image(path, color, size=(10, 6), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_classes_and_split(tmp_path):
    for i in range(4):
        _image(tmp_path / "cat" / f"{i}.png", (255, 0, 0))
        _image(tmp_path / "dog" / f"{i}.jpg", (0, 0, 255))
    (tmp_path / "notes.txt").write_text("not an image")
    train, val, info = load_dataset(str(tmp_path), f32(3, 4, 5), LABEL, 0.25, 0)
    assert info["classes"] == ["cat", "dog"]
    assert len(train) == 6 and len(val) == 2
    items = [train[i] for i in range(len(train))]
    for x, y in items:
        assert tuple(x.shape) == (3, 4, 5) and x.dtype == torch.float32
        # cats are red, dogs blue: the label follows the folder's sorted position
        assert int(x[0].mean() > 0.5) == 1 - int(y)


def test_image_folder_grey_and_normalize(tmp_path):
    _image(tmp_path / "a" / "1.png", 200, mode="L")
    _image(tmp_path / "b" / "1.png", (255, 255, 255))
    train, _, _ = load_dataset(tmp_path, f32(1, 3, 3), LABEL, 0.0, 0, normalize=([0.5], [0.5]))
    x, y = train[0]
    assert tuple(x.shape) == (1, 3, 3) and int(y) == 0
    assert torch.allclose(x, torch.full((1, 3, 3), (200 / 255 - 0.5) / 0.5))
    assert torch.allclose(train[1][0], torch.ones(1, 3, 3))


@pytest.mark.parametrize("channels,normalize,dtype", [
    (3, None, "float32"), (3, ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), "float32"),
    (1, ([0.5], [0.25]), "float32"), (3, None, "float16")])
def test_image_folder_items_are_exactly_the_plain_formula(tmp_path, channels, normalize, dtype):
    # Every pixel value and a resize: items equal PIL -> float32 / 255 -> CHW -> (x - mean) / std.
    rng = np.random.default_rng(0)
    for i in range(3):
        path = tmp_path / f"c{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    path = tmp_path / "c0" / "all.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16).repeat(3).reshape(16, 16, 3)).save(path)
    for size in (16, 12):
        item = TensorType(dtype, ("N", channels, size, size))
        train, _, _ = load_dataset(tmp_path, item, LABEL, 0.0, 0, normalize=normalize)
        for i, (p, label) in enumerate(train.samples):
            with Image.open(p) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
            want = torch.from_numpy(a.reshape(size, size, -1)).permute(2, 0, 1).contiguous()
            if normalize is not None:
                mean, std = (torch.tensor(v, dtype=torch.float32).reshape(-1, 1, 1) for v in normalize)
                want = (want - mean) / std
            want = want.to(getattr(torch, dtype))
            x, y = train[i]
            assert x.dtype == want.dtype and torch.equal(x, want)
            assert int(y) == label
            y += 1  # an item is the caller's: changing it changes no later item
            assert int(train[i][1]) == label


def test_image_folder_goes_to_workers(tmp_path):
    for i in range(4):
        _image(tmp_path / f"c{i % 2}" / f"{i}.png", (10 * i, 0, 0))
    train, _, _ = load_dataset(tmp_path, f32(3, 4, 4), LABEL, 0.0, 0, normalize=([0.5] * 3, [0.5] * 3))
    here = [train[i] for i in range(len(train))]
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=1)
    (xs, ys), = list(loader)
    assert torch.equal(xs, torch.stack([x for x, _ in here])) and ys.tolist() == [int(y) for _, y in here]


def test_image_folder_train_val_layout(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("x", "y"):
            for i in range(n):
                _image(tmp_path / split / cls / f"{i}.png", (1, 2, 3))
    train, val, info = load_dataset(tmp_path, f32(3, 2, 2), LABEL, 0.5, 0)
    assert (len(train), len(val), info["classes"]) == (6, 2, ["x", "y"])
    assert [int(val[i][1]) for i in range(2)] == [0, 1]


def test_image_folder_is_lazy_and_reports_bad_files(tmp_path):
    _image(tmp_path / "a" / "good.png", (0, 0, 0))
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    train, _, _ = load_dataset(tmp_path, f32(3, 4, 4), LABEL, 0.0, 0)  # listing decodes nothing
    assert len(train) == 2
    with pytest.raises(DataProblem, match="cannot read image .*bad.png"):
        train[0]


@pytest.mark.parametrize("layout, message", [
    ({}, "no class subfolders"),
    ({"a/readme.txt": b"x"}, "has no images"),
    ({"train/a/1.png": None, "val/b/1.png": None}, "missing from the training folders"),
])
def test_image_folder_problems(tmp_path, layout, message):
    for rel, content in layout.items():
        p = tmp_path / rel
        if content is None:
            _image(p, (0, 0, 0))
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
    with pytest.raises(DataProblem, match=message):
        load_dataset(tmp_path, f32(3, 4, 4), LABEL, 0.2, 0)


def test_image_folder_needs_image_shaped_input(tmp_path):
    _image(tmp_path / "a" / "1.png", (0, 0, 0))
    with pytest.raises(DataProblem, match=r"\[1, H, W\] or \[3, H, W\]"):
        load_dataset(tmp_path, f32(64), LABEL, 0.2, 0)


def test_npz_with_and_without_val(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    y = np.arange(10) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    train, val, info = load_dataset(tmp_path / "d.npz", f32(2, 2), LABEL, 0.2, 0)
    assert (len(train), len(val), info["classes"]) == (8, 2, ["0", "1", "2"])
    assert tuple(train[0][0].shape) == (2, 2) and train[0][0].dtype == torch.float32
    np.savez(tmp_path / "v.npz", x=x, y=y, x_val=x[:3], y_val=y[:3])
    train, val, _ = load_dataset(tmp_path / "v.npz", f32(4), LABEL, 0.2, 0)
    assert (len(train), len(val)) == (10, 3)
    assert torch.equal(val[2][0], torch.tensor([8.0, 9, 10, 11]))


def test_npz_one_hot_targets(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.float32), y=np.array([0, 1, 2, 1]))
    train, _, _ = load_dataset(tmp_path / "d.npz", f32(3), TensorType("float32", ("N", 3)), 0.0, 0)
    assert torch.equal(train[1][1], torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("arrays, message", [
    ({"inputs": np.zeros((2, 3)), "y": np.zeros(2)}, "must hold arrays 'x' and 'y'"),
    ({"x": np.zeros((2, 5)), "y": np.zeros(2)}, r"items of shape \[5\] do not fit"),
    ({"x": np.zeros((2, 3)), "y": np.zeros(3)}, "2 inputs but 3 labels"),
    ({"x": np.zeros((2, 3)), "y": np.zeros(2), "x_val": np.zeros((1, 3))}, "both or neither"),
    ({"x": np.zeros((2, 3)), "y": np.zeros((2, 2))}, "do not fit the declared target"),
])
def test_npz_problems(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataProblem, match=message):
        load_dataset(tmp_path / "d.npz", f32(3), LABEL, 0.2, 0)


def test_npz_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(DataProblem, match="object arrays are refused"):
        load_dataset(tmp_path / "d.npz", f32(3), LABEL, 0.2, 0)


def test_csv_with_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,label\n0.5,1,0\n2,3,1\n4,5,1\n")
    train, val, info = load_dataset(p, f32(2), LABEL, 0.0, 0)
    assert val is None and len(train) == 3 and info["classes"] == ["0", "1"]
    assert torch.equal(train[0][0], torch.tensor([0.5, 1.0])) and int(train[2][1]) == 1


@pytest.mark.parametrize("name, content, message", [
    ("d.csv", "a,b\nx,y\n", "cannot read"),
    ("d.csv", "1\n2\n", "label column"),
    ("d.txt", "1,2\n", "unknown file type"),
])
def test_file_problems(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataProblem, match=message):
        load_dataset(tmp_path / name, f32(1), LABEL, 0.2, 0)


def test_missing_path():
    with pytest.raises(DataProblem, match="does not exist") as info:
        load_dataset("/no/such/folder", f32(64), LABEL, 0.2, 0)
    assert "hint" in info.value.render()
