"""MTLoRA/DiTASK data pipeline (degmix_tuning/data/mtlora_transforms.py): flip, scale+rotate, resize to a fixed size,
ignore regions, uint8 cast, normalisation, as github.com/scale-lab/MTLoRA data/custom_transforms.py does it.

These are behavioural checks that need no OpenCV; the bit-level comparison with MTLoRA's own OpenCV code is
`python tests/fixtures/mtlora_protocol/generate.py <MTLoRA checkout> --check-transforms`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from degmix_tuning.data.mtlora_transforms import (
    MTLoRAEvalTransform, MTLoRATrainTransform, cast_uint8, fixed_resize, resize_cubic, to_mtlora_encoding,
)
from degmix_tuning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, to_tensors

IGNORE = 255
PASCAL_KEYS = ("image", "semseg", "human_parts", "sal", "normals", "edge")


def pascal_sample(h=30, w=40, seed=0, parts=True) -> dict:
    """A to_tensors() sample in the readers' convention (255 marks already set)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    semseg = ((xx // 7 + yy // 5) % 21).astype(np.uint8)
    semseg[::6, :] = IGNORE
    human_parts = ((xx // 4 + yy // 9) % 7).astype(np.uint8) if parts else np.full((h, w), IGNORE, np.uint8)
    sal = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 3) ** 2).astype(np.uint8)
    edge = np.zeros((h, w), np.float32)
    edge[h // 2, :] = 1
    n = rng.normal(size=(h, w, 3))
    n[..., 2] = np.abs(n[..., 2]) + 0.5
    n = (n / np.linalg.norm(n, axis=2, keepdims=True)).astype(np.float32)
    n[:, : w // 4] = IGNORE  # a wide invalid band on the left
    return to_tensors(dict(image=image, semseg=semseg, human_parts=human_parts, sal=sal, edge=edge, normals=n))


def nyud_sample(h=24, w=32, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1.0, 5.0, (h, w)).astype(np.float32)
    depth[:, ::5] = IGNORE
    semseg = rng.integers(0, 40, (h, w)).astype(np.uint8)
    semseg[0] = IGNORE
    n = rng.normal(size=(h, w, 3))
    n = (n / np.linalg.norm(n, axis=2, keepdims=True)).astype(np.float32)
    return to_tensors(dict(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), semseg=semseg, depth=depth,
                           normals=n, edge=(rng.random((h, w)) > 0.8).astype(np.float32)))


def values(t: torch.Tensor) -> set:
    return set(torch.unique(t).tolist())


# ------------------------------------------------------------------------------------------------ shapes, dtypes
@pytest.mark.parametrize("size", [(48, 48), (20, 36)])
def test_train_and_eval_output_sizes_and_dtypes(size):
    sample = pascal_sample()
    train = MTLoRATrainTransform(size=size)(sample, np.random.default_rng(0))
    for out in (train, MTLoRAEvalTransform(size=size)(sample)):
        assert out["image"].shape == (3, *size) and out["image"].dtype == torch.float32
        for key in ("semseg", "human_parts", "sal"):
            assert out[key].shape == size and out[key].dtype == torch.int64
        assert out["normals"].shape == (3, *size) and out["normals"].dtype == torch.float32
        assert out["edge"].shape == (1, *size) and out["edge"].dtype == torch.float32


def test_other_keys_pass_through():
    sample = pascal_sample()
    sample["id"] = "2008_000002"
    out = MTLoRATrainTransform(size=(16, 16))(sample, np.random.default_rng(0))
    assert out["id"] == "2008_000002"


def test_eval_is_identity_at_native_size():
    """Eval at the input size: labels unchanged, the image only normalised, valid normals renormalised."""
    sample = pascal_sample()
    out = MTLoRAEvalTransform(size=(30, 40))(sample)
    for key in ("semseg", "human_parts", "sal", "edge"):
        assert torch.equal(out[key], sample[key]), key
    assert torch.allclose(out["image"], normalize(sample["image"], IMAGENET_MEAN, IMAGENET_STD), atol=1e-6)
    valid = (sample["normals"] != IGNORE).all(0)
    assert torch.equal((out["normals"] == IGNORE).all(0), ~valid)
    assert torch.allclose(out["normals"][:, valid], sample["normals"][:, valid], atol=1e-6)


# ----------------------------------------------------------------------------------------------- label values
@pytest.mark.parametrize("seed", range(4))
def test_nearest_labels_keep_label_values(seed):
    """Nearest interpolation never invents a class: outputs hold input values, the warp's fill 0, and 255."""
    sample = pascal_sample(seed=seed)
    rng = np.random.default_rng(seed)
    out = MTLoRATrainTransform(size=(50, 44))(sample, rng)
    for key in ("semseg", "human_parts", "sal", "edge"):
        assert values(out[key]) <= values(sample[key]) | {0, IGNORE}, key
    ev = MTLoRAEvalTransform(size=(50, 44))(sample)
    for key in ("semseg", "human_parts", "sal", "edge"):
        assert values(ev[key]) <= values(sample[key]), key
    assert IGNORE in values(ev["semseg"])  # semseg's own ignore rows survive the resize


def test_nearest_resize_index_rule():
    """cv2.INTER_NEAREST: source index floor(i * in / out) (no half-pixel offset)."""
    ramp = torch.arange(10, dtype=torch.uint8).repeat(3, 1).numpy()
    sample = to_tensors(dict(image=np.zeros((3, 10, 3), np.uint8), semseg=ramp))
    out = MTLoRAEvalTransform(size=(3, 4))(sample)
    assert out["semseg"][0].tolist() == [0, 2, 5, 7]
    up = to_tensors(dict(image=np.zeros((3, 3, 3), np.uint8), semseg=ramp[:, :3]))
    assert MTLoRAEvalTransform(size=(3, 7))(up)["semseg"][0].tolist() == [0, 0, 0, 1, 1, 2, 2]


# ------------------------------------------------------------------------------------------------ geometry
def test_flip_mirrors_and_negates_normals_x():
    sample = pascal_sample()
    out = MTLoRATrainTransform(size=(30, 40)).apply(sample, flip=True, angle=0.0, scale=1.0)
    ref = MTLoRAEvalTransform(size=(30, 40))(sample)
    for key in ("image", "semseg", "human_parts", "sal", "edge"):
        assert torch.equal(out[key], ref[key].flip(-1)), key
    valid = (ref["normals"] != IGNORE).all(0).flip(-1)
    assert torch.equal((out["normals"] == IGNORE).all(0), ~valid)
    flipped = ref["normals"].flip(-1)
    assert torch.allclose(out["normals"][0][valid], -flipped[0][valid], atol=1e-6)
    assert torch.allclose(out["normals"][1:, valid], flipped[1:, valid], atol=1e-6)


def test_rotation_is_counter_clockwise_about_w2_h2():
    """cv2.getRotationMatrix2D((w/2, h/2), +90, 1): the pixel right of the centre goes above it."""
    h = w = 32
    semseg = np.zeros((h, w), np.uint8)
    semseg[16, 28] = 7
    sample = to_tensors(dict(image=np.zeros((h, w, 3), np.uint8), semseg=semseg))
    out = MTLoRATrainTransform(size=(h, w)).apply(sample, flip=False, angle=90.0, scale=1.0)
    assert out["semseg"][4, 16] == 7 and int((out["semseg"] == 7).sum()) == 1


def test_normals_rotate_with_the_image():
    """A uniform normal field rotated by a: (n0, n1) -> (n0 cos a + n1 sin a, n1 cos a - n0 sin a), n2 kept."""
    h = w = 32
    n = np.zeros((h, w, 3), np.float32)
    n[..., 0], n[..., 2] = 0.6, 0.8
    sample = to_tensors(dict(image=np.zeros((h, w, 3), np.uint8), normals=n))
    a = 30.0
    out = MTLoRATrainTransform(size=(h, w)).apply(sample, flip=False, angle=a, scale=1.0)
    c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
    centre = out["normals"][:, 12:20, 12:20].reshape(3, -1)
    expected = torch.tensor([0.6 * c, -0.6 * s, 0.8])
    assert torch.allclose(centre, expected[:, None].expand_as(centre), atol=1e-6)


def test_zoom_out_fills_with_zero_not_ignore():
    """scale < 1 leaves a border: semseg/parts/sal/edge 0 (background), image black, normals and depth ignore."""
    sample = pascal_sample()
    sample["semseg"][:] = 3
    out = MTLoRATrainTransform(size=(30, 40)).apply(sample, flip=False, angle=0.0, scale=0.75)
    for key in ("semseg", "human_parts", "sal"):
        assert out[key][0, 0] == 0, key
    assert out["edge"][0, 0, 0] == 0
    assert (out["normals"][:, 0, -1] == IGNORE).all()
    black = normalize(torch.zeros(3, 1, 1), IMAGENET_MEAN, IMAGENET_STD)[:, 0, 0]
    assert torch.allclose(out["image"][:, 0, 0], black)
    assert out["semseg"][15, 20] == 3


def test_depth_is_divided_by_the_zoom_and_ignore_kept():
    sample = nyud_sample()
    sample["depth"] = torch.where(sample["depth"] == IGNORE, sample["depth"], torch.full_like(sample["depth"], 2.0))
    out = MTLoRATrainTransform(size=(24, 32), dataset="nyud").apply(sample, flip=False, angle=0.0, scale=1.25)
    d = out["depth"]
    assert torch.allclose(d[d != IGNORE], torch.tensor(1.6))
    assert (d == IGNORE).any() and (d != IGNORE).any()


def test_depth_resize_is_nearest_and_zoom_in_has_no_border():
    sample = nyud_sample()
    out = MTLoRATrainTransform(size=(48, 64), dataset="nyud").apply(sample, flip=False, angle=0.0, scale=1.5)
    valid = out["depth"][out["depth"] != IGNORE]
    src = sample["depth"][sample["depth"] != IGNORE] / 1.5
    assert values(valid) <= values(src)


# ------------------------------------------------------------------------------------------------ ignore regions
def test_person_free_parts_map_stays_ignore():
    sample = pascal_sample(parts=False)
    for out in (MTLoRATrainTransform(size=(20, 20))(sample, np.random.default_rng(0)),
                MTLoRAEvalTransform(size=(20, 20))(sample)):
        assert (out["human_parts"] == IGNORE).all()


def test_parts_zoomed_out_of_view_become_ignore():
    """MTLoRA's AddIgnoreRegions marks an all-background parts map 255: a person only in a corner, zoomed away."""
    h, w = 40, 40
    parts = np.zeros((h, w), np.uint8)
    parts[:3, :3] = 2
    sample = to_tensors(dict(image=np.zeros((h, w, 3), np.uint8), human_parts=parts))
    t = MTLoRATrainTransform(size=(h, w))
    assert (t.apply(sample, flip=False, angle=0.0, scale=1.25)["human_parts"] == IGNORE).all()
    kept = t.apply(sample, flip=False, angle=0.0, scale=1.0)["human_parts"]
    assert values(kept) == {0, 2}


def test_normals_unit_length_and_invalid_band_stays_ignore():
    sample = pascal_sample()
    out = MTLoRATrainTransform(size=(45, 60)).apply(sample, flip=False, angle=7.0, scale=1.1)
    n = out["normals"]
    invalid = (n == IGNORE).all(0)
    assert torch.equal(invalid, (n == IGNORE).any(0))  # ignore is all three channels
    assert invalid[:, :5].all()  # deep inside the invalid band
    norms = n[:, ~invalid].norm(dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_to_mtlora_encoding_zeroes_reader_marks():
    sample = nyud_sample()
    raw = to_mtlora_encoding(sample)
    assert (raw["depth"][sample["depth"] == IGNORE] == 0).all()
    assert raw["depth"].dtype == torch.float64 and raw["image"].dtype == torch.float64
    assert torch.equal(raw["semseg"], sample["semseg"].double())  # semseg keeps its 255


# ------------------------------------------------------------------------------------------------ image values
def test_uint8_cast_wraps_like_numpy_on_x86():
    x = torch.tensor([-1.5, -0.3, 127.9, 255.4, 256.5, 300.2], dtype=torch.float64)
    assert cast_uint8(x, "wrap").tolist() == [255.0, 0.0, 127.0, 255.0, 0.0, 44.0]
    assert cast_uint8(x, "clamp").tolist() == [0.0, 0.0, 127.0, 255.0, 255.0, 255.0]
    with pytest.raises(ValueError):
        cast_uint8(x, "round")


def test_cubic_overshoot_wraps_in_the_image():
    """A black/white step upsampled with the cubic kernel undershoots below 0: MTLoRA's uint8 cast makes it 255."""
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, 4:] = 255
    sample = to_tensors(dict(image=img))
    wrap = MTLoRAEvalTransform(size=(4, 32))(sample)["image"]
    clamp = MTLoRAEvalTransform(size=(4, 32), image_cast="clamp")(sample)["image"]
    row_w, row_c = wrap[0, 0], clamp[0, 0]
    u8_wrap = row_w * IMAGENET_STD[0] * 255 + IMAGENET_MEAN[0] * 255  # back to 0..255
    u8_clamp = row_c * IMAGENET_STD[0] * 255 + IMAGENET_MEAN[0] * 255
    undershoot = u8_clamp[:16].round() == 0  # the dark half, next to the step
    assert (u8_wrap[:16][undershoot] >= 240).any()  # -1 .. -15 became 255 .. 241
    overshoot = u8_clamp[16:].round() == 255  # the bright half: 256 .. 280 became 0 .. 24
    assert (u8_wrap[16:][overshoot] <= 30).any()
    same = ~torch.cat([undershoot, overshoot])
    assert torch.allclose(u8_wrap[same], u8_clamp[same], atol=1e-3)  # in-range values agree


def test_resize_cubic_is_half_pixel_bicubic():
    """OpenCV's INTER_CUBIC: within float32 weight precision of torch's bicubic (a = -0.75, align_corners=False)."""
    v = torch.rand(2, 13, 17, dtype=torch.float64) * 255
    ours = resize_cubic(v, (29, 8))
    ref = F.interpolate(v[None], size=(29, 8), mode="bicubic", align_corners=False)[0]
    assert torch.allclose(ours, ref, atol=0.01)
    const = resize_cubic(torch.full((1, 5, 6), 100.0, dtype=torch.float64), (11, 3))
    assert torch.allclose(const, torch.full_like(const, 100.0), atol=1e-4)


def test_fixed_resize_skips_same_size_cubic():
    raw = to_mtlora_encoding(pascal_sample())
    out = fixed_resize(raw, (30, 40))
    assert torch.equal(out["image"], raw["image"])


# ------------------------------------------------------------------------------------------------ randomness
def test_same_generator_state_gives_same_sample():
    sample = pascal_sample()
    t = MTLoRATrainTransform(size=(32, 32))
    a = t(sample, np.random.default_rng(123))
    b = t(sample, np.random.default_rng(123))
    for key in PASCAL_KEYS:
        assert torch.equal(a[key], b[key]), key
    c = t(sample, np.random.default_rng(124))
    assert not torch.equal(a["image"], c["image"])


def test_draws_follow_mtlora_ranges():
    rng = np.random.default_rng(0)
    draws = [MTLoRATrainTransform().draw(rng) for _ in range(2000)]
    flips, angles, scales = zip(*draws)
    assert 0.45 < np.mean(flips) < 0.55
    assert min(angles) >= -20 and max(angles) < 20 and min(angles) < -19 and max(angles) > 19
    assert min(scales) >= 0.75 and max(scales) < 1.25
    nyud = [MTLoRATrainTransform(dataset="nyud").draw(rng) for _ in range(300)]
    assert {a for _, a, _ in nyud} == {0.0} and {s for _, _, s in nyud} == {1.0, 1.2, 1.5}


def test_draw_order_flip_then_angle_then_scale():
    seed = 7
    flip, angle, scale = MTLoRATrainTransform().draw(np.random.default_rng(seed))
    u = np.random.default_rng(seed).random(3)
    assert flip == (u[0] < 0.5)
    assert angle == pytest.approx(40 * u[1] - 20) and scale == pytest.approx(0.5 * u[2] + 0.75)


def test_flip_disabled_draws_no_flip_number():
    """flip=False consumes no draw, so the angle and scale come from the first two numbers."""
    flip, angle, _ = MTLoRATrainTransform(flip=False).draw(np.random.default_rng(3))
    u = np.random.default_rng(3).random(1)
    assert not flip and angle == pytest.approx(40 * u[0] - 20)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="centred"):
        MTLoRATrainTransform(scale_range=(0.5, 2.0))
    with pytest.raises(ValueError, match="not both"):
        MTLoRATrainTransform(rotation_range=(-10, 10), rotation_choices=(0,))
    with pytest.raises(ValueError):
        MTLoRATrainTransform(dataset="cityscapes")
    with pytest.raises(ValueError):
        MTLoRAEvalTransform(image_cast="round")


def test_is_random_flags():
    assert MTLoRATrainTransform.is_random is True
    assert MTLoRAEvalTransform.is_random is False
