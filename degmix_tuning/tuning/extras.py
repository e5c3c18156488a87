"""Backbone parts that MTLoRA's and DiTASK's released code leave trainable next to their adapters ("extras").

Their `mark_only_lora_as_trainable` freezes by substring and keeps `patch_embed`, every `norm`, the
`relative_position_bias_table`s and the PatchMerging `downsample.reduction` trainable. On Swin-T that is
4,896 + 23,040 + 23,322 + 1,548,288 = 1,599,546 parameters: most of the "1.6M" both papers count. Here each part is an
explicit flag, found by structure (see structure.py), so the same flags mean the same thing on any backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..config import ConfigBase
from .structure import NORM_TYPES, find_stages, network_of

POSITION_PARAM_KEYS = ("relative_position_bias_table", "pos_embed", "position_embed", "rel_pos", "cpb_mlp")


@dataclass
class BackboneExtras(ConfigBase):
    """Which non-adapter backbone parameters train. Defaults = MTLoRA/DiTASK released configs (all on)."""

    stem: bool = field(default=True, metadata={"help": "everything before the first stage (Swin/ViT patch_embed, "
                                                       "ConvNeXt/ResNet/EfficientNet stem)"})
    norms: bool = field(default=True, metadata={"help": "every LayerNorm/GroupNorm/BatchNorm inside the network"})
    position_bias: bool = field(default=True, metadata={"help": "relative-position bias tables (Swin-V2/MaxViT: "
                                                                "their bias MLPs) and position embeddings (matched "
                                                                "by parameter name)"})
    merging: bool = field(default=True, metadata={"help": "stage transitions outside the blocks (Swin PatchMerging "
                                                          "incl. its reduction linear: 1.548M on Swin-T)"})
    output_norms: bool = field(default=False, metadata={"help": "the slot's per-stage output norms (a DeGMix addition "
                                                                "that MTLoRA/DiTASK do not have)"})

    def any(self) -> bool:
        return self.stem or self.norms or self.position_bias or self.merging or self.output_norms


def extra_parameters(backbone: nn.Module, extras: BackboneExtras) -> list[nn.Parameter]:
    """The base parameters selected by `extras` (each once)."""
    net = network_of(backbone)
    stages = find_stages(backbone)
    chosen: dict[int, nn.Parameter] = {}

    def take(params) -> None:
        for p in params:
            chosen.setdefault(id(p), p)

    output_norms = getattr(backbone, "stage_norms", None)
    output_norm_ids = {id(p) for p in output_norms.parameters()} if output_norms is not None else set()
    if extras.stem:
        take(p for p in stem_parameters(net, stages) if id(p) not in output_norm_ids)
    if extras.norms:
        take(p for m in net.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False))
    if extras.position_bias:
        take(p for n, p in net.named_parameters() if any(k in n for k in POSITION_PARAM_KEYS))
    if extras.merging:
        take(p for s in stages for m in s.transitions for p in m.parameters())
    if extras.output_norms and output_norms is not None:
        take(output_norms.parameters())
    if not extras.output_norms:
        for i in output_norm_ids:
            chosen.pop(i, None)
    return list(chosen.values())


def stem_parameters(net: nn.Module, stages) -> list[nn.Parameter]:
    """Parameters of the modules registered before the first stage (conv_stem + bn1, patch_embed, cls/pos tokens).

    Modules outside every stage but after the first one (timm leaves e.g. unused late parts) are not the stem.
    """
    in_stages = {id(m) for s in stages for top in [*s.blocks, *s.transitions] for m in top.modules()}
    out = []
    for m in net.modules():
        if id(m) in in_stages:
            break
        out += list(m.parameters(recurse=False))
    return out


def unfreeze_extras(backbone: nn.Module, extras: BackboneExtras) -> int:
    """Switch on the selected base parameters; returns how many scalars that is."""
    params = extra_parameters(backbone, extras)
    for p in params:
        p.requires_grad_(True)
    return sum(p.numel() for p in params)


__all__ = ["BackboneExtras", "extra_parameters", "stem_parameters", "unfreeze_extras"]
