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
