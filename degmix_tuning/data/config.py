"""`DataConfig`: which dataset, where it lives (real root, cached synthetic stand-in, or Arrow copy) and the recipe's
augmentation settings. Validated on construction so a bad value fails before any file is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigBase
from .info import DATASETS_INFO, get_dataset_info

PIPELINES = ("atrc", "mtlora")


@dataclass
class DataConfig(ConfigBase):
    dataset: str = "nyud"  # a registered dataset: "nyud" | "pascal" | "cityscapes"
    root: str | None = None  # real dataset root; None when synthetic or arrow_path is used
    format: str = "auto"  # NYUD-v2 archive flavour: auto | A | B | C
    synthetic: bool = False  # generate (once, cached) a synthetic dataset in the real on-disk layout
    synthetic_n: int = 200
    synthetic_size: tuple[int, int] = (120, 160)  # (H, W)
    synthetic_seed: int = 0
    synthetic_val_fraction: float = 0.25
    crop_size: tuple[int, int] | None = None  # (H, W); None -> DatasetInfo.crop_size, or synthetic_size if synthetic
    # train/eval transforms: "atrc" (the DeGMix/ATRC recipe: scale, crop, flip, photometric; native-size evaluation
    # padded to crop_size) or "mtlora" (the MTLoRA/DiTASK code: flip, scale+rotate, resize to crop_size, evaluation
    # resized to crop_size too)
    pipeline: str = "atrc"
    train_split: str = "train"
    val_split: str = "val"
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    photometric: bool = True
    cat_max_ratio: float = 0.75
    arrow_path: str | None = None  # read samples from a `degmix-tuning data to-arrow` copy instead of the root
    num_workers: int = 2
    max_samples: int | None = None  # cut every split to its first N ids (quick runs)
    normals_context_ids_file: str | None = None  # PASCAL: JSON list of Context ids with valid normals (default 170)

    def __post_init__(self):
        if self.dataset not in DATASETS_INFO:
            get_dataset_info(self.dataset)  # raises KeyError naming the known datasets and close matches
        if self.pipeline not in PIPELINES:
            raise ValueError(f"data.pipeline={self.pipeline!r}: use one of {PIPELINES}")
        if self.format.upper() not in ("AUTO", "A", "B", "C"):
            raise ValueError(f"data.format={self.format!r}: use auto, A, B or C (NYUD-v2 archive flavours)")
        if self.synthetic and self.root is not None:
            raise ValueError(f"data.synthetic=true and data.root={self.root!r} are both set; use one of them "
                             f"(set data.root=null to use the synthetic dataset)")
        if self.synthetic_n < 2:
            raise ValueError(f"data.synthetic_n={self.synthetic_n}: need at least 2 scenes (one train, one val)")
        _check_size("data.synthetic_size", self.synthetic_size, minimum=16)
        if not 0.0 < self.synthetic_val_fraction < 1.0:
            raise ValueError(f"data.synthetic_val_fraction={self.synthetic_val_fraction}: must be in (0, 1)")
        if self.crop_size is not None:
            _check_size("data.crop_size", self.crop_size, minimum=1)
        lo, hi = self.scale_range
        if not 0.0 < lo <= hi:
            raise ValueError(f"data.scale_range={self.scale_range}: need 0 < low <= high (the recipe uses 0.5,2.0)")
        if not 0.0 < self.cat_max_ratio <= 1.0:
            raise ValueError(f"data.cat_max_ratio={self.cat_max_ratio}: must be in (0, 1]; 1 disables the check")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers={self.num_workers}: must be >= 0")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"data.max_samples={self.max_samples}: must be >= 1 or null")
        if not self.train_split or not self.val_split:
            raise ValueError("data.train_split and data.val_split must be non-empty split names")
        # recorded absolute, so a run's config.json works from any directory (evaluate, predict, --resume)
        for name in ("root", "arrow_path"):
            value = getattr(self, name)
            if value:
                setattr(self, name, str(Path(value).expanduser().absolute()))

    def resolved_crop_size(self) -> tuple[int, int]:
        """Train crop == eval pad size: explicit, else the synthetic image size, else the dataset's default."""
        if self.crop_size is not None:
            return tuple(self.crop_size)
        if self.synthetic:
            return tuple(self.synthetic_size)
        return tuple(get_dataset_info(self.dataset).crop_size)


def _check_size(name: str, size, minimum: int) -> None:
    if len(size) != 2 or any(int(v) != v or v < minimum for v in size):
        raise ValueError(f"{name}={tuple(size)}: expected (H, W) integers >= {minimum}")
