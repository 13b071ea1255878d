"""The train block's `augment` setting: its checks, and each op against a reference written here.

A reference replays the documented draws (one float64 `torch.rand` per draw, in the documented
order) from a generator seeded like the transform's, and computes the box, angle or factors and
the pixels itself with numpy, PIL or colorsys.
"""

import colorsys
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from netspec import augment as A  # noqa: E402
from netspec.errors import NetspecError, ParamProblem  # noqa: E402


class Draws:
    """The documented draws, replayed from a generator seeded as the transform's was."""

    def __init__(self, seed: int):
        self.g = torch.Generator()
        self.g.manual_seed(seed)

    def u(self, lo=0.0, hi=1.0) -> float:
        return lo + (hi - lo) * torch.rand((), generator=self.g, dtype=torch.float64).item()

    def int(self, n: int) -> int:
        return min(int(self.u() * n), n - 1)

    def beta(self, alpha: float) -> float:
        seed = int(torch.randint(0, 2**62, (), generator=self.g))
        return float(np.random.default_rng(seed).beta(alpha, alpha))


def gen(seed: int):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def run_op(item, x, seed):
    """Apply one op (a spec list item) through item_transform."""
    return A.item_transform(A.parse_augment([item]))(torch.from_numpy(x), gen(seed)).numpy()


def image(c, h, w, seed=0):
    return np.random.default_rng(seed).random((c, h, w)).astype(np.float32)


# ---------------------------------------------------------------- RandomResizedCrop

def ref_resized_crop_box(d: Draws, h, w, scale, ratio):
    for _attempt in range(10):
        area = h * w * d.u(*scale)
        aspect = math.exp(d.u(math.log(ratio[0]), math.log(ratio[1])))
        cw = int(round(math.sqrt(area * aspect)))
        ch = int(round(math.sqrt(area / aspect)))
        if 1 <= cw <= w and 1 <= ch <= h:
            return d.int(h - ch + 1), d.int(w - cw + 1), ch, cw
    r = min(max(w / h, ratio[0]), ratio[1])
    if r == w / h:
        return 0, 0, h, w
    cw, ch = (w, int(round(w / r))) if r > w / h else (int(round(h * r)), h)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@pytest.mark.parametrize("c,h,w,scale,ratio", [(3, 16, 12, (0.08, 1.0), (3 / 4, 4 / 3)),
                                               (1, 9, 20, (0.5, 1.0), (0.5, 2.0)),
                                               (3, 10, 10, (0.9, 1.0), (1.0, 1.0))])
def test_random_resized_crop_matches_pil(c, h, w, scale, ratio):
    x = image(c, h, w)
    for seed in range(8):
        got = run_op({"name": "RandomResizedCrop", "scale": list(scale), "ratio": list(ratio)}, x, seed)
        d = Draws(seed)
        assert d.u() < 1.0  # the p gate (p=1)
        top, left, ch, cw = ref_resized_crop_box(d, h, w, scale, ratio)
        want = np.stack([np.asarray(Image.fromarray(x[k, top:top + ch, left:left + cw], mode="F")
                                    .resize((w, h), Image.Resampling.BILINEAR)) for k in range(c)])
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_resized_crop_fallback_is_the_centred_whole_image_at_the_nearest_ratio():
    # A 4x40 image cannot hold a crop of ratio <= 2 with area >= 0.9: ten misses, then the fallback.
    g = gen(0)
    assert A.resized_crop_box(4, 40, (0.9, 1.0), (1.0, 2.0), g) == (0, 16, 4, 8)
    d = Draws(0)
    assert ref_resized_crop_box(d, 4, 40, (0.9, 1.0), (1.0, 2.0)) == (0, 16, 4, 8)


def test_resized_crop_boxes_keep_scale_and_ratio():
    g = gen(1)
    for _ in range(300):
        top, left, ch, cw = A.resized_crop_box(60, 80, (0.25, 0.5), (0.5, 2.0), g)
        assert 0 <= top and top + ch <= 60 and 0 <= left and left + cw <= 80
        # rounding the sides moves area and ratio a little
        assert 0.25 * 0.9 < ch * cw / 4800 < 0.5 * 1.1
        assert 0.5 * 0.9 < cw / ch < 2.0 * 1.1


# ---------------------------------------------------------------- RandomCrop

@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
@pytest.mark.parametrize("padding", [2, [1, 3], [0, 1, 6, 2]])
def test_random_crop_matches_np_pad(mode, padding):
    c, h, w = 3, 5, 4
    x = image(c, h, w)
    pad = [padding] * 4 if isinstance(padding, int) else (padding * 2 if len(padding) == 2 else padding)
    left, top, right, bottom = pad
    for seed in range(6):
        got = run_op({"name": "RandomCrop", "padding": padding, "padding_mode": mode, "fill": 0.25}, x, seed)
        d = Draws(seed)
        d.u()  # p gate
        i, j = d.int(top + bottom + 1), d.int(left + right + 1)
        kw = {"constant_values": 0.25} if mode == "constant" else {}
        padded = np.pad(x, ((0, 0), (top, bottom), (left, right)), mode=mode, **kw)
        np.testing.assert_array_equal(got, padded[:, i:i + h, j:j + w])


def test_random_crop_per_channel_fill():
    x = image(3, 4, 4)
    got = run_op({"name": "RandomCrop", "padding": 4, "fill": [0.1, 0.2, 0.3]}, x, 0)
    d = Draws(0)
    d.u()
    i, j = d.int(9), d.int(9)
    padded = np.stack([np.pad(x[k], 4, constant_values=v) for k, v in enumerate([0.1, 0.2, 0.3])])
    np.testing.assert_array_equal(got, padded[:, i:i + 4, j:j + 4])


# ---------------------------------------------------------------- flips

@pytest.mark.parametrize("name,axis", [("HorizontalFlip", 2), ("VerticalFlip", 1)])
def test_flips(name, axis):
    x = image(3, 5, 7)
    flipped = np.flip(x, axis)
    for seed in range(10):
        got = run_op({"name": name, "p": 0.5}, x, seed)
        want = flipped if Draws(seed).u() < 0.5 else x
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(run_op({"name": name, "p": 1.0}, x, 3), flipped)
    np.testing.assert_array_equal(run_op({"name": name, "p": 0.0}, x, 3), x)


def test_p_is_the_share_of_items():
    t = A.item_transform(A.parse_augment([{"name": "HorizontalFlip", "p": 0.3}]))
    x = torch.arange(4.0).reshape(1, 1, 4)
    flipped = sum(bool(t(x, A.item_generator(0, 0, i))[0, 0, 0] == 3) for i in range(2000))
    assert abs(flipped / 2000 - 0.3) < 0.04


# ---------------------------------------------------------------- Rotation

def ref_rotate(x, degrees, fill, nearest=False):
    """Turn counter-clockwise on screen: the output pixel at z (complex, y down) reads the source at z·e^{iθ}."""
    c, h, w = x.shape
    centre = complex((w - 1) / 2, (h - 1) / 2)
    turn = complex(math.cos(math.radians(degrees)), math.sin(math.radians(degrees)))
    out = np.empty_like(x, dtype=np.float64)

    def px(k, r, q):
        return x[k, r, q] if 0 <= r < h and 0 <= q < w else fill

    for r in range(h):
        for q in range(w):
            s = (complex(q, r) - centre) * turn + centre
            sx, sy = s.real, s.imag
            for k in range(c):
                if nearest:
                    out[k, r, q] = px(k, int(np.rint(sy)), int(np.rint(sx)))
                    continue
                x0, y0 = math.floor(sx), math.floor(sy)
                fx, fy = sx - x0, sy - y0
                out[k, r, q] = ((1 - fy) * ((1 - fx) * px(k, y0, x0) + fx * px(k, y0, x0 + 1))
                                + fy * ((1 - fx) * px(k, y0 + 1, x0) + fx * px(k, y0 + 1, x0 + 1)))
    return out


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill", [0.0, 0.5, [0.2, 0.4, 0.6]])
def test_rotation_matches_reference(interpolation, fill):
    x = image(3, 7, 9)
    for seed in range(4):
        got = run_op({"name": "Rotation", "degrees": [-50, 170], "fill": fill, "interpolation": interpolation},
                     x, seed)
        d = Draws(seed)
        d.u()
        angle = d.u(-50, 170)
        want = np.stack([ref_rotate(x[k:k + 1], angle, f, interpolation == "nearest")[0]
                         for k, f in enumerate(fill if isinstance(fill, list) else [fill] * 3)])
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_rotation_turns_counter_clockwise():
    x = image(1, 6, 6)
    got = run_op({"name": "Rotation", "degrees": [90, 90]}, x, 0)
    np.testing.assert_allclose(got[0], np.rot90(x[0]), atol=1e-5)  # np.rot90 turns counter-clockwise


# ---------------------------------------------------------------- ColorJitter

GREY = (0.2989, 0.587, 0.114)


def ref_jitter(x, order, factors):
    x = x.astype(np.float64)
    c = x.shape[0]
    grey = (lambda a: a if c == 1 else np.tensordot(GREY, a, 1)[None])
    for k in order:
        f = factors[k]
        if k == 0:
            x = np.clip(x * f, 0, 1)
        elif k == 1:
            x = np.clip(f * x + (1 - f) * grey(x).mean(), 0, 1)
        elif k == 2 and c == 3:
            x = np.clip(f * x + (1 - f) * grey(x), 0, 1)
        elif k == 3 and c == 3:
            out = np.empty_like(x)
            for r in range(x.shape[1]):
                for q in range(x.shape[2]):
                    hh, s, v = colorsys.rgb_to_hsv(*x[:, r, q])
                    out[:, r, q] = colorsys.hsv_to_rgb((hh + f) % 1.0, s, v)
            x = out
    return x


@pytest.mark.parametrize("c", [1, 3])
def test_color_jitter_matches_colorsys(c):
    x = image(c, 6, 5)
    spec = {"name": "ColorJitter", "brightness": 0.4, "contrast": [0.5, 1.5], "saturation": 0.6, "hue": 0.3}
    for seed in range(6):
        got = run_op(spec, x, seed)
        d = Draws(seed)
        d.u()
        order = list(np.argsort([d.u() for _ in range(4)]))
        factors = [d.u(0.6, 1.4), d.u(0.5, 1.5), d.u(0.4, 1.6), d.u(-0.3, 0.3)]
        np.testing.assert_allclose(got, ref_jitter(x, order, factors), atol=2e-6)


def test_color_jitter_known_values():
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    third = A.parse_augment([{"name": "ColorJitter", "hue": [1 / 3, 1 / 3]}])
    np.testing.assert_allclose(A.item_transform(third)(red, gen(0)).flatten(), [0, 1, 0], atol=1e-6)
    grey_all = A.parse_augment([{"name": "ColorJitter", "saturation": [0, 0]}])
    out = A.item_transform(grey_all)(torch.tensor([0.2, 0.4, 0.6]).reshape(3, 1, 1), gen(0)).flatten()
    np.testing.assert_allclose(out, [np.dot(GREY, [0.2, 0.4, 0.6])] * 3, atol=1e-6)


def test_color_jitter_leaves_saturation_and_hue_of_grey_images():
    x = torch.from_numpy(image(1, 5, 5))
    cfg = A.parse_augment([{"name": "ColorJitter", "saturation": 0.9, "hue": 0.5}])
    assert torch.equal(A.item_transform(cfg)(x, gen(4)), x)


# ---------------------------------------------------------------- RandomErasing

def ref_erasing_box(d: Draws, h, w, scale, ratio):
    for _attempt in range(10):
        area = h * w * d.u(*scale)
        aspect = math.exp(d.u(math.log(ratio[0]), math.log(ratio[1])))
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if eh < h and ew < w:
            return d.int(h - eh + 1), d.int(w - ew + 1), eh, ew
    return None


@pytest.mark.parametrize("value,c,h,w,scale,ratio", [
    (0.0, 3, 12, 10, (0.1, 0.4), (0.5, 2.0)),
    ([0.1, 0.5, 0.9], 3, 12, 10, (0.1, 0.4), (0.5, 2.0)),
    ("random", 3, 12, 10, (0.1, 0.4), (0.5, 2.0)),
    (1.0, 1, 6, 5, (0.5, 0.95), (0.3, 3.3)),  # boxes as tall or wide as the image are refused
])
def test_random_erasing_matches_reference(value, c, h, w, scale, ratio):
    x = image(c, h, w)
    spec = {"name": "RandomErasing", "p": 0.7, "scale": list(scale), "ratio": list(ratio), "value": value}
    erased = 0
    for seed in range(12):
        got = run_op(spec, x, seed)
        d = Draws(seed)
        want = x.copy()
        if d.u() < 0.7:
            box = ref_erasing_box(d, h, w, scale, ratio)
            if box is not None:
                top, left, eh, ew = box
                if value == "random":
                    fill = torch.rand((c, eh, ew), generator=d.g, dtype=torch.float64).numpy()
                else:
                    fill = np.asarray(value, dtype=np.float32).reshape(-1, 1, 1)
                want[:, top:top + eh, left:left + ew] = fill
                erased += 1
        np.testing.assert_allclose(got, want, atol=1e-7)
    assert erased >= 3  # the test saw erasing happen, not only the p gate


# ---------------------------------------------------------------- Mixup and CutMix

def test_mixup_matches_reference():
    cfg = A.parse_augment([{"name": "Mixup", "alpha": 0.4}])
    x = np.random.default_rng(0).random((4, 3, 5, 5)).astype(np.float32)
    y = np.array([2, 0, 1, 2])
    for seed in range(5):
        gx, gy = A.batch_transform(cfg)(torch.from_numpy(x), torch.from_numpy(y), 3, gen(seed))
        d = Draws(seed)
        assert d.u() < 1.0
        lam = d.beta(0.4)
        onehot = np.eye(3)[y]
        prev = [3, 0, 1, 2]  # item i is mixed with item i-1, as torch.roll(1) lays it
        np.testing.assert_allclose(gx.numpy(), lam * x + (1 - lam) * x[prev], atol=1e-6)
        np.testing.assert_allclose(gy.numpy(), lam * onehot + (1 - lam) * onehot[prev], atol=1e-6)
        assert gy.dtype == torch.float32


def test_cutmix_matches_reference():
    cfg = A.parse_augment([{"name": "CutMix", "alpha": 1.0}])
    n, h, w = 3, 9, 12
    x = np.random.default_rng(1).random((n, 1, h, w)).astype(np.float32)
    soft = np.random.default_rng(2).dirichlet(np.ones(4), n).astype(np.float32)  # soft targets pass through
    for seed in range(6):
        gx, gy = A.batch_transform(cfg)(torch.from_numpy(x), torch.from_numpy(soft), 4, gen(seed))
        d = Draws(seed)
        d.u()
        lam = d.beta(1.0)
        cy, cx = d.int(h), d.int(w)
        half_h, half_w = int(0.5 * math.sqrt(1 - lam) * h), int(0.5 * math.sqrt(1 - lam) * w)
        y0, y1 = max(cy - half_h, 0), min(cy + half_h, h)
        x0, x1 = max(cx - half_w, 0), min(cx + half_w, w)
        want = x.copy()
        prev = [n - 1] + list(range(n - 1))
        want[:, :, y0:y1, x0:x1] = x[prev][:, :, y0:y1, x0:x1]
        kept = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        np.testing.assert_array_equal(gx.numpy(), want)
        np.testing.assert_allclose(gy.numpy(), kept * soft + (1 - kept) * soft[prev], atol=1e-6)


def test_mixup_and_cutmix_share_batches():
    cfg = A.parse_augment(["Mixup", "CutMix"])
    assert (cfg.mixup.p, cfg.cutmix.p) == (0.5, 0.5)
    assert A.parse_augment([{"name": "Mixup", "p": 0.2}, "CutMix"]).cutmix.p == pytest.approx(0.8)
    mix = A.parse_augment([{"name": "Mixup", "p": 0.3}, {"name": "CutMix", "p": 0.3}])
    t = A.batch_transform(mix)
    x = torch.rand(2, 1, 8, 8)
    y = torch.tensor([0, 1])
    kinds = {"none": 0, "mixup": 0, "cutmix": 0}
    for step in range(600):
        gx, _ = t(x, y, 2, A.batch_generator(0, 0, step))
        changed = ~torch.isclose(gx, x)
        kinds["none" if not changed.any() else "cutmix" if torch.equal(gx[changed], x.roll(1, 0)[changed])
              else "mixup"] += 1
    assert abs(kinds["mixup"] / 600 - 0.3) < 0.07 and abs(kinds["cutmix"] / 600 - 0.3) < 0.07


def test_batch_transform_none_without_batch_ops_and_targets_always_soft():
    assert A.batch_transform(A.parse_augment(["HorizontalFlip"])) is None
    t = A.batch_transform(A.parse_augment([{"name": "Mixup", "p": 0.0}]))
    x, y = torch.rand(3, 2), torch.tensor([1, 0, 1])
    gx, gy = t(x, y, 2, gen(0))
    assert torch.equal(gx, x) and torch.equal(gy, torch.tensor([[0.0, 1], [1, 0], [0, 1]]))
    with pytest.raises(ValueError, match=r"soft targets \[N, 2\]"):
        t(x, torch.rand(3, 5), 2, gen(0))


# ---------------------------------------------------------------- the whole pipeline

FULL = [{"name": "RandomResizedCrop", "scale": [0.3, 1.0]}, {"name": "RandomCrop", "padding": 2, "padding_mode": "reflect"},
        "HorizontalFlip", "VerticalFlip", {"name": "Rotation", "degrees": 20, "fill": 0.5},
        {"name": "ColorJitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1},
        {"name": "RandomErasing", "p": 0.5, "value": "random"}, "Mixup", "CutMix"]


@pytest.mark.parametrize("c", [1, 3])
def test_pipeline_shape_dtype_range_and_input_untouched(c):
    t = A.item_transform(A.parse_augment(FULL))
    for index in range(20):
        x = torch.rand(c, 13, 11)
        before = x.clone()
        out = t(x, A.item_generator(7, 2, index))
        assert out.shape == x.shape and out.dtype == torch.float32
        assert 0 <= float(out.min()) and float(out.max()) <= 1
        assert torch.equal(x, before)


def test_same_seed_epoch_index_same_output_in_any_order():
    t = A.item_transform(A.parse_augment(FULL))
    items = [torch.rand(3, 10, 10, generator=gen(i)) for i in range(6)]
    forward = [t(x, A.item_generator(3, 1, i)) for i, x in enumerate(items)]
    backward = {i: t(items[i], A.item_generator(3, 1, i)) for i in reversed(range(6))}
    assert all(torch.equal(forward[i], backward[i]) for i in range(6))
    x = items[0]
    others = [t(x, A.item_generator(3, 1, 1)), t(x, A.item_generator(3, 2, 0)), t(x, A.item_generator(4, 1, 0))]
    assert all(not torch.equal(forward[0], o) for o in others)


def test_generators_are_distinct_streams():
    first = {(s, e, i): torch.rand(4, generator=A.item_generator(s, e, i)).tolist()
             for s in range(3) for e in range(3) for i in range(3)}
    assert len({tuple(v) for v in first.values()}) == len(first)
    assert torch.rand(4, generator=A.batch_generator(0, 0, 0)).tolist() != first[(0, 0, 0)]
    for bad in [(-1, 0, 0), (0, 1.5, 0), (0, 0, True)]:
        with pytest.raises(ValueError, match="whole numbers >= 0"):
            A.item_generator(*bad)
    same = torch.rand(2, generator=A.item_generator(np.int64(1), torch.tensor(2), 3))
    assert torch.equal(same, torch.rand(2, generator=A.item_generator(1, 2, 3)))


# ---------------------------------------------------------------- settings and their checks

def test_forms_and_round_trip():
    cfg = A.parse_augment([{"name": "RandomResizedCrop", "scale": [0.5, 1]}, "HorizontalFlip",
                           {"name": "ColorJitter", "brightness": 0.2}, {"name": "Mixup", "alpha": 0.2}])
    assert cfg.random_resized_crop.scale == (0.5, 1.0) and cfg.horizontal_flip.p == 0.5
    assert cfg.color_jitter.brightness == (0.8, 1.2) and cfg.mixup.p == 1.0
    assert A.parse_augment(cfg.model_dump()) == cfg  # the stored form reads back the same
    assert A.parse_augment("HorizontalFlip") == A.parse_augment(["HorizontalFlip"])
    assert not A.parse_augment(None) and not A.parse_augment([]) and cfg
    assert cfg.describe() == ("RandomResizedCrop(scale=[0.5, 1], ratio=[0.75, 1.33333], p=1), HorizontalFlip(p=0.5), "
                              "ColorJitter(brightness=[0.8, 1.2], p=1), Mixup(alpha=0.2, p=1)")
    assert A.parse_augment([{"name": "RandomCrop", "padding": 2}]).describe() == \
        'RandomCrop(padding=2, fill=0, padding_mode="constant", p=1)'
    assert A.parse_augment([]).describe() == "none"
    assert A.parse_augment({"name": "Rotation", "degrees": 10}).rotation.degrees == (-10, 10)
    assert A.parse_augment([{"name": "RandomCrop", "padding": [1, 2]}]).random_crop.padding == (1, 2, 1, 2)
    with pytest.raises(Exception):
        cfg.mixup = None  # frozen


@pytest.mark.parametrize("value,message,hint", [
    (["Foo"], "unknown augmentation 'Foo'", "augmentations: RandomResizedCrop"),
    (["RandomHorizontalFlip"], "unknown augmentation 'RandomHorizontalFlip'", "torchvision's RandomHorizontalFlip is HorizontalFlip"),
    (["Mixpu"], "unknown augmentation 'Mixpu'", "did you mean 'Mixup'?"),
    ([{"name": "ColorJitter", "brightnes": 0.2}], "ColorJitter has no setting 'brightnes'", "did you mean 'brightness'?"),
    (["ColorJitter"], "ColorJitter changes nothing", None),
    (["Rotation"], "Rotation needs degrees", None),
    ([{"name": "RandomCrop", "padding": -1}], "padding must be whole numbers >= 0, got -1", None),
    ([{"name": "RandomCrop", "padding": [1, 2, 3]}], "padding must be p, [left/right, top/bottom] or", None),
    ([{"name": "RandomCrop", "padding_mode": "reflec"}], "did you mean 'reflect'?", None),
    ([{"name": "RandomResizedCrop", "scale": [0.9, 0.5]}], "scale must be [min, max] with min <= max, got [0.9, 0.5]", None),
    ([{"name": "RandomResizedCrop", "scale": [0, 1]}], "scale must lie within > 0 and <= 1, got [0, 1]", None),
    ([{"name": "RandomResizedCrop", "ratio": 2}], "ratio must be [min, max], got 2", None),
    ([{"name": "HorizontalFlip", "p": 1.5}], "HorizontalFlip: p must be >= 0 and <= 1, got 1.5", None),
    ([{"name": "HorizontalFlip", "p": True}], "p must be a number, got true", None),
    ([{"name": "ColorJitter", "hue": 0.7}], "hue must be <= 0.5, got 0.7", None),
    ([{"name": "ColorJitter", "brightness": -0.1}], "brightness must be >= 0, got -0.1", None),
    ([{"name": "Rotation", "degrees": [10, 400]}], "degrees must lie within >= -360 and <= 360", None),
    ([{"name": "RandomErasing", "value": "rand"}], 'or "random", got "rand"', None),
    ([{"name": "RandomErasing", "value": 2}], "value must lie within [0, 1]", None),
    ([{"name": "Mixup", "alpha": 0}], "Mixup: alpha must be > 0, got 0", None),
    ([{"name": "Mixup", "p": 0.7}, {"name": "CutMix", "p": 0.6}], "add up to 1.3", None),
    (["HorizontalFlip", "HorizontalFlip"], "HorizontalFlip is given twice", None),
    ([{"name": "Rotation", "degrees": 5}, "HorizontalFlip"], "HorizontalFlip must come before Rotation", None),
    (["Mixup", "HorizontalFlip"], "HorizontalFlip must come before Mixup", None),
    ([3], "item 1 must be an augmentation", None),
    ({"horizontal_flip": None, "flip": None}, "unknown field 'flip'", None),
])
def test_clear_errors(value, message, hint):
    with pytest.raises(ParamProblem) as e:
        A.parse_augment(value)
    d = e.value.diagnostics[0]
    assert d.message.startswith("augment: ") and message in d.message
    if hint:
        assert hint in d.hint


def test_check_input_and_loss():
    cfg = A.parse_augment([{"name": "RandomCrop", "fill": [0, 0, 0]}, {"name": "ColorJitter", "hue": 0.1}, "Mixup"])
    A.check_input(cfg, (3, 32, 32))
    with pytest.raises(ParamProblem, match="need images \\[C, H, W\\], but the input has items of shape \\[64\\]"):
        A.check_input(cfg, (64,))
    with pytest.raises(ParamProblem, match="RandomCrop's fill gives 3 values, but the input has 1 channel"):
        A.check_input(cfg, (1, 32, 32))
    with pytest.raises(ParamProblem, match="need 1 or 3 channels, but image has 4"):
        A.check_input(A.parse_augment([{"name": "ColorJitter", "contrast": 0.1}]), (4, 8, 8), "image")
    A.check_input(A.parse_augment([{"name": "ColorJitter", "brightness": 0.1}]), (4, 8, 8))
    A.check_input(A.parse_augment(["Mixup"]), (64,))  # Mixup alone needs no image
    A.check_loss(cfg, ["CrossEntropy"])
    A.check_loss(A.parse_augment(["HorizontalFlip"]), ["NLL"])
    with pytest.raises(ParamProblem, match="Mixup make soft targets .* which NLL cannot read"):
        A.check_loss(cfg, ["NLL"])


SPEC = textwrap.dedent("""\
    network N(classes = 10) {
        input image: float32[N, 3, 8, 8]
        output logits = image -> Flatten -> Linear(classes)
    }
    loss CrossEntropy(logits, label)
    train {
        optimizer = SGD(lr=0.1)
        augment = [RandomResizedCrop(scale=[0.5, 1.0]), HorizontalFlip, ColorJitter(%s), Mixup(alpha=0.2)]
    }
    """)


@pytest.fixture
def train_block_with_augment(monkeypatch):
    """A TrainConfig with the augment field, as train wires it in."""
    from netspec import trainconfig

    class WithAugment(trainconfig.TrainConfig):
        augment: A.Augment = A.Augment()

    monkeypatch.setattr(trainconfig, "TrainConfig", WithAugment)


def test_spec_list_form_checks_and_errors_are_located(train_block_with_augment, tmp_path):
    import netspec

    good = tmp_path / "good.net"
    good.write_text(SPEC % "brightness=0.2")
    cfg = netspec.load(str(good)).graph.graph["train"].augment
    assert cfg.color_jitter.brightness == (0.8, 1.2) and cfg.mixup.alpha == 0.2
    bad = tmp_path / "bad.net"
    bad.write_text(SPEC % "brightnes=0.2")
    with pytest.raises(NetspecError) as e:
        netspec.load(str(bad))
    text = e.value.render()
    col = (SPEC % "brightnes=0.2").splitlines()[7].index("0.2") + 1
    assert f"bad.net:8:{col}: error: train: augment: ColorJitter has no setting 'brightnes'" in text
    assert "did you mean 'brightness'?" in text
    text = (SPEC % "hue=0.1").replace("HorizontalFlip", "RandomHorizontalFlip")
    bad.write_text(text)
    with pytest.raises(NetspecError) as e:
        netspec.load(str(bad))
    d = e.value.diagnostics[0]
    assert (d.span.line, d.span.col) == (8, text.splitlines()[7].index("RandomHorizontalFlip") + 1)
    assert "unknown augmentation 'RandomHorizontalFlip'" in d.message and "is HorizontalFlip here" in d.hint
    text = (SPEC % "hue=0.1").replace("HorizontalFlip, ColorJitter(hue=0.1)", "ColorJitter(hue=0.1), HorizontalFlip")
    bad.write_text(text)
    with pytest.raises(NetspecError) as e:
        netspec.load(str(bad))
    d = e.value.diagnostics[0]
    assert (d.span.line, d.span.col) == (8, text.splitlines()[7].index("HorizontalFlip") + 1)
    assert d.message == "train: augment: HorizontalFlip must come before ColorJitter"
    assert d.hint.startswith("augmentations run in this order: RandomResizedCrop, RandomCrop, HorizontalFlip")


def test_settings_do_not_import_torch():
    code = ("import sys, netspec.augment as a; a.parse_augment(['HorizontalFlip', 'Mixup']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stored_json_form_reads_back_the_same():
    import json

    cfg = A.parse_augment(FULL)
    stored = json.loads(json.dumps(cfg.model_dump(mode="json")))
    assert A.parse_augment(stored) == cfg


def test_transforms_travel_to_spawned_workers():
    # DataLoader workers started by spawn receive the dataset, and its transform, pickled.
    import pickle

    t = A.item_transform(A.parse_augment(FULL))
    b = A.batch_transform(A.parse_augment(FULL))
    t2, b2 = pickle.loads(pickle.dumps(t)), pickle.loads(pickle.dumps(b))
    x = torch.rand(3, 9, 9)
    assert torch.equal(t(x, A.item_generator(0, 0, 5)), t2(x, A.item_generator(0, 0, 5)))
    xb, yb = torch.rand(4, 3, 9, 9), torch.tensor([0, 1, 2, 0])
    assert all(torch.equal(u, v) for u, v in zip(b(xb, yb, 3, A.batch_generator(0, 0, 1)),
                                                 b2(xb, yb, 3, A.batch_generator(0, 0, 1))))


def test_refuses_what_is_not_a_float_image():
    t = A.item_transform(A.parse_augment(["HorizontalFlip"]))
    with pytest.raises(ValueError, match="expected one float image"):
        t(torch.zeros(3, 4, 4, dtype=torch.uint8), gen(0))
    with pytest.raises(ValueError, match="expected one float image"):
        t(torch.zeros(2, 3, 4, 4), gen(0))


@settings(max_examples=40, deadline=None)
@given(c=st.sampled_from([1, 3]), h=st.integers(1, 9), w=st.integers(1, 9), n=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), pad=st.integers(1, 12),
       mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]))
def test_any_small_image_keeps_shape_and_range(c, h, w, n, seed, pad, mode):
    ops = [dict(FULL[0]), {"name": "RandomCrop", "padding": pad, "padding_mode": mode}] + FULL[2:]
    ops[6] = {"name": "RandomErasing", "p": 1.0, "scale": [0.02, 0.9]}
    cfg = A.parse_augment(ops)
    x = torch.rand(c, h, w, generator=gen(seed))
    out = A.item_transform(cfg)(x, A.item_generator(seed, 0, 0))
    assert out.shape == x.shape and out.dtype == x.dtype and bool(out.isfinite().all())
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    xb = torch.rand(n, c, h, w, generator=gen(seed))
    gx, gy = A.batch_transform(cfg)(xb, torch.arange(n) % 2, 2, A.batch_generator(seed, 0, 0))
    assert gx.shape == xb.shape and gy.shape == (n, 2)
    assert torch.allclose(gy.sum(1), torch.ones(n)) and bool((gy >= 0).all())


def test_item_transforms_do_not_depend_on_workers_or_order():
    from torch.utils.data import DataLoader

    x = torch.rand(12, 3, 8, 8, generator=gen(0))
    t = A.item_transform(A.parse_augment([{"name": "RandomCrop", "padding": 2}, "HorizontalFlip",
                                          {"name": "ColorJitter", "brightness": 0.3}]))

    class Items:  # what a training split wrapped for augmentation does
        epoch = 0

        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return t(x[i], A.item_generator(5, self.epoch, i)), i

    items = Items()

    def epoch(e, workers, shuffle):
        items.epoch = e
        out = torch.empty_like(x)
        for xb, ib in DataLoader(items, batch_size=5, num_workers=workers, shuffle=shuffle,
                                 generator=gen(e) if shuffle else None):
            out[ib] = xb
        return out

    first = epoch(0, 0, False)
    assert torch.equal(first, epoch(0, 2, True))  # two worker processes, another order: the same items
    assert not torch.equal(first, epoch(1, 0, False))  # the next epoch draws anew


def test_color_jitter_refuses_data_outside_unit_range():
    from netspec.errors import DataProblem

    t = A.item_transform(A.parse_augment([{"name": "ColorJitter", "brightness": 0.3}]))
    with pytest.raises(DataProblem, match=r"values in \[0, 255\], but ColorJitter works on pixels in \[0, 1\]"):
        t(torch.full((3, 4, 4), 255.0).index_fill(2, torch.tensor([0]), 0), gen(0))
    flip = A.item_transform(A.parse_augment([{"name": "HorizontalFlip", "p": 1.0}]))
    assert torch.equal(flip(torch.full((1, 1, 2), 255.0), gen(0)), torch.full((1, 1, 2), 255.0))
