"""The one reader factory: every caller that needs raw samples (datasets, `data to-arrow`) opens them here.

Which class reads a dataset's files lives on its `DatasetInfo` ("module:Class"), as does the text
telling a user how to get the data; a reader class builds itself from a `DataConfig` (`from_config`), so adding a
dataset is one reader module and one `DatasetInfo` registration, with no branch on dataset names here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from .config import DataConfig
from .info import get_dataset_info


def reader_class(dataset: str) -> type:
    """The file-reader class registered for `dataset` (KeyError with close matches for an unknown name).
    `DatasetInfo.reader` is "module:Class": ".nyud:NYUDReader" inside this package, or an absolute module of a
    plugin ("my_pkg.readers:MyReader")."""
    module, _, name = get_dataset_info(dataset).reader.partition(":")
    return getattr(importlib.import_module(module, __package__), name)


def open_reader(cfg: DataConfig, split: str, tasks: Sequence[str] | None = None, root: str | Path | None = None):
    """Raw samples of `split`: the Arrow copy when `cfg.arrow_path` is set, else the dataset's file reader on `root`
    (default: `cfg`'s real root, or its cached synthetic stand-in, generated once). tasks=None: every task."""
    tasks = tuple(get_dataset_info(cfg.dataset).tasks if tasks is None else tasks)
    if cfg.arrow_path:
        from .arrow import ArrowSplitReader

        reader = ArrowSplitReader(cfg.arrow_path, split, tasks)
        if reader.dataset != cfg.dataset:
            raise ValueError(f"data.arrow_path {cfg.arrow_path!r} holds {reader.dataset!r}, "
                             f"but data.dataset is {cfg.dataset!r}")
        return reader
    if root is None:
        from . import resolve_root

        root = resolve_root(cfg)
    return reader_class(cfg.dataset).from_config(root, split, tasks, cfg)


__all__ = ["open_reader", "reader_class"]
