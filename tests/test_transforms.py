"""Joint transforms: flips, scaling, cropping and padding move image and labels together with the right ignore
values; depth and normals are corrected geometrically; the pipelines produce collatable tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from degmix_tuning.data import DataConfig, build_dataset
from degmix_tuning.data.transforms import (
    IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, center_pad, hflip, normalize,
    photometric_distortion, random_crop, random_scale, resize, to_tensors,
)


def _raw(h=6, w=8):
    """Image whose red channel encodes the semseg class (x20) and green channel the depth (x40)."""
    seg = ((np.arange(w)[None, :] // 2 + 3 * (np.arange(h)[:, None] // 3)) % 12).astype(np.uint8)  # 3x2 blocks
    depth = (1.0 + 0.25 * seg).astype(np.float32)
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 0] = np.where(np.arange(w) < w // 2, 0.6, -0.6)[None]
    normals[..., 2] = 0.8
    normals[0, 0] = 255  # an invalid normal
    edge = (np.arange(w) % 2 == 0).astype(np.float32)[None].repeat(h, 0)
    image = np.stack([seg * 20, (depth * 40).astype(np.uint8), np.zeros_like(seg)], -1).astype(np.uint8)
    return {"id": "x", "image": image, "semseg": seg, "depth": depth, "normals": normals, "edge": edge}


class ScriptedRng:
    """A stand-in numpy Generator returning scripted values, to pin every random decision."""

    def __init__(self, integers=(), uniform=(), random=()):
        self._i, self._u, self._r = list(integers), list(uniform), list(random)

    def integers(self, low, high=None):
        v = self._i.pop(0)
        lo, hi = (0, low) if high is None else (low, high)
        assert lo <= v < hi, (v, lo, hi)
        return v

    def uniform(self, low, high):
        v = self._u.pop(0)
        assert low <= v <= high
        return v

    def random(self):
        return self._r.pop(0)


def test_hflip_mirrors_every_label_and_negates_valid_normals_x():
    s = to_tensors(_raw())
    f = hflip(s)
    assert torch.equal(f["semseg"], s["semseg"].flip(-1))
    assert torch.equal(f["image"], s["image"].flip(-1))
    assert torch.equal(f["edge"], s["edge"].flip(-1))
    # pixel (2, 1) came from (2, 6): x was -0.6, becomes +0.6; y/z unchanged
    assert f["normals"][0, 2, 1].item() == pytest.approx(0.6)
    assert f["normals"][2, 2, 1].item() == pytest.approx(0.8)
    # the invalid normal (0, 0) moved to (0, 7) and stayed 255 on all channels
    assert (f["normals"][:, 0, 7] == 255).all()


def test_scaling_divides_valid_depth_and_keeps_ignore():
    raw = _raw()
    raw["depth"][1, 1] = 255  # invalid
    s = to_tensors(raw)
    out = resize(s, (12, 16), depth_divisor=2.0)
    assert out["image"].shape == (3, 12, 16) and out["semseg"].shape == (12, 16)
    # nearest x2: pixel (2r, 2c) copies (r, c)
    assert torch.equal(out["semseg"][::2, ::2], s["semseg"])
    assert out["depth"][0, 0, 0].item() == pytest.approx(raw["depth"][0, 0] / 2.0)
    assert out["depth"][0, 2, 2].item() == 255 and out["depth"][0, 3, 3].item() == 255
    # random_scale draws s ~ U(lo, hi) and maps (h, w) -> (int(h s), int(w s))
    rng = ScriptedRng(uniform=[1.5])
    z = random_scale(s, rng, (0.5, 2.0))
    assert z["image"].shape[-2:] == (9, 12)
    assert z["depth"][0, 0, 0].item() == pytest.approx(raw["depth"][0, 0] / 1.5)


def test_colour_coded_image_stays_aligned_with_labels_through_the_train_pipeline():
    raw = _raw(24, 32)
    raw["semseg"] = np.kron(np.arange(12).reshape(3, 4), np.ones((8, 8))).astype(np.uint8)
    raw["image"][..., 0] = raw["semseg"] * 20
    t = TrainTransform(crop_size=(20, 20), scale_range=(0.7, 1.6), photometric=False, cat_max_ratio=1.0)
    for seed in range(12):
        out = t(to_tensors(raw), np.random.default_rng(seed))
        red = out["image"][0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # back to [0, 1]
        decoded = torch.round(red * 255 / 20).long()
        seg = out["semseg"]
        # interior pixels (all 8 neighbours share the label): bilinear only blends same-coloured source pixels
        # there, so the colour must decode to exactly the label; a 1-pixel misalignment would break this
        pad = torch.nn.functional.pad(seg[None, None].float(), (1, 1, 1, 1), value=-1)[0, 0]
        same = torch.stack([pad[1 + dr:1 + dr + 20, 1 + dc:1 + dc + 20] == seg
                            for dr in (-1, 0, 1) for dc in (-1, 0, 1)]).all(0)
        interior = same & (seg != 255)
        assert interior.sum() > 60, seed
        assert torch.equal(decoded[interior], seg[interior]), seed
        assert (out["image"][:, seg == 255] == 0).all()  # padding: image 0 where labels are 255


def test_unscaled_crop_and_flip_keep_exact_alignment():
    raw = _raw(12, 16)
    t = TrainTransform(crop_size=(8, 8), scale_range=(1.0, 1.0), photometric=False, cat_max_ratio=1.0)
    for seed in range(6):
        out = t(to_tensors(raw), np.random.default_rng(seed))
        red = out["image"][0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        assert torch.equal(torch.round(red * 255 / 20).long(), out["semseg"])
        green = out["image"][1] * IMAGENET_STD[1] + IMAGENET_MEAN[1]
        assert torch.allclose(torch.floor(out["depth"][0] * 40), torch.round(green * 255), atol=0)


def test_random_crop_redraws_until_no_class_dominates():
    s = to_tensors(_raw(4, 20))
    s["semseg"] = torch.zeros(4, 20, dtype=torch.long)
    s["semseg"][:, 16:] = 1  # class 1 only in the last 4 columns
    # crop 4x8: offsets 0 and 2 are all class 0; offset 12 has 4 columns of each class (ratio 0.5)
    rng = ScriptedRng(integers=[0, 0, 0, 2, 0, 12])
    out = random_crop(s, (4, 8), rng, cat_max_ratio=0.75)
    assert torch.equal(out["semseg"][0], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    # with the check off the first draw is kept
    out = random_crop(s, (4, 8), ScriptedRng(integers=[0, 0]), cat_max_ratio=1.0)
    assert (out["semseg"] == 0).all()
    # all 11 draws bad: the last one is used
    out = random_crop(s, (4, 8), ScriptedRng(integers=[0, 1] * 10 + [0, 3]), cat_max_ratio=0.75)
    assert torch.equal(out["image"], s["image"][:, :, 3:11])


def test_crop_of_small_image_then_pad_uses_ignore_values():
    s = to_tensors(_raw(4, 6))
    t = TrainTransform(crop_size=(8, 10), scale_range=(1.0, 1.0), flip=False, photometric=False)
    out = t(s, np.random.default_rng(0))
    assert out["image"].shape == (3, 8, 10)
    top, left = 2, 2  # (8-4)//2, (10-6)//2
    for key in ("semseg", "depth", "normals", "edge"):
        v = out[key]
        pad = torch.ones(8, 10, dtype=torch.bool)
        pad[top:top + 4, left:left + 6] = False
        assert (v[..., pad] == 255).all(), key
    assert (out["image"][:, 0, :] == 0).all() and (out["image"][:, :, 9] == 0).all()
    assert torch.equal(out["semseg"][top:top + 4, left:left + 6], s["semseg"])


def test_eval_pad_geometry_and_too_large_error():
    s = to_tensors(_raw(3, 5))
    out = EvalTransform(pad_size=(6, 8))(s)
    # dh = 3 -> top 1, bottom 2; dw = 3 -> left 1, right 2
    assert torch.equal(out["semseg"][1:4, 1:6], s["semseg"])
    assert (out["semseg"][0] == 255).all() and (out["semseg"][4:] == 255).all()
    assert (out["semseg"][:, 0] == 255).all() and (out["semseg"][:, 6:] == 255).all()
    assert (out["depth"][0, 0] == 255).all() and (out["normals"][:, 5, 7] == 255).all()
    assert torch.allclose(out["image"][:, 1:4, 1:6], normalize(s["image"]))
    assert (out["image"][:, 0] == 0).all()
    with pytest.raises(ValueError, match=r"data.crop_size"):
        EvalTransform(pad_size=(2, 8))(s)


def test_normalize_and_photometric_brightness():
    img = torch.tensor(IMAGENET_MEAN).view(3, 1, 1).expand(3, 2, 2) * 255
    assert torch.allclose(normalize(img), torch.zeros(3, 2, 2), atol=1e-6)
    base = torch.full((3, 2, 2), 100.0)
    # brightness on (+10), contrast-after mode, saturation off, hue off, contrast off
    out = photometric_distortion(base, ScriptedRng(integers=[1, 0, 0, 0, 0], uniform=[10.0]))
    assert torch.equal(out, torch.full((3, 2, 2), 110.0))
    # contrast first, x1.5, clipped at 255
    out = photometric_distortion(torch.full((3, 1, 1), 200.0), ScriptedRng(integers=[0, 1, 1, 0, 0], uniform=[1.5]))
    assert torch.equal(out, torch.full((3, 1, 1), 255.0))


def test_center_pad_rejects_larger_input():
    with pytest.raises(ValueError, match="larger than the pad size"):
        center_pad(to_tensors(_raw(6, 8)), (4, 8))


def test_build_dataset_samples_collate_and_workers_differ(tmp_path):
    from test_data_readers import fake_indoor_scene

    from degmix_tuning.data.synthetic.writer import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "r", n=6, flavour="nyud", seed=1, size=(24, 32),
                                   render_fn=fake_indoor_scene)
    cfg = DataConfig(dataset="nyud", root=str(root), crop_size=(16, 20), num_workers=0)
    train = build_dataset(cfg, "train", ("semseg", "depth", "normals", "edge"), train=True)
    s = train[0]
    assert s["image"].shape == (3, 16, 20) and s["image"].dtype == torch.float32
    assert s["semseg"].shape == (16, 20) and s["semseg"].dtype == torch.int64
    assert s["depth"].shape == (1, 16, 20) and s["normals"].shape == (3, 16, 20) and s["edge"].shape == (1, 16, 20)
    assert s["meta"]["size"] == (24, 32) and s["meta"]["id"] == train.reader.ids[0]
    torch.manual_seed(5)
    a = build_dataset(cfg, "train", ("semseg",), train=True)[1]
    torch.manual_seed(5)
    b = build_dataset(cfg, "train", ("semseg",), train=True)[1]
    torch.manual_seed(6)
    c = build_dataset(cfg, "train", ("semseg",), train=True)[1]
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert "depth" not in a  # semseg-only request
    # DataLoader workers draw different augmentations of the same raw sample
    same = torch.utils.data.Subset(train, [0, 0, 0, 0])
    loader = torch.utils.data.DataLoader(same, batch_size=1, num_workers=2)
    images = [b["image"] for b in loader]
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[0], images[2])
    cfg_eval = DataConfig(dataset="nyud", root=str(root), crop_size=(26, 34))
    val = build_dataset(cfg_eval, "val", ("depth",), train=False)
    state = torch.get_rng_state()
    val[0]
    assert torch.equal(state, torch.get_rng_state())  # evaluation does not consume the training RNG
    batch = torch.utils.data.default_collate([val[0], val[1]])
    assert batch["image"].shape == (2, 3, 26, 34) and batch["depth"].shape == (2, 1, 26, 34)
    assert (batch["depth"][:, :, 0] == 255).all()  # centre pad row
    with pytest.raises(ValueError, match="data.crop_size"):
        build_dataset(DataConfig(dataset="nyud", root=str(root), crop_size=(20, 32)), "val", ("depth",), False)[0]
    # max_samples cuts the split
    assert len(build_dataset(DataConfig(dataset="nyud", root=str(root), max_samples=2), "train", ("depth",),
                             False)) == 2


def test_data_config_validation():
    with pytest.raises(KeyError, match="nyud"):
        DataConfig(dataset="nyu")
    with pytest.raises(ValueError, match="scale_range"):
        DataConfig(scale_range=(2.0, 0.5))
    with pytest.raises(ValueError, match="data.root=null"):
        DataConfig(root="/x", synthetic=True)
    assert DataConfig(dataset="pascal").resolved_crop_size() == (512, 512)
    assert DataConfig(synthetic=True, synthetic_size=(60, 80)).resolved_crop_size() == (60, 80)
    cfg = DataConfig().override(["crop_size=[32, 48]", "flip=false"])
    assert cfg.crop_size == (32, 48) and cfg.flip is False


def test_a_training_crop_without_person_parts_is_ignored_whole_for_human_parts():
    """The official AddIgnoreRegions runs after the crop: a crop that lost every part pixel trains nothing on parts."""
    import numpy as np
    import torch

    from degmix_tuning.data.transforms import TrainTransform

    parts = torch.zeros(40, 80, dtype=torch.long)
    parts[5:15, 60:75] = 3  # a person only at the right edge
    sample = {"image": torch.rand(3, 40, 80) * 255, "human_parts": parts, "semseg": torch.zeros(40, 80).long()}
    t = TrainTransform(crop_size=(40, 40), scale_range=(1.0, 1.0), flip=False, photometric=False, cat_max_ratio=1.0)
    seen = {"with_parts": 0, "without": 0}
    for seed in range(20):
        out = t(dict(sample), np.random.default_rng(seed))["human_parts"]
        if (out == 3).any():  # a crop with parts keeps its background as class 0
            seen["with_parts"] += 1
            assert (out == 0).any()
        else:
            seen["without"] += 1
            assert (out == 255).all()
    assert seen["with_parts"] and seen["without"]
