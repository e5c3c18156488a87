"""Where the blocks are: stages, blocks and target layers of any backbone in the slot, found by module type.

A *stage* is what produces one returned feature map: Swin `layers.i`, ConvNeXt `stages.i`, ResNet `layer{i}`, RegNet
`s{i}`, for a plain ViT the run of blocks up to the tapped block `blocks.k`, for EfficientNet/MobileNetV3 the run of
untapped stages up to the tapped one (`blocks.3` + `blocks.4`). It has `blocks` (the repeated units, the last one
makes the map) and `transition` modules (stage parts outside the blocks: Swin PatchMerging, ConvNeXt downsample).
Everything before the first stage is the stem.
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
    tail: list[nn.Module] = field(default_factory=list)  # per-sample norms the tapped module runs after its blocks


def network_of(backbone: nn.Module) -> nn.Module:
    """The module whose submodule names `feature_info` refers to (`TimmBackbone.model`)."""
    return getattr(backbone, "model", backbone)


_CONTAINERS = (nn.Sequential, nn.ModuleList)
_PER_SAMPLE_NORMS = (nn.LayerNorm, nn.GroupNorm)


def find_stages(backbone: nn.Module) -> list[Stage]:
    """One `Stage` per returned feature map, in order.

    A tap inside an indexed container (`blocks.4` of EfficientNet, `blocks.7` of a ViT) owns the untapped siblings
    since the previous tap, so every unit between the stem and the last tap belongs to exactly one stage.
    """
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
            net.get_submodule(name)
        except AttributeError:
            raise ValueError(f"feature_info names {name!r}, not a submodule of {type(net).__name__}") from None
        parent_name, _, idx = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        if isinstance(parent, _CONTAINERS) and idx.isdigit():  # a run of siblings up to the tap
            start = prev_index.get(parent_name, -1) + 1
            prev_index[parent_name] = int(idx)
            units = [(f"{parent_name}.{i}", parent[i], True) for i in range(start, int(idx) + 1)]
        else:  # a named stage (ResNet layer1, RegNet s1, Swin layers.0 via its container above)
            units = [(name, net.get_submodule(name), False)]
        stage = Stage(name, [])
        for unit_name, unit, in_run in units:
            _add_unit(stage, unit_name, unit, in_run, is_tap=unit_name == name)
        if not stage.blocks:
            raise ValueError(f"feature level {name!r} of {type(net).__name__} has no blocks")
        stages.append(stage)
    return stages


def _add_unit(stage: Stage, name: str, unit: nn.Module, in_run: bool, is_tap: bool) -> None:
    """Append one unit's blocks (and transitions) to `stage`."""
    inner = getattr(unit, "blocks", None)
    if isinstance(inner, _CONTAINERS):  # Swin / ConvNeXt / PVT / MetaFormer stage: blocks + transitions
        children = list(unit.named_children())
        stage.blocks += list(inner)
        stage.block_names += [f"{name}.blocks.{i}" for i in range(len(inner))]
        stage.transitions += [m for n, m in children if n != "blocks" and _has_params(m)]
        if is_tap:  # children registered after the blocks, e.g. PVT-v2's stage norm
            after = children[[n for n, _ in children].index("blocks") + 1:]
            stage.tail = [m for _, m in after if isinstance(m, _PER_SAMPLE_NORMS)]
        return
    if isinstance(unit, _CONTAINERS):  # ResNet layer, EfficientNet stage: a sequence of blocks
        stage.blocks += list(unit)
        stage.block_names += [f"{name}.{i}" for i in range(len(unit))]
        return
    children = [(n, m) for n, m in unit.named_children() if _has_params(m)]
    if not in_run and children and len({type(m) for _, m in children}) == 1:
        stage.blocks += [m for _, m in children]  # RegNet stage: b1, b2, ... of one block type
        stage.block_names += [f"{name}.{n}" for n, _ in children]
        return
    stage.blocks.append(unit)  # a ViT/Mixer block in a flat run, or a stage that is one unit
    stage.block_names.append(name)


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def route_through_modules(net: nn.Module) -> int:
    """Make attention modules call their `qkv` Linear as a module; returns how many were switched.

    timm's Swin-V2, EVA and BEiT attention compute `F.linear(x, self.qkv.weight, q_bias|0|v_bias)`, which bypasses
    whatever wraps `qkv` (a LoRA there would be a silent no-op). Their `qkv_bias_separate` switch computes
    `self.qkv(x) + bias` instead: the same numbers, through the module.
    """
    switched = 0
    for m in net.modules():
        if getattr(m, "qkv_bias_separate", None) is False and isinstance(getattr(m, "qkv", None), nn.Linear):
            m.qkv_bias_separate = True
            switched += 1
    return switched


def is_target(module: nn.Module, target_types: tuple[str, ...]) -> bool:
    for t in target_types:
        if t not in TARGET_TYPES:
            raise ValueError(f"unknown target type {t!r}; choose from {sorted(TARGET_TYPES)}")
    if isinstance(module, nn.Conv2d):
        return "conv2d" in target_types and module.groups == 1
    return isinstance(module, nn.Linear) and "linear" in target_types


# modules inside blocks that compute attention biases from the fixed coordinate table, not from the token stream
# (Swin-V2's continuous position bias, MaxViT-rmlp's relative-position MLP): not adapter targets; the MTLoRA/DiTASK
# extras train them with the other position biases (`BackboneExtras.position_bias`)
POSITION_MODULES = {"cpb_mlp", "rel_pos"}


def block_targets(block: nn.Module, target_types: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """(name inside the block, module) of every target layer of one block, in registration order."""
    return [(n, m) for n, m in block.named_modules()
            if n and is_target(m, target_types) and not set(n.split(".")) & POSITION_MODULES]


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
    "NORM_TYPES", "POSITION_MODULES", "Stage", "TARGET_TYPES", "TunerLayer", "block_targets", "find_stages",
    "is_target", "network_of", "replace_module", "require_targets", "route_through_modules", "target_names",
]
