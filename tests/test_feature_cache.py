"""Feature cache: bit-identical features, identical training, invalidation on weights/transform/image changes,
clear refusals for random transforms and trainable backbones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from degmix_tuning import create_model
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.feature_cache import (
    FeatureCache, FeatureCacheError, build_train_feature_cache, cache_settings, check_cacheable_transforms,
    check_not_random_crop, feature_cache_key, weights_digest,
)


def _key(model, **settings):
    return feature_cache_key("tiny_swin", model.backbone, settings)[0]


def test_memory_and_disk_entries_are_bit_identical_to_recomputed_features(tiny_model, tmp_path):
    images = torch.randn(3, 3, 32, 48)
    ids = ["a", "b/c", "d"]
    recomputed = tiny_model.extract_features(images)
    for mode in ("memory", "disk"):
        cache = FeatureCache(_key(tiny_model), mode, tmp_path / "fc")
        first = cache.batch_features(tiny_model.extract_features, images, ids)
        assert (cache.stats.hits, cache.stats.misses) == (0, 3)
        again = cache.batch_features(tiny_model.extract_features, images, ids)
        assert (cache.stats.hits, cache.stats.misses) == (3, 3)
        assert len(first) == len(recomputed) == 4
        for a, b, c in zip(first, again, recomputed):
            assert a.dtype == c.dtype and torch.equal(a, c) and torch.equal(b, c)
    # a new process (new cache object, same key) reads the files written above, bit for bit
    reread = FeatureCache(_key(tiny_model), "disk", tmp_path / "fc")
    out = reread.batch_features(lambda x: pytest.fail("should not recompute"), images[[2, 0]], ["d", "a"])
    assert reread.stats.hits == 2
    for a, c in zip(out, recomputed):
        assert torch.equal(a, c[[2, 0]])
    files = sorted(p.name for p in (tmp_path / "fc" / reread.key).iterdir())
    assert len([f for f in files if f.endswith(".safetensors")]) == 3 and "cache_key.json" in files
    assert not [f for f in files if f.endswith(".tmp")]


def test_partial_hits_compute_only_the_missing_images(tiny_model):
    cache = FeatureCache(_key(tiny_model), "memory")
    images = torch.randn(4, 3, 32, 32)
    cache.batch_features(tiny_model.extract_features, images[:2], ["0", "1"])
    seen_batches = []

    def extract(x):
        seen_batches.append(x.shape[0])
        return tiny_model.extract_features(x)

    out = cache.batch_features(extract, images[[1, 2, 0, 3]], ["1", "2", "0", "3"])
    assert seen_batches == [2] and (cache.stats.hits, cache.stats.misses) == (2, 4) and len(cache) == 4
    ref = tiny_model.extract_features(images[[1, 2, 0, 3]])
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_key_changes_with_weights_and_settings_only(tiny_model):
    base = _key(tiny_model, flip=False, crop=[32, 48])
    assert _key(tiny_model, flip=False, crop=[32, 48]) == base
    assert _key(tiny_model, flip=False, crop=[32, 64]) != base
    before = weights_digest(tiny_model.backbone)
    with torch.no_grad():
        next(tiny_model.backbone.parameters()).view(-1)[0] += 1e-6
    assert weights_digest(tiny_model.backbone) != before
    assert _key(tiny_model, flip=False, crop=[32, 48]) != base


def test_changed_weights_or_transforms_invalidate_a_disk_cache(tmp_path):
    cfg = ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "data.synthetic=true", "data.synthetic_size=32,48",
        "data.scale_range=1,1", "data.flip=false", "data.photometric=false", "train.feature_cache=disk",
    ])
    model = create_model(cfg.model)
    images = torch.randn(2, 3, 32, 48)
    batch = {"image": images, "meta": {"id": ["x", "y"], "size": [torch.tensor([32, 32]), torch.tensor([48, 48])]}}
    first = build_train_feature_cache(cfg, model, tmp_path)
    first.features(batch)
    assert first.cache.stats.misses == 2
    same = build_train_feature_cache(cfg, model, tmp_path)
    same.features(batch)
    assert (same.cache.stats.hits, same.cache.stats.misses) == (2, 0) and same.cache.key == first.cache.key

    cropped = cfg.override(["data.crop_size=32,40"])  # another transform: new key, nothing reused
    other = build_train_feature_cache(cropped, model, tmp_path)
    assert other.cache.key != first.cache.key
    with torch.no_grad():
        model.backbone.stage_norms[0].weight.mul_(2.0)
    changed = build_train_feature_cache(cfg, model, tmp_path)
    assert changed.cache.key != first.cache.key
    out = changed.features(batch)
    assert (changed.cache.stats.hits, changed.cache.stats.misses) == (0, 2)
    assert torch.equal(out[0], model.extract_features(images)[0])
    # inside the run folder only the current key's entries are kept
    kept = [p.name for p in (tmp_path / "feature_cache").iterdir()]
    assert kept == [changed.cache.key]


def test_changed_image_under_the_same_id(tiny_model, tmp_path):
    key = _key(tiny_model)
    img = torch.randn(1, 3, 32, 32)
    FeatureCache(key, "disk", tmp_path).batch_features(tiny_model.extract_features, img, ["s"])
    # written by an earlier run from another image (data changed on disk): recomputed, counted as invalidated
    later = FeatureCache(key, "disk", tmp_path)
    out = later.batch_features(tiny_model.extract_features, img + 1, ["s"])
    assert (later.stats.invalidated, later.stats.misses) == (1, 1)
    assert torch.equal(out[3], tiny_model.extract_features(img + 1)[3])
    # the same id giving another image within one run means random transforms: refused
    with pytest.raises(FeatureCacheError, match="random"):
        later.batch_features(tiny_model.extract_features, img, ["s"])


def test_random_transforms_are_refused_with_the_settings_named():
    cfg = ExperimentConfig().override(["data.synthetic=true"])  # recipe defaults: scale 0.5-2, flip, photometric
    with pytest.raises(FeatureCacheError) as err:
        check_cacheable_transforms(cfg.data)
    msg = str(err.value)
    assert "data.scale_range=(0.5, 2.0)" in msg and "data.flip=true" in msg and "data.photometric=true" in msg
    assert "train.feature_cache=off" in msg
    check_cacheable_transforms(cfg.override(["data.scale_range=1,1", "data.flip=false",
                                             "data.photometric=false"]).data)
    with pytest.raises(FeatureCacheError, match="larger than data.crop_size 32x48"):
        check_not_random_crop([(32, 48), (40, 48)], (32, 48), ["ok", "big"])


def test_trainable_backbone_is_refused(tmp_path):
    cfg = ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "data.synthetic=true", "data.scale_range=1,1",
        "data.flip=false", "data.photometric=false", "train.feature_cache=memory", "tuning=full",
    ])
    model = create_model(cfg.model)
    for p in model.backbone.parameters():
        p.requires_grad_(True)
    with pytest.raises(FeatureCacheError, match="frozen backbone.*'full'"):
        build_train_feature_cache(cfg, model, tmp_path)
    assert cache_settings(cfg)["data"]["flip"] is False


# ------------------------------------------------------------------------------------------------- training
def _train_cfg(out: Path, *extra: str) -> ExperimentConfig:
    return ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "model.tasks=semseg,depth",
        "data.synthetic=true", "data.synthetic_n=12", "data.synthetic_size=32,48", "data.num_workers=0",
        "data.scale_range=1,1", "data.flip=false", "data.photometric=false",
        "train.batch_size=3", "train.eval_batch_size=4", "train.lr=0.05", "train.max_steps=5", "train.eval_every=0",
        "train.checkpoint_every=0", "train.max_eval_batches=1", "train.trackers=csv", f"train.output_dir={out}",
        *extra,
    ])


def test_training_with_cache_gives_the_same_head_weights(tmp_path, synthetic_cache):
    from accelerate.utils import set_seed

    from degmix_tuning.training.checkpoint import read_adapter
    from degmix_tuning.training.engine import build_model, train

    def weights(out, *extra):
        return read_adapter(train(_train_cfg(tmp_path / out, *extra), show_progress=False).adapter_path)[0]

    # one epoch (9 train images, batch 3): every feature is computed in the same batch as without the cache -> exact
    ref3 = weights("plain3", "train.max_steps=3")
    mem3 = weights("mem3", "train.max_steps=3", "train.feature_cache=memory")
    assert ref3.keys() == mem3.keys() and len(ref3) > 10
    for k in ref3:
        assert torch.equal(mem3[k], ref3[k]), f"single-epoch cached run differs at {k}"

    # 5 steps cross the epoch boundary: epoch 2 reads every feature from the cache
    ref = weights("plain")
    mem, disk = weights("mem", "train.feature_cache=memory"), weights("disk", "train.feature_cache=disk")
    set_seed(0)
    init = {k: v for k, v in build_model(_train_cfg(tmp_path / "init")).state_dict().items() if k in ref}
    assert max((ref[k] - init[k]).abs().max().item() for k in ref) > 1e-3  # training moved the weights
    for k in ref:
        assert torch.equal(mem[k], disk[k]), f"memory and disk caches differ at {k}"
        # recomputing a map inside another batch composition moves the backbone's last bits (~1e-6, MKL blocking),
        # so the uncached run can differ from the cached one by float rounding only
        torch.testing.assert_close(mem[k], ref[k], rtol=1e-5, atol=1e-7, msg=f"cached run differs at {k}")
    entries = list((tmp_path / "disk" / "feature_cache").glob("*/*.safetensors"))
    assert len(entries) == 9


def test_training_refuses_cache_with_random_transforms(tmp_path, synthetic_cache):
    from degmix_tuning.training.engine import train

    cfg = _train_cfg(tmp_path / "rand", "train.feature_cache=memory", "data.flip=true")
    with pytest.raises(FeatureCacheError, match="data.flip=true"):
        train(cfg, show_progress=False)
