"""Datasets for training and evaluation: NYUD-v2 and PASCAL-Context readers, the recipe's joint transforms,
a cached synthetic stand-in written in the real layouts (`synthetic/`), and an optional Arrow copy.

`build_dataset(cfg, split, tasks, train)` returns a torch Dataset whose samples are
`{"image": float32 [3,H,W] normalised, <task>: label (tasks.py convention), "meta": {"id": str, "size": (H, W)}}`.
A reader (NYUDReader, PascalReader, ArrowSplitReader; opened by `readers.open_reader`) has `.dataset`, `.tasks`,
`.ids`, `len()` and `read(i) ->` raw numpy sample; the transforms turn that into tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .config import DataConfig
from .info import DatasetInfo, get_dataset_info
from .readers import open_reader
from .synthetic import synthetic_cache_dir, synthetic_root
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, to_tensors

__all__ = [
    "DataConfig", "DatasetInfo", "DenseDataset", "IMAGENET_MEAN", "IMAGENET_STD", "build_dataset", "get_dataset_info",
    "open_reader", "resolve_root", "synthetic_cache_dir",
]


# ------------------------------------------------------------------------------------------------ where data lives
def resolve_root(cfg: DataConfig) -> Path:
    """The dataset root to read: the real `cfg.root` (must exist), or the cached synthetic root (generated once)."""
    if cfg.synthetic:
        return synthetic_root(cfg)
    how = get_dataset_info(cfg.dataset).how_to_get()
    if cfg.root is None:
        raise FileNotFoundError(f"data.root is not set for dataset {cfg.dataset!r}; set data.root=<root>. {how}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{cfg.dataset} root {str(root)!r} does not exist. {how}")
    return root


# ------------------------------------------------------------------------------------------------------- dataset
class DenseDataset(torch.utils.data.Dataset):
    """Reader + transform. Each training sample's augmentation uses a numpy Generator seeded by one draw from
    torch's global RNG: DataLoader workers (seeded differently by torch, per worker and per epoch) draw different
    streams, runs are reproducible under `torch.manual_seed`, and a wrapper that calls `torch.manual_seed(f(epoch,
    index))` before each sample makes augmentation a pure function of that seed."""

    def __init__(self, reader, tasks: Sequence[str], transform, max_samples: int | None = None):
        self.reader = reader
        self.tasks = tuple(tasks)
        self.transform = transform
        self.length = len(reader) if max_samples is None else min(len(reader), max_samples)

    def __len__(self) -> int:
        return self.length

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def check_fits(self, size: tuple[int, int], what: str = "the eval pad size") -> None:
        """Refuse, before training starts, a sample larger than `size` (evaluation pads, never resizes): found at
        the first evaluation instead, it would cost every step before it."""
        if not hasattr(self.reader, "image_size"):
            return
        too_big = [(i, self.reader.image_size(i)) for i in range(self.length)]
        too_big = [(i, hw) for i, hw in too_big if hw[0] > size[0] or hw[1] > size[1]]
        if too_big:
            h = max(hw[0] for _, hw in too_big)
            w = max(hw[1] for _, hw in too_big)
            i, (h0, w0) = too_big[0]
            raise ValueError(
                f"{len(too_big)} sample(s) of this split are larger than {what} {size[0]}x{size[1]}, e.g. "
                f"{self.reader.ids[i]!r} ({h0}x{w0}, HxW); evaluation never resizes, so set data.crop_size to "
                f"at least {max(h, size[0])},{max(w, size[1])} "
                f"(e.g. --set data.crop_size={max(h, size[0])},{max(w, size[1])})")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} samples")
        raw = self.reader.read(index)
        size = tuple(int(v) for v in raw["image"].shape[:2])
        rng = self.rng() if getattr(self.transform, "is_random", True) else None  # eval leaves torch's RNG alone
        sample = self.transform(to_tensors(raw), rng)
        out = {"image": sample["image"]}
        for task in self.tasks:
            out[task] = sample[task]
        out["meta"] = {"id": raw["id"], "size": size}
        return out


def build_dataset(cfg: DataConfig, split: str, tasks: Sequence[str], train: bool, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD) -> DenseDataset:
    """Samples of `split` with the labels of `tasks`: train samples are random crops of cfg's crop size, eval
    samples are native size centre-padded (image 0, labels 255) to it."""
    info = get_dataset_info(cfg.dataset)
    tasks = tuple(tasks)
    missing = [t for t in tasks if t not in info.tasks]
    if missing:
        raise KeyError(f"dataset {cfg.dataset!r} has no labels for task(s) {missing}; it has {', '.join(info.tasks)}")
    crop = cfg.resolved_crop_size()
    if cfg.pipeline == "mtlora":  # resize to crop_size for training and evaluation alike (MTLoRA/DiTASK code)
        from .mtlora_transforms import MTLoRAEvalTransform, MTLoRATrainTransform

        load = tasks
        transform = (MTLoRATrainTransform(size=crop, mean=tuple(mean), std=tuple(std), dataset=cfg.dataset) if train
                     else MTLoRAEvalTransform(size=crop, mean=tuple(mean), std=tuple(std)))
    elif train:
        # like ATRC, semseg is always read for training so cat_max_ratio can see the classes of a crop
        load = tasks + (("semseg",) if cfg.cat_max_ratio < 1.0 and "semseg" in info.tasks
                        and "semseg" not in tasks else ())
        transform = TrainTransform(crop_size=crop, scale_range=tuple(cfg.scale_range), flip=cfg.flip,
                                   photometric=cfg.photometric, cat_max_ratio=cfg.cat_max_ratio,
                                   mean=tuple(mean), std=tuple(std))
    else:
        load = tasks
        transform = EvalTransform(pad_size=crop, mean=tuple(mean), std=tuple(std))
    reader = open_reader(cfg, split, load)
    return DenseDataset(reader, tasks, transform, max_samples=cfg.max_samples)
