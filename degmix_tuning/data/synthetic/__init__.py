"""The synthetic stand-in for NYUD-v2, PASCAL-Context and Cityscapes, used when the real data is not at hand.

Procedurally rendered scenes (`render`, built from `scenes/`) are written in exactly the real on-disk layouts
(`writer`) and read back by the real readers, so a synthetic run exercises the same reading code as a real one.
`cache` renders a root once per parameter set into `$DEGMIX_CACHE/synthetic/` and reuses it.
"""

from .cache import synthetic_cache_dir, synthetic_root
from .writer import FLAVOURS, SYNTHETIC_FORMAT_VERSION, write_synthetic_dataset

_RENDER_NAMES = ("SCENE_KINDS", "SceneArrays", "render_cityscapes_scene", "render_indoor_scene", "render_pascal_scene",
                 "render_scene")


def __getattr__(name: str):
    """The renderer's names, imported on first use: the scene modules cost ~70 ms, which `import degmix_tuning.data`
    (real data included) should not pay."""
    if name in _RENDER_NAMES:
        from . import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FLAVOURS", "SCENE_KINDS", "SYNTHETIC_FORMAT_VERSION", "SceneArrays", "render_cityscapes_scene",
    "render_indoor_scene", "render_pascal_scene", "render_scene", "synthetic_cache_dir", "synthetic_root",
    "write_synthetic_dataset",
]
