"""Where a synthetic root lives and how it is made: rendered once per parameter set (and renderer source) into
`$DEGMIX_CACHE/synthetic/<key>`, atomically, then reused by every later run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ...runtime import is_main_launch_process
from ..config import DataConfig
from .writer import SYNTHETIC_FORMAT_VERSION, write_synthetic_dataset

__all__ = ["synthetic_cache_dir", "synthetic_root"]

_PACKAGE_DIR = Path(__file__).resolve().parent  # data/synthetic
_DATA_DIR = _PACKAGE_DIR.parent  # data


def _cache_base() -> Path:
    env = os.environ.get("DEGMIX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "degmix_tuning"


def _source_files() -> list[Path]:
    """Every `.py` under `data/synthetic/` (sorted by relative path), then `data/formats.py` (the writer's encoder),
    `data/info.py` (the class lists the scenes label with) and `data/cityscapes.py` (the Cityscapes label ids)."""
    files = sorted((p for p in _PACKAGE_DIR.rglob("*.py") if p.is_file()),
                   key=lambda p: p.relative_to(_DATA_DIR).as_posix())
    return files + [_DATA_DIR / "formats.py", _DATA_DIR / "info.py", _DATA_DIR / "cityscapes.py"]


def _sources_digest() -> bytes:
    h = hashlib.sha256()
    for p in _source_files():
        body = p.read_bytes()
        h.update(f"{p.relative_to(_DATA_DIR).as_posix()}\0{len(body)}\0".encode())
        h.update(body)
    return h.digest()


def _synthetic_key(cfg: DataConfig) -> str:
    """Hash of everything that determines the synthetic files: the parameters and the renderer and writer sources."""
    params = {"flavour": cfg.dataset, "n": cfg.synthetic_n, "size": list(cfg.synthetic_size),
              "seed": cfg.synthetic_seed, "val_fraction": cfg.synthetic_val_fraction,
              "version": SYNTHETIC_FORMAT_VERSION}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode() + _sources_digest())
    h, w = cfg.synthetic_size
    return f"{cfg.dataset}-n{cfg.synthetic_n}-{h}x{w}-{digest.hexdigest()[:12]}"


def synthetic_cache_dir(cfg: DataConfig) -> Path:
    """`$DEGMIX_CACHE/synthetic/<key>` (default `~/.cache/degmix_tuning/...`), keyed by the synthetic parameters."""
    return _cache_base() / "synthetic" / _synthetic_key(cfg)


@contextlib.contextmanager
def _rendering_progress(cfg: DataConfig):
    """A rich bar in a terminal, a line per 10 % otherwise, on the first process only (rendering is done once and
    cached, but the first time it takes a minute or more with nothing else to show)."""
    if not is_main_launch_process() or os.environ.get("DEGMIX_NO_PROGRESS") == "1":
        yield None
        return
    h, w = cfg.synthetic_size
    what = f"rendering {cfg.synthetic_n} synthetic {cfg.dataset} scenes ({h}x{w})"
    if sys.stdout.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"[degmix-tuning] {what}", total=cfg.synthetic_n)
            yield lambda done, total: bar.update(task, completed=done)
        print(f"[degmix-tuning] {what}: done (cached for later runs)")
        return
    print(f"[degmix-tuning] {what} (cached for later runs)", flush=True)
    step = max(1, cfg.synthetic_n // 10)
    yield lambda done, total: (done % step == 0 or done == total) and print(
        f"[degmix-tuning] rendered {done}/{total} scenes", flush=True)


def _generate_synthetic(cfg: DataConfig, final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        with _rendering_progress(cfg) as progress:
            write_synthetic_dataset(tmp / "root", n=cfg.synthetic_n, flavour=cfg.dataset, seed=cfg.synthetic_seed,
                                    size=cfg.synthetic_size, val_fraction=cfg.synthetic_val_fraction,
                                    progress=progress)
        try:
            os.rename(tmp / "root", final)  # atomic: readers never see a half-written root
        except OSError:
            if not (final / "synthetic.json").is_file():  # not a concurrent generator winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def synthetic_root(cfg: DataConfig) -> Path:
    """The cached synthetic root for `cfg`'s synthetic parameters, rendered on first use."""
    final = synthetic_cache_dir(cfg)
    if (final / "synthetic.json").is_file():
        return final
    return _generate_synthetic(cfg, final)
