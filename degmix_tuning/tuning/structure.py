"""Where the blocks are: stages, blocks and target layers of any backbone in the slot, found by module type.

A *stage* is what produces one returned feature map: Swin `layers.i`, ConvNeXt `stages.i`, ResNet `layer{i}`, or for
a plain ViT the run of blocks up to the tapped block `blocks.k`. It has `blocks` (the repeated units, the last one
makes the map) and `transition` modules (stage parts outside the blocks: Swin PatchMerging, ConvNeXt downsample).
Target layers are the `nn.Linear` / ungrouped `nn.Conv2d` modules inside blocks; grouped (depthwise) convs are
skipped because a low-rank or spectral update of a per-channel kernel is not what these methods describe.

Backbones that are not timm models can expose `tuning_stages() -> list[Stage]` to opt in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

TARGET_TYPES = {"linear": nn.Linear, "conv2d": nn.Conv2d}
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.LocalResponseNorm)


class TunerLayer(nn.Module):
    """What every wrapper a tuning method puts around a frozen module shares (peft's `BaseTunerLayer` idea): the
    wrapped module stays reachable, unchanged and frozen, as `base`; `get_base_layer()` sees through nested wrappers."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def get_base_layer(self) -> nn.Module:
        base = self.base
        while isinstance(base, TunerLayer):
            base = base.base
        return base


@dataclass
class Stage:
    name: str  # module path of the tapped module (relative to the network)
    blocks: list[nn.Module]
    transitions: list[nn.Module] = field(default_factory=list)
    block_names: list[str] = field(default_factory=list)


def network_of(backbone: nn.Module) -> nn.Module:
    """The module whose submodule names `feature_info` refers to (`TimmBackbone.model`)."""
    return getattr(backbone, "model", backbone)


def find_stages(backbone: nn.Module) -> list[Stage]:
    """One `Stage` per returned feature map, in order."""
    if hasattr(backbone, "tuning_stages"):
        return list(backbone.tuning_stages())
    net = network_of(backbone)
    infos = getattr(backbone, "feature_info", ())
    names = [getattr(f, "name", "") for f in infos]
    if not names or not all(names):
        raise ValueError(
            f"cannot find the blocks of {type(backbone).__name__}: its feature_info has no module names. "
            "Use a timm backbone, or give the backbone a tuning_stages() method returning degmix_tuning.tuning.Stage's"
        )
    stages: list[Stage] = []
    prev_index: dict[str, int] = {}
    for name in names:
        try:
            module = net.get_submodule(name)
        except AttributeError:
            raise ValueError(f"feature_info names {name!r}, not a submodule of {type(net).__name__}") from None
        blocks_attr = getattr(module, "blocks", None)
        if isinstance(blocks_attr, (nn.Sequential, nn.ModuleList)):  # Swin / ConvNeXt stage
            blocks = list(blocks_attr)
            block_names = [f"{name}.blocks.{i}" for i in range(len(blocks))]
            transitions = [m for n, m in module.named_children() if n != "blocks" and _has_params(m)]
        elif isinstance(module, (nn.Sequential, nn.ModuleList)):  # ResNet layer
            blocks = list(module)
            block_names = [f"{name}.{i}" for i in range(len(blocks))]
            transitions = []
        else:  # ViT-style tap on a block inside a flat container: the stage is the run of blocks up to it
            parent_name, _, idx = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else None
            if not isinstance(parent, (nn.Sequential, nn.ModuleList)) or not idx.isdigit():
                raise ValueError(f"cannot tell the blocks of feature level {name!r} in {type(net).__name__}")
            start = prev_index.get(parent_name, -1) + 1
            end = int(idx)
            blocks = [parent[i] for i in range(start, end + 1)]
            block_names = [f"{parent_name}.{i}" for i in range(start, end + 1)]
            transitions = []
            prev_index[parent_name] = end
        if not blocks:
            raise ValueError(f"feature level {name!r} of {type(net).__name__} has no blocks")
        stages.append(Stage(name, blocks, transitions, block_names))
    return stages


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def is_target(module: nn.Module, target_types: tuple[str, ...]) -> bool:
    for t in target_types:
        if t not in TARGET_TYPES:
            raise ValueError(f"unknown target type {t!r}; choose from {sorted(TARGET_TYPES)}")
    if isinstance(module, nn.Conv2d):
        return "conv2d" in target_types and module.groups == 1
    return isinstance(module, nn.Linear) and "linear" in target_types


def block_targets(block: nn.Module, target_types: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """(name inside the block, module) of every target layer of one block, in registration order."""
    return [(n, m) for n, m in block.named_modules() if n and is_target(m, target_types)]


def target_names(backbone: nn.Module, target_types: tuple[str, ...], exclude_leaf: tuple[str, ...] = ()) -> list[str]:
    """Full names (relative to `backbone`) of target layers in all blocks, for peft's `target_modules`."""
    prefix = "model." if network_of(backbone) is not backbone else ""
    names = []
    for stage in find_stages(backbone):
        for bname, block in zip(stage.block_names, stage.blocks):
            for n, _ in block_targets(block, target_types):
                if n.rpartition(".")[2] not in exclude_leaf:
                    names.append(f"{prefix}{bname}.{n}")
    return names


def require_targets(names_or_modules: list, method: str, backbone: nn.Module, target_types: tuple[str, ...]) -> None:
    if not names_or_modules:
        raise ValueError(
            f"{method}: no {'/'.join(target_types)} layers in the blocks of {type(network_of(backbone)).__name__}; "
            "set target_types to include the layer type this backbone uses (e.g. target_types=linear,conv2d)"
        )


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` at the dotted path `name` under `root` (works for Sequential/ModuleList indices too)."""
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)


__all__ = [
    "NORM_TYPES", "Stage", "TARGET_TYPES", "TunerLayer", "block_targets", "find_stages", "is_target", "network_of",
    "replace_module", "require_targets", "target_names",
]
