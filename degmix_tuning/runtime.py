"""Facts about the running process that several layers need (data, training, checkpoints), kept in one place so
that data code never imports training code for them."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# `--import` modules of this process (names, or absolute .py paths): recorded in the run config (model.imports), so
# evaluate / predict / resume import them again without being told
IMPORTED_PLUGINS: list[str] = []


def record_plugins(modules) -> None:
    for module in modules:
        entry = str(Path(module).resolve()) if str(module).endswith(".py") else str(module)
        if entry not in IMPORTED_PLUGINS:
            IMPORTED_PLUGINS.append(entry)


def import_plugin(module: str) -> str:
    """Import one `--import` module: a `.py` path, or a dotted name found on sys.path or else in the current folder
    (as `python -m` would: `accelerate launch` and the `degmix-tuning` script do not put the current folder on
    sys.path). -> the entry to record: a module file's absolute path when the name was found only in the current
    folder (so evaluate / predict / resume find it from any folder), else what was given."""
    path = Path(module)
    if path.suffix == ".py":
        if not path.is_file():
            raise FileNotFoundError(f"--import {module!r}: no such file")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        importlib.import_module(path.stem)
        return module
    try:
        importlib.import_module(module)
        return module
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        cwd = os.getcwd()
        if exc.name not in (top, module) or cwd in sys.path:  # a module missing inside the plugin: its own error
            raise _not_found(module, exc) from None
    sys.path.insert(0, cwd)
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        sys.path.remove(cwd)
        raise _not_found(module, exc) from None
    file = getattr(imported, "__file__", None) or ""
    plain_file = "." not in module and file.endswith(".py") and Path(file).name != "__init__.py"
    return str(Path(file).resolve()) if plain_file else module


def _not_found(module: str, exc: ModuleNotFoundError) -> ValueError:
    return ValueError(f"--import {module!r}: module {exc.name!r} not found (looked on sys.path and in the current "
                      f"folder {os.getcwd()}); pass an importable module name or a path to a .py file")


def is_main_launch_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch job (or a plain single process), before Accelerate exists."""
    return int(os.environ.get("RANK", "0")) == 0


def current_umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["IMPORTED_PLUGINS", "current_umask", "import_plugin", "is_main_launch_process", "record_plugins"]
