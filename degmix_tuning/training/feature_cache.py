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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..backbones.base import weights_digest

CACHE_MODES = ("off", "memory", "disk")
KEY_FILE = "cache_key.json"


class FeatureCacheError(ValueError):
    """The cache cannot give correct features for this run (random transforms, trainable backbone, ...)."""


# ------------------------------------------------------------------------------------------------------ keys
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


def image_digest(image: Tensor) -> str:
    """Digest of one input image tensor (dtype, shape, bytes): the entry's proof that the input did not change."""
    t = image.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def feature_cache_key(backbone_name: str, backbone: nn.Module, settings: dict) -> tuple[str, dict]:
    """(short key, full description) for a backbone + its weights + the data/transform/precision `settings`."""
    description = {
        "backbone": backbone_name,
        "weights_sha256": weights_digest(backbone),
        "torch": torch.__version__,
        "settings": settings,
    }
    blob = json.dumps(description, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20], description


def _file_stem(image_id: str) -> str:
    """A file name for an image id: readable, filesystem-safe, and unique (hash suffix)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(image_id))[-60:].lstrip(".") or "image"
    return f"{readable}-{hashlib.sha1(str(image_id).encode()).hexdigest()[:10]}"


# ------------------------------------------------------------------------------------------------------ cache
@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    invalidated: int = 0  # entries recomputed because their image changed since an earlier run


class FeatureCache:
    """Per-image backbone features, keyed by (run key, image id), checked against the image's digest.

    Args:
        key: the run-level key from `feature_cache_key` (entries of another key are never read).
        mode: "memory" or "disk".
        directory: base folder for "disk"; entries go to `<directory>/<key>/`.
        description: the full key description, written next to the entries for people to read.
    """

    def __init__(self, key: str, mode: str = "memory", directory: str | Path | None = None,
                 description: dict | None = None):
        if mode not in ("memory", "disk"):
            raise ValueError(f"feature cache mode must be 'memory' or 'disk', got {mode!r}")
        if mode == "disk" and directory is None:
            raise ValueError("a disk feature cache needs a directory (train.feature_cache_dir or the run folder)")
        self.key = key
        self.mode = mode
        self.stats = CacheStats()
        self._memory: dict[str, tuple[str, list[Tensor], list[str]]] = {}
        self._seen: dict[str, str] = {}  # image id -> digest stored or checked in this process
        self.folder: Path | None = None
        if mode == "disk":
            self.folder = Path(directory) / key
            self.folder.mkdir(parents=True, exist_ok=True)
            key_file = self.folder / KEY_FILE
            if not key_file.is_file():  # marks the folder as a cache folder and says what the key stands for
                text = json.dumps({"key": key, **(description or {})}, indent=2, default=str) + "\n"
                _atomic_write_bytes(key_file, text.encode())

    # -- single entries
    def _path(self, image_id: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{_file_stem(image_id)}.safetensors"

    def lookup(self, image_id: str, digest: str) -> tuple[list[Tensor], list[str]] | None:
        """(maps, layouts) of `image_id` if present and made from the same image; None otherwise."""
        entry = self._read(image_id)
        if entry is None:
            return None
        stored_digest, feats, layouts = entry
        if stored_digest == digest:
            return feats, layouts
        if self._seen.get(image_id) == stored_digest:
            raise FeatureCacheError(
                f"train.feature_cache: image {image_id!r} produced a different input tensor than earlier in this run, "
                "so the train transforms are random (random crop, scale, flip or colour); cached features would be "
                "wrong. Make the transforms deterministic or set train.feature_cache=off."
            )
        self.stats.invalidated += 1  # written by an earlier run from a different image: recompute
        return None

    def store(self, image_id: str, digest: str, feats: Sequence[Tensor], layouts: Sequence[str]) -> None:
        """Keep one image's maps ([C, H, W] each, stored contiguous) and the layout the backbone gave them in."""
        feats = [f.detach().contiguous().clone() for f in feats]
        self._seen[image_id] = digest
        if self.mode == "memory":
            self._memory[image_id] = (digest, feats, list(layouts))
            return
        from safetensors.torch import save

        blob = save({f"level{i}": f.cpu() for i, f in enumerate(feats)},
                    metadata={"image_id": str(image_id), "image_digest": digest, "key": self.key,
                              "layouts": ",".join(layouts)})
        _atomic_write_bytes(self._path(image_id), blob)

    def _read(self, image_id: str) -> tuple[str, list[Tensor], list[str]] | None:
        if self.mode == "memory":
            return self._memory.get(image_id)
        path = self._path(image_id)
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                feats = [f.get_tensor(f"level{i}") for i in range(len(f.keys()))]
        except Exception as exc:  # noqa: BLE001 - name the file and the fix
            raise FeatureCacheError(f"feature cache file {str(path)!r} is unreadable ({exc}); delete it (or the "
                                    f"folder {str(self.folder)!r}) and it is recomputed") from exc
        if meta.get("key") != self.key or meta.get("image_id") != str(image_id):
            raise FeatureCacheError(f"feature cache file {str(path)!r} belongs to key {meta.get('key')!r} / image "
                                    f"{meta.get('image_id')!r}, not {self.key!r} / {image_id!r}; delete it")
        layouts = meta.get("layouts", "").split(",") if meta.get("layouts") else ["contiguous"] * len(feats)
        return meta.get("image_digest", ""), feats, layouts

    # -- batches
    def batch_features(self, extract: Callable[[Tensor], list[Tensor]], images: Tensor,
                       ids: Sequence[str]) -> list[Tensor]:
        """Backbone maps for a batch: cached entries where valid, `extract(images[missing])` for the rest (stored).

        The maps come back in the memory layout the backbone produced (e.g. channels_last strides after a
        permute), so the head runs the very same kernels as without the cache."""
        if len(ids) != images.shape[0]:
            raise ValueError(f"feature cache: {len(ids)} image ids for a batch of {images.shape[0]} images")
        digests = [image_digest(img) for img in images]
        per_sample: list[tuple[list[Tensor], list[str]] | None] = []
        for image_id, digest in zip(ids, digests):
            found = self.lookup(str(image_id), digest)
            if found is not None:
                self._seen[str(image_id)] = digest
            per_sample.append(found)
        missing = [i for i, f in enumerate(per_sample) if f is None]
        self.stats.hits += len(ids) - len(missing)
        self.stats.misses += len(missing)
        if missing:
            index = torch.tensor(missing, device=images.device)
            computed = extract(images if len(missing) == len(ids) else images.index_select(0, index))
            layouts = [_layout(level) for level in computed]
            for j, i in enumerate(missing):
                sample_feats = [level[j] for level in computed]
                self.store(str(ids[i]), digests[i], sample_feats, layouts)
                per_sample[i] = (sample_feats, layouts)
            if len(missing) == len(ids):
                return list(computed)
        layouts = per_sample[0][1]
        return [
            _to_layout(torch.stack([s[0][lvl].to(images.device) for s in per_sample]), layouts[lvl])
            for lvl in range(len(layouts))
        ]

    def __len__(self) -> int:
        if self.mode == "memory":
            return len(self._memory)
        return sum(1 for _ in self.folder.glob("*.safetensors"))


def _layout(t: Tensor) -> str:
    """"channels_last" for an NCHW map whose strides are NHWC (what a permute after a channel norm gives)."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "contiguous"


def _to_layout(t: Tensor, layout: str) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else t.contiguous()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------- training wiring
def cache_settings(cfg) -> dict:
    """Everything besides the weights that decides a train sample's backbone features (ExperimentConfig)."""
    data = cfg.data.to_dict()
    for irrelevant in ("num_workers", "max_samples", "val_split"):
        data.pop(irrelevant, None)
    data["resolved_crop_size"] = list(cfg.data.resolved_crop_size())
    return {
        "model": {"backbone": cfg.model.backbone, "img_size": cfg.model.img_size,
                  "backbone_kwargs": cfg.model.backbone_kwargs, "checkpoint_path": cfg.model.checkpoint_path},
        "data": data,
        "mixed_precision": cfg.train.mixed_precision,
        "channels_last": bool(getattr(cfg.train, "channels_last", False)),
    }


class TrainFeatureCache:
    """What `engine.train` calls: `features(batch)` -> backbone maps for `model(images, features=...)`."""

    def __init__(self, cache: FeatureCache, model: nn.Module, crop_size: Sequence[int], autocast=None):
        self.cache = cache
        self.model = model
        self.crop_size = tuple(crop_size)
        self.autocast = autocast or nullcontext

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
        if sizes is not None:
            check_not_random_crop(_per_sample_sizes(sizes, len(ids)), self.crop_size, ids)
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


def _prune_other_keys(directory: Path, keep: str) -> None:
    """Inside a run folder only this run's key is useful; folders of older keys are stale (changed weights or data)."""
    if not directory.is_dir():
        return
    for sub in directory.iterdir():
        if sub.is_dir() and sub.name != keep and (sub / KEY_FILE).is_file():
            shutil.rmtree(sub, ignore_errors=True)


__all__ = [
    "CACHE_MODES", "CacheStats", "FeatureCache", "FeatureCacheError", "TrainFeatureCache", "build_train_feature_cache",
    "cache_settings", "check_cacheable_transforms", "check_not_random_crop", "feature_cache_key", "image_digest",
    "random_transform_settings", "weights_digest",
]
