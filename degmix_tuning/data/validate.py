"""Check a whole dataset root (NYUD-v2, PASCAL-Context, Cityscapes) and list EVERY problem, with file names.

Uses the same decoders as training, so a root that validates cleanly is one the readers accept. Problems make
`degmix-tuning data validate` exit 1; warnings (legal but unusual data, e.g. non-binary edge maps) do not.

A split in which a task has no pixel its metric can score (no valid depth, no valid normal, every semseg/parts
label 255, no salient or boundary pixel) is a warning naming the split and the task: every file is readable, but
evaluating on that split reports the task's metrics as missing (and training on it teaches the task nothing, or,
for edges, only "no boundary"). Labels derived from another file (PASCAL-Context's edges, from the LabelMap) are
not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..tasks import IGNORE_INDEX
from .formats import read_split_ids
from .info import get_dataset_info
from .readers import reader_class

_EXPECTED_ERRORS = (FileNotFoundError, ValueError, KeyError, OSError)


@dataclass
class ValidationReport:
    dataset: str
    root: Path
    flavour: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # split -> number of ids checked
    max_image_size: tuple[int, int] | None = None  # largest (H, W) over readable images; eval pads to crop_size
    scored_pixels: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> task -> pixels a metric scores

    @property
    def ok(self) -> bool:
        return not self.problems


def _msg(exc: BaseException) -> str:
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)


def validate_root(dataset: str, root: str | Path, splits: Sequence[str] = ("train", "val"),
                  tasks: Sequence[str] | None = None, format: str = "auto",
                  normals_context_ids: Iterable[int] | None = None, limit: int | None = None,
                  progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Read every file of every listed id (up to `limit` per split) and collect all problems.

    What differs between datasets (folders, split lists, layout quirks, derived labels) is asked of the dataset's
    reader class, so this reads the same for every dataset."""
    reader_cls = reader_class(dataset)  # KeyError naming the known datasets
    root = Path(root)
    report = ValidationReport(dataset=dataset, root=root)
    tasks = tuple(tasks or reader_cls.TASKS)
    bad_tasks = [t for t in tasks if t not in reader_cls.TASKS]
    if bad_tasks:
        raise KeyError(f"{dataset} has no task(s) {bad_tasks}; it has {', '.join(reader_cls.TASKS)}")
    if not root.is_dir():
        report.problems.append(f"{root}: dataset root does not exist. {get_dataset_info(dataset).how_to_get()}")
        return report
    image_folder = root / reader_cls.FOLDERS["image"]
    if not image_folder.is_dir():
        report.problems.append(f"{image_folder}: image folder is missing")
        return report
    present = _present_tasks(reader_cls, root, tasks, report)
    try:
        report.flavour = reader_cls.flavour_of(root, format)
    except _EXPECTED_ERRORS as exc:
        report.problems.append(_msg(exc))
        return report

    for split, ids in _read_splits(reader_cls, root, splits, report).items():
        reader = reader_cls.for_validation(root, split, present, flavour=report.flavour,
                                           normals_context_ids=normals_context_ids)
        n = len(ids) if limit is None else min(limit, len(ids))
        report.scored_pixels[split] = {}
        for k, sample_id in enumerate(ids[:n]):
            _check_sample(reader, split, sample_id, present, report)
            if progress and (k + 1) % 200 == 0:
                progress(f"{split}: checked {k + 1}/{n}")
        report.checked[split] = n
        for task, count in report.scored_pixels[split].items():
            if count == 0:
                report.warnings.append(
                    f"[{split}] {task}: no {SCORED_PIXELS[task][1]} pixel in the {n} checked ids; evaluated on "
                    f"{split}, the {task} metrics would be reported as missing")
    crop = get_dataset_info(dataset).crop_size
    too_big = report.max_image_size and (report.max_image_size[0] > crop[0] or report.max_image_size[1] > crop[1])
    # a reader that reads every sample at data.crop_size (Cityscapes) never exceeds the pad size
    if too_big and not getattr(reader_cls, "RESIZES_TO_CROP", False):
        h, w = report.max_image_size
        report.warnings.append(f"the largest image is {h}x{w} (HxW), larger than the default {dataset} crop/pad size "
                               f"{crop[0]}x{crop[1]}; evaluation never resizes, so set data.crop_size={h},{w} "
                               f"(or larger)")
    return report


# task -> (pixels its metric scores, in a decoded label of the tasks.py conventions; what they are)
SCORED_PIXELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "semseg": (lambda label: label != IGNORE_INDEX, "labelled (non-255)"),
    "human_parts": (lambda label: label != IGNORE_INDEX, "labelled (non-255)"),
    "depth": (lambda label: (label != IGNORE_INDEX) & (label > 0), "valid (non-0, non-255) depth"),
    "normals": (lambda label: (label != IGNORE_INDEX).all(axis=-1), "valid (non-255) normal"),
    "sal": (lambda label: label == 1, "salient (label 1)"),  # maxF has no recall without one
    "edge": (lambda label: label == 1, "boundary (label 1)"),  # nor has odsF
}


def _present_tasks(reader_cls, root: Path, tasks: Sequence[str], report: ValidationReport) -> list[str]:
    """The tasks whose files can be checked; a missing or malformed folder is one problem, not one per file."""
    present = []
    for task in tasks:
        folder = root / reader_cls.FOLDERS[task]
        problem = (f"{folder}: folder for {task} is missing" if not folder.is_dir()
                   else reader_cls.folder_problem(root, task))
        if problem:
            report.problems.append(problem)
        else:
            present.append(task)
    for task, problem in reader_cls.unmet_needs(root, present).items():
        report.problems.append(problem)
        present.remove(task)
    return present


def _split_ids(reader_cls, root: Path, split: str) -> list[str]:
    """The ids of `split`: its split list, or, for a layout without lists (Cityscapes), the reader's `list_ids`."""
    list_ids = getattr(reader_cls, "list_ids", None)
    return list_ids(root, split) if list_ids else read_split_ids(reader_cls.split_file(root, split))


def _read_splits(reader_cls, root: Path, splits: Sequence[str], report: ValidationReport) -> dict[str, list[str]]:
    """The ids of each readable split list; unreadable lists and ids shared by two splits are problems."""
    split_ids: dict[str, list[str]] = {}
    for split in splits:
        try:
            split_ids[split] = _split_ids(reader_cls, root, split)
        except _EXPECTED_ERRORS as exc:
            report.problems.append(_msg(exc))
    names = list(split_ids)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(split_ids[a]) & set(split_ids[b]))
            if shared:
                report.problems.append(f"splits {a!r} and {b!r} share {len(shared)} ids (e.g. {shared[:3]}); "
                                       f"train and val must be disjoint")
    return split_ids


def _check_sample(reader, split: str, sample_id: str, tasks: Sequence[str], report: ValidationReport) -> None:
    where = f"[{split} {sample_id}]"
    shape = None
    try:
        shape = reader.read_image(sample_id).shape[:2]
        old = report.max_image_size or (0, 0)
        report.max_image_size = (max(old[0], shape[0]), max(old[1], shape[1]))
    except _EXPECTED_ERRORS as exc:
        report.problems.append(f"{where} {_msg(exc)}")

    shared = None  # a file several labels derive from (PASCAL's LabelMap); None when there is none or it is broken
    try:
        shared = reader.read_shared(sample_id, tasks, shape)
    except _EXPECTED_ERRORS as exc:
        report.problems.append(f"{where} {_msg(exc)}")

    for task in tasks:
        path = reader.path(sample_id, task)
        try:
            label = reader.read_label_to_check(sample_id, task, shape, shared)
        except _EXPECTED_ERRORS as exc:
            report.problems.append(f"{where} {_msg(exc)}")
            continue
        if label is None:
            continue  # nothing (more) to check for this task, e.g. a label derived from `shared`
        if shape is not None and tuple(label.shape[:2]) != tuple(shape):
            report.problems.append(f"{where} {path}: {task} label is {label.shape[0]}x{label.shape[1]} (HxW) but "
                                   f"the image is {shape[0]}x{shape[1]}")
        if task in SCORED_PIXELS:
            counts = report.scored_pixels.setdefault(split, {})
            counts[task] = counts.get(task, 0) + int(np.count_nonzero(SCORED_PIXELS[task][0](label)))
        if task == "edge" and not np.isin(label, (0.0, 1.0)).all():
            report.warnings.append(f"{where} {path}: edge map is not binary (values strictly between 0 and 1); "
                                   f"the loss will treat them as soft targets")
