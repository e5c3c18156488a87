"""Frozen-backbone feature cache: compute each training image's backbone maps once, reuse them every epoch.

Only valid when the backbone is frozen and the train transforms are deterministic (no random scale, flip,
photometric distortion or random crop): then an image id always maps to the same input tensor, so its
features never change. Every cached entry is tied to

* a run-level key: backbone name + a digest of its weights + the data/transform settings + precision and
  memory layout (`feature_cache_key`); a changed key means a different folder, so nothing stale is read;
* the image id and a digest of the exact input tensor: an entry whose image changed is recomputed (read from
  an older run) or refused (changed within this run, which means the transforms are random after all).

Modes: ``"memory"`` (a dict in this process) or ``"disk"`` (one safetensors file per image, written atomically
under ``<dir>/<key>/``; a later run with the same key reuses them).

One idea per module: `store` (where entries live), `keys` (what makes two entries the same), `policy` (which
runs may be cached, and the errors). This file is the training-side glue `engine.train` uses, and re-exports
every public name so ``from degmix_tuning.training.feature_cache import X`` keeps working.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from torch import Tensor, nn

from .keys import (
    KEY_FILE,  # noqa: F401 - re-exported: the old single module had it
    _prune_other_keys, cache_settings, feature_cache_key, image_digest, weights_digest,
)
from .policy import (
    CACHE_MODES, FeatureCacheError, check_cacheable_transforms, check_not_random_crop, random_transform_settings,
)
from .store import CacheStats, FeatureCache


class TrainFeatureCache:
    """What `engine.train` calls: `features(batch)` -> backbone maps for `model(images, features=...)`."""

    def __init__(self, cache: FeatureCache, model: nn.Module, crop_size: Sequence[int], autocast=None):
        self.cache = cache
        self.model = model
        self.crop_size = tuple(crop_size)
        self.autocast = autocast or nullcontext
        self._size_checked: set[str] = set()  # ids whose size was read: it never changes, so once per process

    def check(self) -> None:
        """The deferred comparison of memory hits with their images (`FeatureCache.check`); one device sync."""
        self.cache.check()

    def _extract(self, images: Tensor) -> list[Tensor]:
        with self.autocast():
            return self.model.extract_features(images)

    def features(self, batch: dict) -> list[Tensor]:
        meta = batch.get("meta") or {}
        ids = meta.get("id")
        if ids is None:
            raise FeatureCacheError("train.feature_cache: the batch has no meta['id'] to key the cache on")
        if isinstance(ids, str):
            ids = [ids]
        sizes = meta.get("size")
        new = [i for i, image_id in enumerate(ids) if str(image_id) not in self._size_checked]
        if sizes is not None and new:  # a copy to the host (a sync): only at an image's first sighting
            per_sample = _per_sample_sizes(sizes, len(ids))
            check_not_random_crop([per_sample[i] for i in new], self.crop_size, [ids[i] for i in new])
        self._size_checked.update(str(image_id) for image_id in ids)
        return self.cache.batch_features(self._extract, batch["image"], list(ids))


def _per_sample_sizes(sizes, n: int) -> list[tuple[int, int]]:
    """Collated meta sizes come as [tensor(H...), tensor(W...)] (default_collate of tuples) or a list of pairs."""
    if isinstance(sizes, (list, tuple)) and len(sizes) == 2 and isinstance(sizes[0], Tensor):
        return [(int(h), int(w)) for h, w in zip(sizes[0].tolist(), sizes[1].tolist())]
    return [tuple(int(v) for v in s) for s in sizes][:n]


def build_train_feature_cache(cfg, model: nn.Module, run_dir: Path, autocast=None) -> TrainFeatureCache | None:
    """The cache for `engine.train`, or None when `cfg.train.feature_cache == "off"`. Refuses (clear error) when
    the transforms are random or the tuning method trains any backbone parameter."""
    mode = getattr(cfg.train, "feature_cache", "off")
    if mode == "off":
        return None
    if mode not in CACHE_MODES:
        raise ValueError(f"train.feature_cache must be one of {CACHE_MODES}, got {mode!r}")
    check_cacheable_transforms(cfg.data)
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    if trainable:
        raise FeatureCacheError(
            f"train.feature_cache needs a frozen backbone, but tuning method {cfg.tuning!r} trains {len(trainable)} "
            f"backbone parameters (e.g. {trainable[0]!r}); use it with degmix/decoder_only, or set "
            "train.feature_cache=off"
        )
    key, description = feature_cache_key(cfg.model.backbone, model.backbone, cache_settings(cfg))
    directory = None
    if mode == "disk":
        given = getattr(cfg.train, "feature_cache_dir", None)
        directory = Path(given) if given else Path(run_dir) / "feature_cache"
        if not given:
            _prune_other_keys(directory, keep=key)
    cache = FeatureCache(key, mode, directory, description)
    return TrainFeatureCache(cache, model, cfg.data.resolved_crop_size(), autocast)


__all__ = [
    "CACHE_MODES", "CacheStats", "FeatureCache", "FeatureCacheError", "TrainFeatureCache", "build_train_feature_cache",
    "cache_settings", "check_cacheable_transforms", "check_not_random_crop", "feature_cache_key", "image_digest",
    "random_transform_settings", "weights_digest",
]
