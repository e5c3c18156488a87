"""Which runs may use the feature cache, and the error raised when one may not.

A cached feature map is only correct when the backbone would compute the very same map for this epoch's
sample, i.e. when the train transforms are deterministic. The checks here name every setting that breaks
that (random rescaling, flips, colour distortion, random crops of oversized images), so the refusal says
what to change; they live apart from the storage and the key because they are about the data, not the files.
"""

from __future__ import annotations

from typing import Sequence

CACHE_MODES = ("off", "memory", "disk")


class FeatureCacheError(ValueError):
    """The cache cannot give correct features for this run (random transforms, trainable backbone, ...)."""


def random_transform_settings(data_cfg) -> list[str]:
    """The DataConfig settings that make train samples random (empty list = deterministic transforms)."""
    found = []
    if tuple(float(v) for v in data_cfg.scale_range) != (1.0, 1.0):
        found.append(f"data.scale_range={tuple(data_cfg.scale_range)} (random rescaling; use 1,1)")
    if data_cfg.flip:
        found.append("data.flip=true (random horizontal flips; use false)")
    if data_cfg.photometric:
        found.append("data.photometric=true (random colour distortion; use false)")
    return found


def check_cacheable_transforms(data_cfg) -> None:
    """Raise `FeatureCacheError` naming every random train transform setting."""
    random_settings = random_transform_settings(data_cfg)
    if random_settings:
        raise FeatureCacheError(
            "train.feature_cache needs deterministic train transforms, because a cached feature map must be the one "
            "the backbone would compute for this epoch's sample; these settings are random: "
            + "; ".join(random_settings)
            + ". Change them, or set train.feature_cache=off."
        )


def check_not_random_crop(sizes: Sequence[Sequence[int]], crop_size: Sequence[int], ids: Sequence[str]) -> None:
    """Images larger than the crop size get a random crop every epoch: refuse to cache them."""
    for image_id, size in zip(ids, sizes):
        h, w = (int(v) for v in size)
        if h > crop_size[0] or w > crop_size[1]:
            raise FeatureCacheError(
                f"train.feature_cache: image {image_id!r} is {h}x{w} (HxW), larger than data.crop_size "
                f"{crop_size[0]}x{crop_size[1]}, so every epoch takes a different random crop of it and cached "
                "features would be wrong. Set data.crop_size to at least the largest image size, or "
                "train.feature_cache=off."
            )
