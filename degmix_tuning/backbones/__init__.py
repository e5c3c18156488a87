"""The backbone slot: a registry of named backbones, with every timm model usable by its timm name.

A new backbone is one file with a factory decorated by `@register_backbone("name")` that returns a
`FeatureBackbone`. Names not in the registry are looked up in timm, so `convnext_tiny`, `resnet50` or
`vit_small_patch16_224` work with no new code. Backbones of other packages plug in without an import: an
installed distribution that declares an entry point in the group `degmix_tuning.backbones`
(`name = "package.module:factory"`) is registered under that name the first time a backbone is looked up;
scripts can also load a module with `--import MODULE` (`import_plugins`).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

import timm

from ..registry import Registry
from .base import FeatureBackbone, FeatureInfo, check_feature_info, freeze_module, is_frozen, state_fingerprint
from .swin import SwinBackbone
from .timm_backbone import LayerNorm2d, TimmBackbone
from .weights import load_backbone_state, read_weights_file

BACKBONES: Registry[Callable[..., FeatureBackbone]] = Registry(
    "backbone", hint="any timm model name works too; a backbone registered in your own file needs --import FILE.py "
    "(or a module name) on the command line, or an import before create_model in Python")


def register_backbone(name: str):
    """Decorator: `@register_backbone("my_net")` on a factory `(**kwargs) -> FeatureBackbone`."""
    return BACKBONES.register(name)


ENTRY_POINT_GROUP = "degmix_tuning.backbones"
_loaded_groups: set[str] = set()


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Register the backbone factories that installed distributions declare in `group` (once). -> their names."""
    if group in _loaded_groups:
        return []
    _loaded_groups.add(group)
    added = []
    for ep in entry_points(group=group):
        if ep.name in BACKBONES:
            continue

        def factory(_ep=ep, **kwargs) -> FeatureBackbone:
            return _ep.load()(**kwargs)

        factory.__doc__ = f"entry point {ep.value} (group {group})"
        BACKBONES.register(ep.name, factory)
        added.append(ep.name)
    return added


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import modules (dotted names, found on sys.path or in the current folder, or .py files) whose import registers
    backbones, tasks or tuning methods; each imported one is recorded (`runtime.record_plugins`), so a run's config
    names it for evaluate / predict / resume."""
    from ..runtime import import_plugin, record_plugins

    for module in modules:
        try:
            entry = import_plugin(module)
        except ModuleNotFoundError as exc:  # the plugin itself imports something that is missing
            raise ValueError(
                f"--import {module!r}: module {exc.name!r} not found; pass an importable module name (on PYTHONPATH, "
                "installed, or in the current folder) or a path to a .py file"
            ) from None
        record_plugins([entry])


def list_backbones() -> list[str]:
    load_entry_points()
    return BACKBONES.names()


def create_backbone(name: str, **kwargs) -> FeatureBackbone:
    """Build a registered backbone, or any timm model by name (`pretrained`, `checkpoint_path`, `img_size`, ...)."""
    if name not in BACKBONES:
        load_entry_points()
    if name in BACKBONES:
        backbone = BACKBONES.get(name)(**kwargs)
    elif timm.is_model(name.split(".")[0]):
        backbone = TimmBackbone(name, **kwargs)
    else:
        BACKBONES.get(name)  # raises a KeyError listing the registered names and close matches
        raise AssertionError("unreachable")
    if not isinstance(backbone, FeatureBackbone):
        raise TypeError(f"backbone factory {name!r} returned {type(backbone).__name__}, not a FeatureBackbone")
    check_feature_info(name, tuple(backbone.feature_info))
    return backbone


# DeGMix's Swin slot: timm Swin weights + a LayerNorm on every stage output, computing the official mmseg features.
_SWIN = {
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_s": "swin_small_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224",
    "swin_l": "swin_large_patch4_window12_384",
}


def _swin_factory(timm_name: str):
    def factory(*, tag: str | None = None, **kwargs) -> FeatureBackbone:
        return SwinBackbone(f"{timm_name}.{tag}" if tag else timm_name, **kwargs)

    factory.__doc__ = f"{timm_name} with per-stage output LayerNorms, official DeGMix padding (backbone slot)."
    return factory


for _alias, _timm_name in _SWIN.items():
    register_backbone(_alias)(_swin_factory(_timm_name))


@register_backbone("tiny_swin")
def tiny_swin(**kwargs) -> FeatureBackbone:
    """A 0.3M-parameter Swin (16/32/64/128 channels, strides 4..32, window 4) for tests and CPU demos.

    Every Swin kwarg can be overridden, e.g. `depths=(2, 2, 2, 2)` builds the official-code test fixture's backbone.
    """
    arch = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4)
    arch.update(kwargs)
    arch["depths"], arch["num_heads"] = tuple(arch["depths"]), tuple(arch["num_heads"])
    return SwinBackbone("swin_tiny_patch4_window7_224", **arch)


from . import swin_synthetic as _swin_synthetic  # noqa: E402,F401 - registers "swin_synthetic" (packaged weights)
from . import vit as _vit  # noqa: E402,F401 - registers "vit_b", "vit_l" (official DeGMix ViT)


__all__ = [
    "BACKBONES", "ENTRY_POINT_GROUP", "FeatureBackbone", "FeatureInfo", "LayerNorm2d", "SwinBackbone", "TimmBackbone",
    "create_backbone", "freeze_module", "import_plugins", "is_frozen", "list_backbones", "load_backbone_state",
    "load_entry_points", "read_weights_file", "register_backbone", "state_fingerprint",
]
