"""What every dataset reader shares: the split's length and the `data validate` hooks' plain defaults.

A reader whose labels each come from their own file needs no shared per-sample file and checks a label by decoding
it; PASCAL-Context, whose edge and normals derive from one LabelMap, overrides both hooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


class ReaderBase:
    """Defaults for readers (NYUDReader, PascalReader, CityscapesReader); `ids` and `read_label` come from them."""

    ids: list[str]
    TASKS: tuple[str, ...]

    def _open(self, root: str | Path, split: str, tasks: Sequence[str], title: str, get_it: str) -> None:
        """Set root, split and tasks, or say in one line that the root is missing (and where to get the dataset)
        or that a task has no labels in this dataset."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{title} root {str(self.root)!r} does not exist. {get_it}")
        unknown = [t for t in tasks if t not in self.TASKS]
        if unknown:
            raise KeyError(f"{title} has no labels for task(s) {unknown}; it has {', '.join(self.TASKS)}")
        self.tasks = tuple(tasks)
        self.split = split

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def flavour_of(root: str | Path, format: str = "auto") -> str | None:
        """None: one on-disk layout (NYUD-v2 has three flavours and overrides this)."""
        return None

    def read_shared(self, sample_id: str, tasks: Sequence[str], image_shape: tuple[int, int] | None) -> None:
        """The file several labels of a sample derive from: none, each label has its own file."""
        return None

    def read_label_to_check(self, sample_id: str, task: str, image_shape: tuple[int, int] | None,
                            shared: None) -> np.ndarray:
        """`task`'s decoded label, for `data validate` to compare with the image."""
        return self.read_label(sample_id, task)
