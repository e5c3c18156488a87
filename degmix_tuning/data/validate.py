"""Check a whole NYUD-v2 / PASCAL-Context root and list EVERY problem (not just the first), with file names.

Uses the same decoders as training, so a root that validates cleanly is one the readers accept. Problems make
`degmix-tuning data validate` exit 1; warnings (legal but unusual data, e.g. non-binary edge maps) do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .formats import read_rgb_label, read_split_ids
from .info import get_dataset_info

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

    @property
    def ok(self) -> bool:
        return not self.problems


def _msg(exc: BaseException) -> str:
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)


def _split_file(dataset: str, root: Path, split: str) -> Path:
    return root / ("gt_sets" if dataset == "nyud" else "ImageSets/Context") / f"{split}.txt"


def validate_root(dataset: str, root: str | Path, splits: Sequence[str] = ("train", "val"),
                  tasks: Sequence[str] | None = None, format: str = "auto",
                  normals_context_ids: Iterable[int] | None = None, limit: int | None = None,
                  progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Read every file of every listed id (up to `limit` per split) and collect all problems."""
    from .nyud import NYUD_FOLDERS, NYUD_GET_IT, NYUD_TASKS, NYUDReader, detect_nyud_flavour
    from .pascal import PASCAL_FOLDERS, PASCAL_GET_IT, PASCAL_TASKS, PascalReader

    root = Path(root)
    report = ValidationReport(dataset=dataset, root=root)
    if dataset not in ("nyud", "pascal"):
        raise KeyError(f"unknown dataset {dataset!r}; use nyud or pascal")
    all_tasks, folders, get_it = ((NYUD_TASKS, NYUD_FOLDERS, NYUD_GET_IT) if dataset == "nyud"
                                  else (PASCAL_TASKS, PASCAL_FOLDERS, PASCAL_GET_IT))
    tasks = tuple(tasks or all_tasks)
    bad_tasks = [t for t in tasks if t not in all_tasks]
    if bad_tasks:
        raise KeyError(f"{dataset} has no task(s) {bad_tasks}; it has {', '.join(all_tasks)}")
    if not root.is_dir():
        report.problems.append(f"{root}: dataset root does not exist. {get_it}")
        return report

    # folders: a missing one is one problem, and its files are not checked one by one
    if not (root / folders["image"]).is_dir():
        report.problems.append(f"{root / folders['image']}: image folder is missing")
        return report
    present = []
    for task in tasks:
        folder = root / folders[task]
        if not folder.is_dir():
            report.problems.append(f"{folder}: folder for {task} is missing")
        elif task == "semseg" and dataset == "pascal" and not any(
                (folder / s).is_dir() for s in ("VOC12", "pascal-context")):
            report.problems.append(f"{folder}: needs a VOC12/ or pascal-context/ subfolder")
        else:
            present.append(task)
    if dataset == "pascal" and "normals" in present and not (root / folders["edge"]).is_dir():
        report.problems.append(f"{root / folders['edge']}: LabelMap folder is missing (the normals mask needs it)")
        present.remove("normals")

    if dataset == "nyud":
        try:
            report.flavour = detect_nyud_flavour(root) if format.lower() == "auto" else format.upper()
        except _EXPECTED_ERRORS as exc:
            report.problems.append(_msg(exc))
            return report

    # split lists
    split_ids: dict[str, list[str]] = {}
    for split in splits:
        try:
            split_ids[split] = read_split_ids(_split_file(dataset, root, split))
        except _EXPECTED_ERRORS as exc:
            report.problems.append(_msg(exc))
    names = list(split_ids)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(split_ids[a]) & set(split_ids[b]))
            if shared:
                report.problems.append(f"splits {a!r} and {b!r} share {len(shared)} ids (e.g. {shared[:3]}); "
                                       f"train and val must be disjoint")

    for split, ids in split_ids.items():
        if dataset == "nyud":
            reader = NYUDReader(root, split, present, format=report.flavour)
        else:
            reader = PascalReader(root, split, present, normals_context_ids=normals_context_ids)
        n = len(ids) if limit is None else min(limit, len(ids))
        for k, sample_id in enumerate(ids[:n]):
            _check_sample(reader, dataset, split, sample_id, present, report)
            if progress and (k + 1) % 200 == 0:
                progress(f"{split}: checked {k + 1}/{n}")
        report.checked[split] = n
    crop = get_dataset_info(dataset).crop_size
    if report.max_image_size and (report.max_image_size[0] > crop[0] or report.max_image_size[1] > crop[1]):
        h, w = report.max_image_size
        report.warnings.append(f"the largest image is {h}x{w} (HxW), larger than the default {dataset} crop/pad size "
                               f"{crop[0]}x{crop[1]}; evaluation never resizes, so set data.crop_size={h},{w} "
                               f"(or larger)")
    return report


def _check_sample(reader, dataset: str, split: str, sample_id: str, tasks: Sequence[str],
                  report: ValidationReport) -> None:
    where = f"[{split} {sample_id}]"
    shape = None
    try:
        shape = reader.read_image(sample_id).shape[:2]
        old = report.max_image_size or (0, 0)
        report.max_image_size = (max(old[0], shape[0]), max(old[1], shape[1]))
    except _EXPECTED_ERRORS as exc:
        report.problems.append(f"{where} {_msg(exc)}")

    label_map = None
    label_map_failed = False
    if dataset == "pascal" and ("edge" in tasks or "normals" in tasks):
        try:
            label_map = reader.read_label_map(sample_id)
            if shape is not None and label_map.shape != tuple(shape):
                report.problems.append(f"{where} {reader.label_map_path(sample_id)}: LabelMap is "
                                       f"{label_map.shape[0]}x{label_map.shape[1]} but the image is "
                                       f"{shape[0]}x{shape[1]}")
                label_map_failed = True
        except _EXPECTED_ERRORS as exc:
            report.problems.append(f"{where} {_msg(exc)}")
            label_map_failed = True

    for task in tasks:
        path = reader.path(sample_id, task)
        if dataset == "pascal" and task == "edge":
            continue  # the edge label is derived from the LabelMap, checked above
        if dataset == "pascal" and task == "normals" and label_map_failed:
            try:
                read_rgb_label(path)  # still report a broken normals file on its own
            except _EXPECTED_ERRORS as exc:
                report.problems.append(f"{where} {_msg(exc)}")
            continue
        try:
            if dataset == "pascal":
                if task == "human_parts" and shape is None:
                    continue  # needs the image size; the image problem is already listed
                label = reader.read_label(sample_id, task, image_shape=shape, label_map=label_map)
            else:
                label = reader.read_label(sample_id, task)
        except _EXPECTED_ERRORS as exc:
            report.problems.append(f"{where} {_msg(exc)}")
            continue
        if shape is not None and tuple(label.shape[:2]) != tuple(shape):
            report.problems.append(f"{where} {path}: {task} label is {label.shape[0]}x{label.shape[1]} (HxW) but "
                                   f"the image is {shape[0]}x{shape[1]}")
        if task == "edge" and not np.isin(label, (0.0, 1.0)).all():
            report.warnings.append(f"{where} {path}: edge map is not binary (values strictly between 0 and 1); "
                                   f"the loss will treat them as soft targets")
