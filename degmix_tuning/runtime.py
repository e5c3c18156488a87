"""Facts about the running process that several layers need (data, training, checkpoints), kept in one place so
that data code never imports training code for them."""

from __future__ import annotations

import os
from pathlib import Path

# `--import` modules of this process (names, or absolute .py paths): recorded in the run config (model.imports), so
# evaluate / predict / resume import them again without being told
IMPORTED_PLUGINS: list[str] = []


def record_plugins(modules) -> None:
    for module in modules:
        entry = str(Path(module).resolve()) if str(module).endswith(".py") else str(module)
        if entry not in IMPORTED_PLUGINS:
            IMPORTED_PLUGINS.append(entry)


def is_main_launch_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch job (or a plain single process), before Accelerate exists."""
    return int(os.environ.get("RANK", "0")) == 0


def current_umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["IMPORTED_PLUGINS", "current_umask", "is_main_launch_process", "record_plugins"]
