"""PASCAL-Context multi-task (`PASCAL_MT` / `PASCALContext`) reader, producing the toolkit's label convention.

Layout (datasets_eval.md §2.1): `JPEGImages/<id>.jpg`, `ImageSets/Context/{train,val}.txt`,
`semseg/VOC12/<id>.png` (used first) else `semseg/pascal-context/<id>.png`, `pascal-context/trainval/<id>.mat`
(`LabelMap`, 459 Context classes, 0 = unlabeled), `human_parts/<id>.mat` (PASCAL-Part `anno` struct),
`normals_distill/<id>.png`, `sal_distill/<id>.png`.
Raw samples (numpy, before transforms): image uint8 [H,W,3]; semseg uint8 0..20 / 255; human_parts uint8 0..6,
or all 255 when the image has no person with parts; sal uint8 {0,1} (png/255 > 0.5); normals float32 [H,W,3]
(2v/255-1, only on the NYU-compatible Context classes, else 255); edge float32 {0,1}
(= thin(|Laplacian(LabelMap)| > 0)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..config import read_json
from ..tasks import IGNORE_INDEX
from .formats import (
    DataFileError, check_label_size, decode_normals_png, read_label_png, read_mat_array, read_parts_anno, read_rgb,
    image_size, read_rgb_label, read_split_ids,
)
from .info import get_dataset_info
from .reader_base import ReaderBase

PASCAL_TASKS = ("semseg", "human_parts", "sal", "normals", "edge")
PASCAL_NUM_CLASSES = 21
PERSON_CLASS = 15
# Context ids (of the 459-class LabelMap) on which the distilled normals are kept: the Context classes whose name
# is also an NYUDv2 class name (excluding 'unknown'), plus 'tvmonitor'. Derived offline from the name lists that
# MTI-Net/ATRC ship as db_info/{context_classes,nyu_classes}.json (not redistributed here); it has 170 ids, the
# count datasets_eval.md §2.2 gives. Pass `normals_context_ids=` to PascalReader to use a different set.
PASCAL_NORMALS_CONTEXT_IDS = frozenset((
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55, 56,
    59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115, 122, 124,
    135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195, 197, 199, 202,
    213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255, 260, 261,
    263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309, 310, 314,
    315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380, 383,
    384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 427, 429, 430, 432, 440, 441, 442,
    443, 444, 446, 454, 457,
))
# PASCAL-Part person part names grouped into the 6 parts used by every multi-task codebase (1..6; 0 = background).
HUMAN_PART_GROUPS = {
    **dict.fromkeys(("hair", "head", "lear", "rear", "leye", "reye", "lebrow", "rebrow", "mouth", "nose"), 1),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}
PASCAL_FOLDERS = {
    "image": "JPEGImages", "semseg": "semseg", "human_parts": "human_parts", "sal": "sal_distill",
    "normals": "normals_distill", "edge": "pascal-context/trainval",
}
PASCAL_GET_IT = get_dataset_info("pascal").how_to_get()


# ------------------------------------------------------------------------------------------- edges from LabelMap
def label_map_edges(label_map: np.ndarray) -> np.ndarray:
    """Boundaries between any two different Context labels: thin(|Laplacian(LabelMap)| > 0), float32 {0, 1}.

    The Laplacian is the 4-neighbour 3x3 kernel with mirrored borders (OpenCV's `Laplacian` default)."""
    from scipy.ndimage import laplace

    from ..metrics.thinning import thin  # the one Guo-Hall thinning (bwmorph 'thin'), shared with the edge metric

    lap = laplace(np.asarray(label_map, dtype=np.float64), mode="mirror")
    return thin(np.abs(lap) > 0).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- reader
class PascalReader(ReaderBase):
    """Reads one split of a PASCAL-Context multi-task root into raw numpy samples (see the module docstring)."""

    dataset = "pascal"
    TASKS = PASCAL_TASKS
    FOLDERS = PASCAL_FOLDERS
    SEMSEG_SUBFOLDERS = ("VOC12", "pascal-context")  # semseg/<sub>/<id>.png, the first one holding the id is used

    def __init__(self, root: str | Path, split: str, tasks: Sequence[str] = PASCAL_TASKS,
                 normals_context_ids: Iterable[int] | None = None):
        self._open(root, split, tasks, "PASCAL-Context", PASCAL_GET_IT)
        self.normals_context_ids = np.array(sorted(PASCAL_NORMALS_CONTEXT_IDS if normals_context_ids is None
                                                   else {int(i) for i in normals_context_ids}), dtype=np.int64)
        needed = {"image", *self.tasks} | ({"edge"} if "normals" in self.tasks else set())  # normals need LabelMap
        for key in sorted(needed):
            folder = self.root / PASCAL_FOLDERS[key]
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: folder is missing from the PASCAL-Context root (needed for "
                                        f"{'the LabelMap' if key == 'edge' else key}). {PASCAL_GET_IT}")
        problem = self.folder_problem(self.root, "semseg") if "semseg" in self.tasks else None
        if problem:
            raise FileNotFoundError(f"{problem} of PNGs. {PASCAL_GET_IT}")
        self.ids = read_split_ids(self.split_file(self.root, split))

    @classmethod
    def from_config(cls, root: str | Path, split: str, tasks: Sequence[str], cfg) -> "PascalReader":
        """The reader a `DataConfig` asks for (its `normals_context_ids_file`, a JSON list of Context ids)."""
        ids = None
        if cfg.normals_context_ids_file is not None:
            path = Path(cfg.normals_context_ids_file)
            ids = read_json(path, "data.normals_context_ids_file (a JSON list of PASCAL-Context ids)")
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ValueError(f"{path}: expected a JSON list of integer PASCAL-Context ids")
        return cls(root, split, tasks, normals_context_ids=ids)

    # --------------------------------------------------- what `data validate` asks of every reader class
    @staticmethod
    def split_file(root: str | Path, split: str) -> Path:
        """Where the id list of `split` lives."""
        return Path(root) / "ImageSets" / "Context" / f"{split}.txt"

    @classmethod
    def folder_problem(cls, root: str | Path, task: str) -> str | None:
        """What is wrong with `task`'s existing folder: semseg's PNGs must sit in a VOC12/ or pascal-context/ one."""
        folder = Path(root) / cls.FOLDERS[task]
        if task == "semseg" and not any((folder / s).is_dir() for s in cls.SEMSEG_SUBFOLDERS):
            return f"{folder}: needs a VOC12/ or pascal-context/ subfolder"
        return None

    @classmethod
    def unmet_needs(cls, root: str | Path, tasks: Sequence[str]) -> dict[str, str]:
        """Tasks (-> problem) that also need another task's folder and it is missing: normals need the LabelMap."""
        label_maps = Path(root) / cls.FOLDERS["edge"]
        if "normals" in tasks and not label_maps.is_dir():
            return {"normals": f"{label_maps}: LabelMap folder is missing (the normals mask needs it)"}
        return {}

    @classmethod
    def for_validation(cls, root: str | Path, split: str, tasks: Sequence[str], *, flavour: str | None = None,
                       normals_context_ids: Iterable[int] | None = None) -> "PascalReader":
        """The reader that checks a split, masking normals with `normals_context_ids` (there is no flavour)."""
        return cls(root, split, tasks, normals_context_ids=normals_context_ids)

    def read_shared(self, sample_id: str, tasks: Sequence[str],
                    image_shape: tuple[int, int] | None) -> np.ndarray | None:
        """The LabelMap that edge and normals are derived from (None if neither is checked), read once per sample;
        raises if it is unreadable or not the image's size, so a broken one is reported once."""
        if "edge" not in tasks and "normals" not in tasks:
            return None
        label_map = self.read_label_map(sample_id)
        if image_shape is not None and label_map.shape != tuple(image_shape):
            raise DataFileError(self.label_map_path(sample_id), f"LabelMap is {label_map.shape[0]}x"
                                f"{label_map.shape[1]} but the image is {image_shape[0]}x{image_shape[1]}")
        return label_map

    def read_label_to_check(self, sample_id: str, task: str, image_shape: tuple[int, int] | None,
                            shared: np.ndarray | None) -> np.ndarray | None:
        """`task`'s decoded label, for `data validate` to compare with the image; None when nothing is left to check:
        edge is the LabelMap (checked by `read_shared`), human_parts needs the image size, and normals without a
        LabelMap can only have their own file read."""
        if task == "edge" or (task == "human_parts" and image_shape is None):
            return None
        if task == "normals" and shared is None:
            read_rgb_label(self.path(sample_id, task))
            return None
        return self.read_label(sample_id, task, image_shape=image_shape, label_map=shared)

    def path(self, sample_id: str, key: str) -> Path:
        if key == "semseg":
            voc = self.root / "semseg" / "VOC12" / f"{sample_id}.png"
            return voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{sample_id}.png"
        ext = {"image": ".jpg", "human_parts": ".mat", "sal": ".png", "normals": ".png", "edge": ".mat"}[key]
        return self.root / PASCAL_FOLDERS[key] / f"{sample_id}{ext}"

    def label_map_path(self, sample_id: str) -> Path:
        return self.path(sample_id, "edge")

    def read_image(self, sample_id: str) -> np.ndarray:
        return read_rgb(self.path(sample_id, "image"))

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of sample `index`, read from the image header only."""
        return image_size(self.path(self.ids[index], "image"))

    def read_label_map(self, sample_id: str) -> np.ndarray:
        path = self.label_map_path(sample_id)
        lm = read_mat_array(path, "LabelMap")
        if lm.ndim != 2:
            raise DataFileError(path, f"LabelMap must be 2-D [H, W], got shape {lm.shape}")
        if lm.dtype.kind == "f" and not (np.isfinite(lm).all() and (lm == np.round(lm)).all()):
            raise DataFileError(path, "LabelMap has non-integer values")
        if lm.min() < 0:
            raise DataFileError(path, f"LabelMap has negative class ids (min {lm.min()})")
        return lm.astype(np.int64)

    def read_label(self, sample_id: str, task: str, image_shape: tuple[int, int] | None = None,
                   label_map: np.ndarray | None = None) -> np.ndarray:
        if task == "semseg":
            return self._semseg(sample_id)
        if task == "sal":
            return self._sal(sample_id)
        if task == "human_parts":
            return self._human_parts(sample_id, image_shape or self._image_shape(sample_id))
        if label_map is None:
            label_map = self.read_label_map(sample_id)
        if task == "edge":
            return label_map_edges(label_map)
        if task == "normals":
            return self._normals(sample_id, label_map)
        raise KeyError(f"PASCAL-Context has no task {task!r}")

    def read(self, index: int) -> dict:
        sample_id = self.ids[index]
        image = self.read_image(sample_id)
        shape = image.shape[:2]
        sample = {"id": sample_id, "image": image}
        label_map = None
        if "edge" in self.tasks or "normals" in self.tasks:
            label_map = self.read_label_map(sample_id)
            check_label_size(self.label_map_path(sample_id), label_map, shape, "LabelMap")
        for task in self.tasks:
            label = self.read_label(sample_id, task, image_shape=shape, label_map=label_map)
            check_label_size(self.path(sample_id, task), label, shape, task)
            sample[task] = label
        return sample

    # ---------------------------------------------------------------------------------------------- decoders
    def _image_shape(self, sample_id: str) -> tuple[int, int]:
        return image_size(self.path(sample_id, "image"))

    def _semseg(self, sample_id: str) -> np.ndarray:
        path = self.path(sample_id, "semseg")
        if not path.is_file():
            raise FileNotFoundError(f"{self.root / 'semseg' / 'VOC12' / (sample_id + '.png')} and {path}: "
                                    f"neither semseg file exists")
        label = read_label_png(path)
        bad = np.unique(label[(label > PASCAL_NUM_CLASSES - 1) & (label != IGNORE_INDEX)])
        if bad.size:
            raise DataFileError(path, f"semseg values {bad[:10].tolist()} are outside 0..20 and 255 "
                                      f"(21 VOC classes incl. background, 255 = void)")
        return label.astype(np.uint8)

    def _sal(self, sample_id: str) -> np.ndarray:
        path = self.path(sample_id, "sal")
        raw = read_label_png(path)
        if raw.dtype != np.uint8:
            raise DataFileError(path, f"saliency PNG must be 8-bit greyscale, got values up to {raw.max()}")
        return (raw.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)

    def _normals(self, sample_id: str, label_map: np.ndarray) -> np.ndarray:
        path = self.path(sample_id, "normals")
        normals = decode_normals_png(read_rgb_label(path))
        check_label_size(path, normals, label_map.shape, "normals (vs LabelMap)")
        keep = np.isin(label_map, self.normals_context_ids)
        normals[~keep] = IGNORE_INDEX
        normals[np.linalg.norm(normals, axis=2) == 0] = IGNORE_INDEX
        return normals

    def _human_parts(self, sample_id: str, shape: tuple[int, int]) -> np.ndarray:
        path = self.path(sample_id, "human_parts")
        parts_map = np.zeros(shape, dtype=np.uint8)
        for k, obj in enumerate(read_parts_anno(path)):
            if obj.class_ind != PERSON_CLASS or not obj.parts:
                continue
            if obj.mask.shape != tuple(shape):
                raise DataFileError(path, f"object {k} mask is {obj.mask.shape} but the image is {tuple(shape)}")
            for name, mask in obj.parts:
                if name not in HUMAN_PART_GROUPS:
                    raise DataFileError(path, f"object {k} has unknown PASCAL-Part person part {name!r}; known: "
                                              f"{', '.join(sorted(HUMAN_PART_GROUPS))}")
                if mask.shape != tuple(shape):
                    raise DataFileError(path, f"object {k} part {name!r} mask is {mask.shape} but the image is "
                                              f"{tuple(shape)}")
                parts_map[mask.astype(bool)] = HUMAN_PART_GROUPS[name]
        if not (parts_map > 0).any():  # no person with parts: the whole image is ignored for this task
            parts_map[:] = IGNORE_INDEX
        return parts_map
