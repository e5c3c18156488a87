"""What makes two cached features the same: the run-level key and the per-image digest.

Every cached entry is tied to a run-level key (backbone name + a digest of its weights + the data/transform
settings + precision and memory layout; a changed key means a different folder, so nothing stale is read) and
to a digest of the exact input tensor: a hash of its bytes on the host for disk entries (they outlive the process),
a fingerprint computed on the device for memory entries (no copy to the host, so no wait for the GPU). Keeping
these in one place keeps the key strings stable: the storage only files entries under whatever key it is given.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from ...backbones.base import weights_digest

KEY_FILE = "cache_key.json"  # written into each key's folder: marks it as a cache folder, says what the key means


def image_digest(image: Tensor) -> str:
    """Digest of one input image tensor (dtype, shape, bytes): the entry's proof that the input did not change."""
    t = image.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def image_fingerprints(images: Tensor) -> Tensor:
    """[B] int64 on the images' device: each image's bytes as 16-bit words, summed with fixed weights in exact integer
    arithmetic. Equal images give equal numbers, a changed pixel almost surely another; nothing is copied to the host,
    so the memory cache proves its hits without waiting for the GPU. Comparable within one process and device only
    (the weights come from that device's generator)."""
    flat = images.detach().contiguous().reshape(images.shape[0], -1)
    words = flat.view(torch.uint8 if flat.element_size() % 2 else torch.int16)
    weights = _fingerprint_weights(words.shape[1], words.device)
    return (words.to(torch.int32) * weights).sum(1, dtype=torch.int64)  # |word x weight| < 2**30: no overflow


@functools.lru_cache(maxsize=4)
def _fingerprint_weights(n: int, device: torch.device) -> Tensor:
    generator = torch.Generator(device=device).manual_seed(20240613)
    return torch.randint(1, 2**15, (n,), generator=generator, device=device, dtype=torch.int32)


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
        "mixed_precision": cfg.train.mixed_precision or "no",  # not set (and no launcher's choice): fp32
        "channels_last": bool(getattr(cfg.train, "channels_last", False)),
    }


def _prune_other_keys(directory: Path, keep: str) -> None:
    """Inside a run folder only this run's key is useful; folders of older keys are stale (changed weights or data)."""
    if not directory.is_dir():
        return
    for sub in directory.iterdir():
        if sub.is_dir() and sub.name != keep and (sub / KEY_FILE).is_file():
            shutil.rmtree(sub, ignore_errors=True)
