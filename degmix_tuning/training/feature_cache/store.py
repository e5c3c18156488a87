"""Where cached features live: the `FeatureCache` store, in memory or on disk.

Modes: ``"memory"`` (a dict in this process) or ``"disk"`` (one safetensors file per image, written atomically
under ``<dir>/<key>/``; a later run with the same key reuses them). The store files each image's maps under the
run key it is given (see `keys`), checks every hit against the image's digest, and hands maps back in the memory
layout the backbone produced. It does not decide whether caching is allowed: that is `policy`.

A memory hit is compared with its image on the device and read by `check()` (the training loop calls it on log
steps), so a memory-cached step never waits for the GPU; a disk entry is compared on the host at once (it was read
from a file on the host anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from .keys import KEY_FILE, image_digest, image_fingerprints
from .policy import FeatureCacheError


def _file_stem(image_id: str) -> str:
    """A file name for an image id: readable, filesystem-safe, and unique (hash suffix)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(image_id))[-60:].lstrip(".") or "image"
    return f"{readable}-{hashlib.sha1(str(image_id).encode()).hexdigest()[:10]}"


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
        self._unchecked: list[tuple[str, Tensor]] = []  # memory hits: (image id, changed? on the device) for `check`
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

    def lookup(self, image_id: str, digest: str | Tensor) -> tuple[list[Tensor], list[str]] | None:
        """(maps, layouts) of `image_id` if present and made from the same image; None otherwise. A memory entry
        (a device fingerprint) is returned at once and compared by the next `check()`."""
        entry = self._read(image_id)
        if entry is None:
            return None
        stored_digest, feats, layouts = entry
        if isinstance(digest, Tensor):  # memory: stored in this process, so a changed image means random transforms
            self._unchecked.append((image_id, stored_digest != digest))
            if len(self._unchecked) > 4096:  # nobody calls check(): do not hold on to flags without end
                self.check()
            return feats, layouts
        if stored_digest == digest:
            return feats, layouts
        if self._seen.get(image_id) == stored_digest:
            raise _changed_within_run(image_id)
        self.stats.invalidated += 1  # written by an earlier run from a different image: recompute
        return None

    def check(self) -> None:
        """Raise `FeatureCacheError` if a memory hit since the last check came from a changed image (one sync)."""
        if not self._unchecked:
            return
        pending, self._unchecked = self._unchecked, []
        changed = torch.stack([flag for _, flag in pending]).tolist()
        for (image_id, _), bad in zip(pending, changed):
            if bad:
                raise _changed_within_run(image_id)

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
        if self.mode == "memory":
            digests = list(image_fingerprints(images).unbind())  # on the device: no copy to the host
        else:
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
        if missing:  # (the missing images by views: an index tensor would be a copy to the device, which waits)
            computed = extract(images if len(missing) == len(ids) else torch.stack([images[i] for i in missing]))
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


def _changed_within_run(image_id: str) -> FeatureCacheError:
    return FeatureCacheError(
        f"train.feature_cache: image {image_id!r} produced a different input tensor than earlier in this run, so the "
        "train transforms are random (random crop, scale, flip or colour); cached features would be wrong. Make the "
        "transforms deterministic or set train.feature_cache=off."
    )


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
