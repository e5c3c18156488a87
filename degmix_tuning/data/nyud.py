"""NYUD-v2 (multi-task version) reader for the three archive flavours, producing the toolkit's label convention.

Layout: `images/ segmentation/ depth/ normals/ edge/ gt_sets/{train,val}.txt`, files `<folder>/<id>.<ext>`.
Flavours (datasets_eval.md §1.1):
  C (ATRC/InvPT `NYUDv2`, what DeGMix uses): png image, png seg, npy depth, png normals, png edge;
  B (MTI-Net `NYUD_MT`): jpg image, png seg, npy depth, npy normals, npy edge;
  A (ASTMT `NYUD_MT`): jpg image, .mat seg (`segmentation`), .mat depth (`depth`), jpg normals, png edge.
Raw samples (numpy, before transforms): image uint8 [H,W,3]; semseg uint8 [H,W] 0..39 with 255 = unlabeled
(stored value v becomes v-1, 0 becomes 255); depth float32 [H,W] metres with 0 -> 255 (invalid); normals float32
[H,W,3] in [-1,1] with zero-norm pixels -> 255; edge float32 [H,W] (png /255, npy as stored; binary in practice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..tasks import IGNORE_INDEX
from .formats import (
    DataFileError, check_label_size, decode_normals_png, read_label_png, read_mat_array, read_npy, read_rgb,
    image_size, read_rgb_label, read_split_ids,
)
from .info import get_dataset_info
from .reader_base import ReaderBase

NYUD_TASKS = ("semseg", "depth", "normals", "edge")
NYUD_NUM_CLASSES = 40
NYUD_FOLDERS = {"image": "images", "semseg": "segmentation", "depth": "depth", "normals": "normals", "edge": "edge"}
NYUD_FLAVOURS: dict[str, dict[str, str]] = {
    "C": {"image": ".png", "semseg": ".png", "depth": ".npy", "normals": ".png", "edge": ".png"},
    "B": {"image": ".jpg", "semseg": ".png", "depth": ".npy", "normals": ".npy", "edge": ".npy"},
    "A": {"image": ".jpg", "semseg": ".mat", "depth": ".mat", "normals": ".jpg", "edge": ".png"},
}
NYUD_GET_IT = get_dataset_info("nyud").how_to_get()


def _extensions_in(folder: Path, limit: int = 64) -> set[str]:
    exts = set()
    if folder.is_dir():
        for i, entry in enumerate(folder.iterdir()):
            if i >= limit:
                break
            exts.add(entry.suffix.lower())
    return exts


def detect_nyud_flavour(root: str | Path) -> str:
    """Decide flavour A/B/C from the file extensions present under `root`."""
    root = Path(root)
    image_exts = _extensions_in(root / "images") & {".png", ".jpg", ".jpeg"}
    if not image_exts:
        raise FileNotFoundError(f"{root / 'images'}: no .png/.jpg images found (folder missing or empty); "
                                f"cannot tell the NYUD-v2 archive flavour. {NYUD_GET_IT}")
    if len(image_exts) > 1:
        raise ValueError(f"{root / 'images'}: holds both .png and .jpg images, so the NYUD-v2 flavour is ambiguous; "
                         f"set the format explicitly (format='C' for png images, 'B' or 'A' for jpg)")
    if ".png" in image_exts:
        return "C"
    mat_seen = ".mat" in _extensions_in(root / "segmentation") | _extensions_in(root / "depth")
    jpg_normals = ".jpg" in _extensions_in(root / "normals")
    return "A" if (mat_seen or jpg_normals) else "B"


class NYUDReader(ReaderBase):
    """Reads one split of a NYUD-v2 root into raw numpy samples (see module docstring for the encodings)."""

    dataset = "nyud"
    TASKS = NYUD_TASKS
    FOLDERS = NYUD_FOLDERS

    def __init__(self, root: str | Path, split: str, tasks: Sequence[str] = NYUD_TASKS, format: str = "auto"):
        self._open(root, split, tasks, "NYUD-v2", NYUD_GET_IT)
        fmt = format.upper() if format.lower() != "auto" else "auto"
        if fmt not in ("auto", *NYUD_FLAVOURS):
            raise ValueError(f"unknown NYUD-v2 format {format!r}; use auto, A, B or C")
        for key in ("image", *self.tasks):
            folder = self.root / NYUD_FOLDERS[key]
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: folder is missing from the NYUD-v2 root (needed for {key}). "
                                        f"{NYUD_GET_IT}")
        self.flavour = self.flavour_of(self.root, fmt)
        self.ids = read_split_ids(self.split_file(self.root, split))

    @classmethod
    def from_config(cls, root: str | Path, split: str, tasks: Sequence[str], cfg) -> "NYUDReader":
        """The reader a `DataConfig` asks for (its `format`)."""
        return cls(root, split, tasks, format=cfg.format)

    # --------------------------------------------------- what `data validate` asks of every reader class
    @staticmethod
    def split_file(root: str | Path, split: str) -> Path:
        """Where the id list of `split` lives."""
        return Path(root) / "gt_sets" / f"{split}.txt"

    @staticmethod
    def folder_problem(root: str | Path, task: str) -> str | None:
        """What is wrong with `task`'s existing folder: nothing can be, NYUD-v2 folders hold the files directly."""
        return None

    @staticmethod
    def unmet_needs(root: str | Path, tasks: Sequence[str]) -> dict[str, str]:
        """Tasks (-> problem) that also need another task's folder and it is missing: none, each label stands alone."""
        return {}

    @staticmethod
    def flavour_of(root: str | Path, format: str = "auto") -> str:
        """The archive flavour (A/B/C) `format` names; "auto" detects it from the files, raising if it cannot."""
        return detect_nyud_flavour(root) if format.lower() == "auto" else format.upper()

    @classmethod
    def for_validation(cls, root: str | Path, split: str, tasks: Sequence[str], *, flavour: str | None,
                       normals_context_ids=None) -> "NYUDReader":
        """The reader that checks a split, in the flavour found by `flavour_of` (normals ids are PASCAL's)."""
        return cls(root, split, tasks, format=flavour)

    def path(self, sample_id: str, key: str) -> Path:
        return self.root / NYUD_FOLDERS[key] / f"{sample_id}{NYUD_FLAVOURS[self.flavour][key]}"

    def read_image(self, sample_id: str) -> np.ndarray:
        return read_rgb(self.path(sample_id, "image"))

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of sample `index`, read from the image header only."""
        return image_size(self.path(self.ids[index], "image"))

    def read_label(self, sample_id: str, task: str) -> np.ndarray:
        path = self.path(sample_id, task)
        return {"semseg": self._semseg, "depth": self._depth, "normals": self._normals, "edge": self._edge}[task](path)

    def read(self, index: int) -> dict:
        sample_id = self.ids[index]
        image = self.read_image(sample_id)
        sample = {"id": sample_id, "image": image}
        for task in self.tasks:
            label = self.read_label(sample_id, task)
            check_label_size(self.path(sample_id, task), label, image.shape[:2], task)
            sample[task] = label
        return sample

    # ---------------------------------------------------------------------------------------------- decoders
    def _semseg(self, path: Path) -> np.ndarray:
        raw = read_mat_array(path, "segmentation") if path.suffix == ".mat" else read_label_png(path)
        raw = _squeeze_2d(path, raw, "segmentation")
        bad = np.unique(raw[(raw < 0) | (raw > NYUD_NUM_CLASSES)])
        if bad.size:
            raise DataFileError(path, f"segmentation values {bad[:10].tolist()} are outside 0..{NYUD_NUM_CLASSES} "
                                      f"(0 = unlabeled, 1..40 = the 40 NYUD classes)")
        label = raw.astype(np.int32) - 1
        label[label < 0] = IGNORE_INDEX
        return label.astype(np.uint8)

    def _depth(self, path: Path) -> np.ndarray:
        raw = read_mat_array(path, "depth") if path.suffix == ".mat" else read_npy(path)
        depth = _squeeze_2d(path, raw, "depth")
        if depth.dtype.kind not in "fiu":
            raise DataFileError(path, f"depth has non-numeric dtype {depth.dtype}")
        depth = depth.astype(np.float32)
        n_bad = int((~np.isfinite(depth)).sum())
        if n_bad:
            raise DataFileError(path, f"depth has {n_bad} NaN/inf values; holes must be stored as 0")
        if (depth < 0).any():
            raise DataFileError(path, f"depth has negative values (min {depth.min():.3g}); expected metres >= 0")
        depth[depth == 0] = IGNORE_INDEX
        return depth

    def _normals(self, path: Path) -> np.ndarray:
        if path.suffix == ".npy":
            normals = read_npy(path)
            if normals.ndim != 3 or normals.shape[2] != 3 or normals.dtype.kind != "f":
                raise DataFileError(path, f"normals must be a float [H, W, 3] array, got {normals.dtype} "
                                          f"{normals.shape}")
            normals = normals.astype(np.float32)
            if not np.isfinite(normals).all():
                raise DataFileError(path, "normals contain NaN/inf values")
        else:
            normals = decode_normals_png(read_rgb_label(path))
        normals = normals.copy()
        normals[np.linalg.norm(normals, axis=2) == 0] = IGNORE_INDEX
        return normals

    def _edge(self, path: Path) -> np.ndarray:
        if path.suffix == ".npy":
            edge = _squeeze_2d(path, read_npy(path), "edge").astype(np.float32)
            if not np.isfinite(edge).all() or edge.min() < 0 or edge.max() > 1:
                raise DataFileError(path, "edge .npy values must lie in [0, 1]")
            return edge
        raw = _squeeze_2d(path, read_label_png(path), "edge")
        if raw.dtype != np.uint8:
            raise DataFileError(path, f"edge PNG must be 8-bit (0/255), got values up to {raw.max()}")
        return raw.astype(np.float32) / 255.0


def _squeeze_2d(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataFileError(path, f"{what} must be a 2-D [H, W] array, got shape {arr.shape}")
    return arr
