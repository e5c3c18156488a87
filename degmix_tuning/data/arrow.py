"""Arrow copy of a dataset root: decoded raw labels (before transforms) in a memory-mapped `datasets.Dataset`.

Why: decoding PNG/.mat files and deriving PASCAL edges (Laplacian + thinning) per sample costs CPU every epoch;
the Arrow copy stores the decoded arrays once, bit-exact, and DataLoader workers read them through the page cache.
Each row holds `id`, `height`, `width` and one binary cell per array (C-order bytes of a fixed dtype, see
`ARRAY_LAYOUT`). Splits are saved with `DatasetDict.save_to_disk`; `degmix_arrow.json` records dataset and tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..runtime import current_umask

ARROW_META = "degmix_arrow.json"
ARROW_FORMAT_VERSION = 1
# array name -> (dtype, channels; 0 = [H, W])
ARRAY_LAYOUT = {
    "image": ("uint8", 3), "semseg": ("uint8", 0), "human_parts": ("uint8", 0), "sal": ("uint8", 0),
    "depth": ("float32", 0), "normals": ("float32", 3), "edge": ("float32", 0),
}


def _features(tasks: Sequence[str]):
    import datasets

    cols = {"id": datasets.Value("string"), "height": datasets.Value("int32"), "width": datasets.Value("int32")}
    for key in ("image", *tasks):
        cols[key] = datasets.Value("binary")
    return datasets.Features(cols)


def _encode(key: str, array: np.ndarray, shape: tuple[int, int], sample_id: str) -> bytes:
    dtype, ch = ARRAY_LAYOUT[key]
    expect = (*shape, ch) if ch else tuple(shape)
    if array.shape != expect or array.dtype != np.dtype(dtype):
        raise ValueError(f"sample {sample_id!r}: {key} is {array.dtype} {array.shape}, expected {dtype} {expect}")
    return np.ascontiguousarray(array).tobytes()


def _decode(key: str, blob: bytes, height: int, width: int) -> np.ndarray:
    dtype, ch = ARRAY_LAYOUT[key]
    shape = (height, width, ch) if ch else (height, width)
    return np.frombuffer(blob, dtype=dtype).reshape(shape).copy()


def convert_to_arrow(make_reader: Callable[[str], object], out_dir: str | Path,
                     splits: Sequence[str] = ("train", "val"), max_samples: int | None = None,
                     log: Callable[[str], None] | None = None) -> Path:
    """Write every split of `make_reader(split)` (a NYUDReader/PascalReader) to `out_dir` (must not exist or be
    empty). Written to a temporary sibling folder first and renamed, so a crash leaves no half copy behind.

    Progress is `log("<split>: i/n")` every 100 samples and at the end of each split; datasets' own progress bars
    (which label every generated split "train" and add one bar per cache and save step) are off meanwhile."""
    import datasets
    from datasets import utils as ds_utils

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output folder exists and is not empty; choose a new folder")
    readers = {split: make_reader(split) for split in splits}  # a wrong root fails here, before anything is made
    out.parent.mkdir(parents=True, exist_ok=True)
    first = next(iter(readers.values()))
    dataset_name, tasks = first.dataset, tuple(first.tasks)

    def rows(split: str):
        reader = readers[split]
        n = len(reader) if max_samples is None else min(len(reader), max_samples)
        for i in range(n):
            sample = reader.read(i)
            h, w = sample["image"].shape[:2]
            row = {"id": sample["id"], "height": h, "width": w}
            for key in ("image", *tasks):
                row[key] = _encode(key, sample[key], (h, w), sample["id"])
            if log and ((i + 1) % 100 == 0 or i + 1 == n):
                log(f"{split}: {i + 1}/{n}")
            yield row

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    bars_were_on = not ds_utils.are_progress_bars_disabled()
    ds_utils.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".arrow-cache-") as cache:
            parts = {}
            for split in splits:
                parts[split] = datasets.Dataset.from_generator(
                    rows, features=_features(tasks), cache_dir=cache, gen_kwargs={"split": split},
                    split=datasets.NamedSplit(split), fingerprint=uuid.uuid4().hex, writer_batch_size=16)
            datasets.DatasetDict(parts).save_to_disk(str(tmp / "splits"))
        meta = {"dataset": dataset_name, "tasks": list(tasks), "splits": {s: len(parts[s]) for s in splits},
                "format_version": ARROW_FORMAT_VERSION, "layout": {k: list(v) for k, v in ARRAY_LAYOUT.items()},
                "source_root": str(getattr(first, "root", "")), "flavour": getattr(first, "flavour", None)}
        (tmp / ARROW_META).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; the copy is an ordinary folder for every user
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bars_were_on:
            ds_utils.enable_progress_bars()
    return out


def read_arrow_meta(path: str | Path) -> dict:
    path = Path(path)
    meta_file = path / ARROW_META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: not an Arrow copy made by `degmix-tuning data to-arrow` "
                                f"({ARROW_META} is missing)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format_version") != ARROW_FORMAT_VERSION:
        raise ValueError(f"{meta_file}: Arrow format version {meta.get('format_version')} is not "
                         f"{ARROW_FORMAT_VERSION}; re-create it with `degmix-tuning data to-arrow`")
    return meta


class ArrowSplitReader:
    """Same raw samples as the file readers, read from a memory-mapped Arrow copy."""

    def __init__(self, path: str | Path, split: str, tasks: Sequence[str]):
        import datasets

        self.root = Path(path)
        meta = read_arrow_meta(self.root)
        self.dataset = meta["dataset"]
        missing = [t for t in tasks if t not in meta["tasks"]]
        if missing:
            raise KeyError(f"{self.root}: the Arrow copy has no {missing} labels (it has {meta['tasks']}); "
                           f"re-create it from the full root")
        if split not in meta["splits"]:
            raise KeyError(f"{self.root}: the Arrow copy has no split {split!r} (it has {list(meta['splits'])})")
        self.tasks = tuple(tasks)
        self.split = split
        self._table = datasets.load_from_disk(str(self.root / "splits" / split)).select_columns(
            ["id", "height", "width", "image", *self.tasks])
        self.ids = list(self._table["id"])
        self._sizes: list | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of sample `index` from the stored height/width columns (no image decoded)."""
        if self._sizes is None:
            self._sizes = list(zip(self._table["height"], self._table["width"]))
        h, w = self._sizes[int(index)]
        return int(h), int(w)

    def read(self, index: int) -> dict:
        row = self._table[int(index)]
        h, w = int(row["height"]), int(row["width"])
        sample = {"id": row["id"]}
        for key in ("image", *self.tasks):
            sample[key] = _decode(key, row[key], h, w)
        return sample
