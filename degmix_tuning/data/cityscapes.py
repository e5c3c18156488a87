"""Cityscapes reader (the official layout): 19-class semantic segmentation and depth in metres from disparity.

Layout (cityscapesScripts README), `<id>` = `<city>_<seq>_<frame>`; the images of a split are its sample ids (there is
no split list), and `val` (500 images) is the evaluation set, as in every multi-task work on Cityscapes:
  leftImg8bit/<split>/<city>/<id>_leftImg8bit.png   RGB image, 1024x2048
  gtFine/<split>/<city>/<id>_gtFine_labelIds.png    label ids 0..33, mapped to the 19 trainIds (the rest -> 255);
                                                    `<id>_gtFine_labelTrainIds.png` (0..18, 255) is read when the
                                                    labelIds file is absent (preprocessed copies ship only that)
  disparity/<split>/<city>/<id>_disparity.png       uint16 p: disparity d = (p - 1) / 256 px for p > 0, p = 0 invalid
  camera/<split>/<city>/<id>_camera.json            extrinsic.baseline (m) and intrinsic.fx (px) of that image

Depth convention: metres, depth = baseline * fx / d (the conversion cityscapesScripts issue #55 gives and TaskPrompter
uses), so depth is a distance like NYUD's and the depth loss, metrics and clamping apply unchanged. Invalid is 255,
as everywhere here: p = 0, p = 1 (d = 0, infinitely far), and depth beyond `max_depth` = 80 m, TaskPrompter's
Cityscapes evaluation range (0 < gt < 80); the cap also keeps every valid metre value off 255. MTAN/Auto-Lambda instead
regress the disparity itself ("inverse depth", lorenmt/mtan#15), rescaled to their resized images.

Resolution: every sample is read resized to the run's `data.crop_size` (default 256x512; 1024,2048 = native), since
evaluation pads and never resizes, so an image larger than the crop could not be evaluated. Image bilinear, labels
nearest (as TaskPrompter); metric depth is unchanged by resizing (the focal length and the disparity scale together).
Raw samples (numpy, before transforms): image uint8 [H,W,3]; semseg uint8 0..18 / 255; depth float32 metres / 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..tasks import IGNORE_INDEX
from .formats import (
    DataFileError, check_label_size, decode_disparity_png, image_size, read_label_png, read_rgb, read_stereo_camera,
    read_uint16_png,
)
from .info import get_dataset_info
from .reader_base import ReaderBase

CITYSCAPES_TASKS = ("semseg", "depth")
CITYSCAPES_FOLDERS = {"image": "leftImg8bit", "semseg": "gtFine", "depth": "disparity", "camera": "camera"}
SUFFIXES = {"image": "_leftImg8bit.png", "semseg": "_gtFine_labelIds.png", "train_ids": "_gtFine_labelTrainIds.png",
            "depth": "_disparity.png", "camera": "_camera.json"}
NATIVE_SIZE = (1024, 2048)
MAX_DEPTH = 80.0  # metres; farther is invalid (TaskPrompter's evaluation range)
NUM_CLASSES = 19
# label id of every class in the official label images (cityscapesScripts helpers/labels.py; license plate, id -1,
# is never drawn)
LABEL_IDS: dict[str, int] = {
    "unlabeled": 0, "ego vehicle": 1, "rectification border": 2, "out of roi": 3, "static": 4, "dynamic": 5,
    "ground": 6, "road": 7, "sidewalk": 8, "parking": 9, "rail track": 10, "building": 11, "wall": 12, "fence": 13,
    "guard rail": 14, "bridge": 15, "tunnel": 16, "pole": 17, "polegroup": 18, "traffic light": 19,
    "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24, "rider": 25, "car": 26,
    "truck": 27, "bus": 28, "caravan": 29, "trailer": 30, "train": 31, "motorcycle": 32, "bicycle": 33,
}
MAX_LABEL_ID = max(LABEL_IDS.values())
# the 19 evaluated label ids, in trainId order 0..18; every other label id is 255 (ignored)
EVALUATED_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
LABEL_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TO_TRAIN_ID[list(EVALUATED_LABEL_IDS)] = np.arange(NUM_CLASSES, dtype=np.uint8)
CITYSCAPES_GET_IT = get_dataset_info("cityscapes").how_to_get()


# ----------------------------------------------------------------------------------------------- label decoding
def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelIds (0..33) -> trainIds (0..18, 255 for the classes Cityscapes does not evaluate)."""
    return LABEL_TO_TRAIN_ID[np.asarray(label_ids)]


def disparity_to_depth(raw: np.ndarray, baseline: float, fx: float, max_depth: float = MAX_DEPTH) -> np.ndarray:
    """Disparity PNG values -> float32 depth in metres, baseline * fx / ((p - 1) / 256), computed in float64; p <= 1
    and depth > max_depth -> 255."""
    d = decode_disparity_png(raw)
    depth = np.full(d.shape, float(IGNORE_INDEX))
    valid = d > 0
    depth[valid] = baseline * fx / d[valid]
    depth[depth > max_depth] = IGNORE_INDEX
    return depth.astype(np.float32)


def _nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize: output pixel i takes input pixel floor((i + 0.5) * in / out) (PIL's NEAREST)."""
    h, w = label.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return label[rows[:, None], cols[None, :]]


def _bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)  # writable


def _scan_split(root: Path, split: str) -> dict[str, str]:
    """Sample id -> city folder of every `leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`, sorted by city and id."""
    folder = root / CITYSCAPES_FOLDERS["image"] / split
    if not folder.is_dir():
        parent = folder.parent
        present = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        hint = f" (splits present: {', '.join(present)})" if present else ""
        raise FileNotFoundError(f"{folder}: split folder does not exist{hint}")
    found: dict[str, str] = {}
    for city in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in sorted(city.glob(f"*{SUFFIXES['image']}")):
            sample_id = image.name[: -len(SUFFIXES["image"])]
            if sample_id in found:
                raise DataFileError(image, f"sample id {sample_id!r} is also in city folder {found[sample_id]!r}")
            found[sample_id] = city.name
    if not found:
        raise FileNotFoundError(f"{folder}: no <city>/*{SUFFIXES['image']} images")
    return found


# ------------------------------------------------------------------------------------------------------- reader
class CityscapesReader(ReaderBase):
    """Reads one split of a Cityscapes root into raw numpy samples at `size` (None: native size); see the module
    docstring."""

    dataset = "cityscapes"
    TASKS = CITYSCAPES_TASKS
    FOLDERS = CITYSCAPES_FOLDERS
    RESIZES_TO_CROP = True  # samples are read at data.crop_size, so none is ever larger than the eval pad size

    def __init__(self, root: str | Path, split: str, tasks: Sequence[str] = CITYSCAPES_TASKS,
                 size: tuple[int, int] | None = None, max_depth: float = MAX_DEPTH):
        self._open(root, split, tasks, "Cityscapes", CITYSCAPES_GET_IT)
        if size is not None and (len(size) != 2 or any(int(v) != v or v < 1 for v in size)):
            raise ValueError(f"Cityscapes read size {tuple(size)}: expected (H, W) positive integers")
        if not 0.0 < max_depth < IGNORE_INDEX:
            raise ValueError(f"max_depth={max_depth}: must lie in (0, {IGNORE_INDEX}) metres ({IGNORE_INDEX} marks "
                             f"invalid depth)")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.max_depth = float(max_depth)
        needed = ("image", *self.tasks) + (("camera",) if "depth" in self.tasks else ())
        for key in needed:
            folder = self.root / CITYSCAPES_FOLDERS[key]
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: folder is missing from the Cityscapes root (needed for {key}). "
                                        f"{CITYSCAPES_GET_IT}")
        self._city = _scan_split(self.root, split)
        self.ids = list(self._city)

    @classmethod
    def from_config(cls, root: str | Path, split: str, tasks: Sequence[str], cfg) -> "CityscapesReader":
        """The reader a `DataConfig` asks for: samples at its crop size (the train crop and eval pad size)."""
        return cls(root, split, tasks, size=tuple(cfg.resolved_crop_size()))

    # --------------------------------------------------- what `data validate` asks of every reader class
    @staticmethod
    def list_ids(root: str | Path, split: str) -> list[str]:
        """The ids of `split`: its image files (Cityscapes has no split lists)."""
        return list(_scan_split(Path(root), split))

    @staticmethod
    def folder_problem(root: str | Path, task: str) -> str | None:
        """What is wrong with `task`'s existing folder: nothing can be, the split and city folders are per file."""
        return None

    @classmethod
    def unmet_needs(cls, root: str | Path, tasks: Sequence[str]) -> dict[str, str]:
        """Tasks (-> problem) that also need another folder and it is missing: depth needs the camera files."""
        cameras = Path(root) / cls.FOLDERS["camera"]
        if "depth" in tasks and not cameras.is_dir():
            return {"depth": f"{cameras}: camera folder is missing (depth needs each image's baseline and fx)"}
        return {}

    @classmethod
    def for_validation(cls, root: str | Path, split: str, tasks: Sequence[str], *, flavour: str | None = None,
                       normals_context_ids=None) -> "CityscapesReader":
        """The reader that checks a split: files at their native size (there is no flavour or normals mask)."""
        return cls(root, split, tasks, size=None)

    def path(self, sample_id: str, key: str) -> Path:
        """The file of `key` (image, semseg, depth = disparity, camera); semseg is the labelIds file, or the
        labelTrainIds one when only that exists."""
        folder = self.root / CITYSCAPES_FOLDERS[key] / self.split / self._city[sample_id]
        path = folder / f"{sample_id}{SUFFIXES[key]}"
        if key == "semseg" and not path.is_file():
            train = folder / f"{sample_id}{SUFFIXES['train_ids']}"
            return train if train.is_file() else path
        return path

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of sample `index` as read: the read size, else the image header's."""
        return self.size or image_size(self.path(self.ids[index], "image"))

    def read_image(self, sample_id: str) -> np.ndarray:
        """The image at the reader's size."""
        image = read_rgb(self.path(sample_id, "image"))
        return image if self.size is None or image.shape[:2] == self.size else _bilinear(image, self.size)

    def read_label(self, sample_id: str, task: str) -> np.ndarray:
        """`task`'s decoded label at the files' native size."""
        if task == "semseg":
            return self._semseg(sample_id)
        if task == "depth":
            return self._depth(sample_id)
        raise KeyError(f"Cityscapes has no task {task!r}")

    def read(self, index: int) -> dict:
        sample_id = self.ids[index]
        image = read_rgb(self.path(sample_id, "image"))
        native = image.shape[:2]
        labels = {}
        for task in self.tasks:
            labels[task] = self.read_label(sample_id, task)
            check_label_size(self.path(sample_id, task), labels[task], native, task)
        if self.size is not None and native != self.size:
            image = _bilinear(image, self.size)
            labels = {task: _nearest(label, self.size) for task, label in labels.items()}
        return {"id": sample_id, "image": image, **labels}

    # ---------------------------------------------------------------------------------------------- decoders
    def _semseg(self, sample_id: str) -> np.ndarray:
        path = self.path(sample_id, "semseg")
        if not path.is_file():
            train = path.with_name(f"{sample_id}{SUFFIXES['train_ids']}")
            raise FileNotFoundError(f"{path} and {train}: neither semseg file exists")
        raw = read_label_png(path)
        if raw.ndim != 2:
            raise DataFileError(path, f"semseg must be a 2-D [H, W] image, got shape {raw.shape}")
        if path.name.endswith(SUFFIXES["train_ids"]):
            bad = np.unique(raw[(raw >= NUM_CLASSES) & (raw != IGNORE_INDEX)])
            if bad.size:
                raise DataFileError(path, f"trainIds {bad[:10].tolist()} are outside 0..{NUM_CLASSES - 1} and "
                                          f"{IGNORE_INDEX} (the 19 Cityscapes classes, {IGNORE_INDEX} = ignored)")
            return raw.astype(np.uint8)
        bad = np.unique(raw[(raw < 0) | (raw > MAX_LABEL_ID)])
        if bad.size:
            raise DataFileError(path, f"label ids {bad[:10].tolist()} are outside 0..{MAX_LABEL_ID} (the Cityscapes "
                                      f"labelIds; instanceIds or color images are other files)")
        return train_ids(raw)

    def _depth(self, sample_id: str) -> np.ndarray:
        raw = read_uint16_png(self.path(sample_id, "depth"))
        baseline, fx = read_stereo_camera(self.path(sample_id, "camera"))
        return disparity_to_depth(raw, baseline, fx, self.max_depth)
