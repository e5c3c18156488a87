"""Does a model config fit an official checkpoint, and which preset does?

The checkpoint says what it is: the task heads and their order (`head.bottleneck.<task>`), the head width and the
fused backbone channels (`head.linear1.0.weight` [d, C_in]), the semseg class count (NYUD 40 / PASCAL 21) and the
Swin size (embedding width, blocks per stage, window). A DeGMix ViT head (`head.featconv.*`) is told by its
FeatConv fusion and softmax-free queries, its ViT width (FeatConv input) and bottleneck width, the ViT backbone by
its embedding width and layer count. Configs are compared on exactly these, with backbones built
on the meta device (no memory, no init), so a wrong `--preset` is answered with the one that fits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.factory import ModelConfig
from ..models.presets import PRESETS
from .head_keys import is_vit_head, official_tasks


def vit_head_text(featconv_in: int | None, bottleneck: int | None) -> str:
    """How the refusals name a DeGMix ViT head, from a checkpoint's shapes or from a config alike."""
    return f"ViT head (FeatConv on {featconv_in}-channel maps, bottleneck {bottleneck})"


@dataclass
class HeadFacts:
    tasks: list[str]
    dim: int | None
    fused_channels: int | None
    semseg_classes: int | None
    vit: bool = False  # the DeGMix ViT head: FeatConv fusion + softmax-free task queries (linear1 unused)
    featconv_in: int | None = None  # FeatConv input channels (the ViT width)
    bottleneck: int | None = None  # task-head bottleneck width

    def describe(self) -> str:
        parts = [f"tasks {','.join(self.tasks)}"]
        if self.vit:
            parts.append(vit_head_text(self.featconv_in, self.bottleneck))
        if self.semseg_classes is not None:
            parts.append(f"{self.semseg_classes} semseg classes")
        if self.dim is not None:
            parts.append(f"head d={self.dim}")
        if self.fused_channels is not None and not self.vit:
            parts.append(f"{self.fused_channels} backbone channels")
        return ", ".join(parts)


def head_facts(head: dict[str, Tensor]) -> HeadFacts:
    proj = head.get("linear1.0.weight")
    semseg = head.get("final_logits.semseg.weight")
    two_d = proj is not None and proj.ndim == 2
    tasks = official_tasks(head)
    featconv = head.get("featconv.head2.0.weight")
    bottleneck = head.get(f"bottleneck.{tasks[0]}.conv.weight") if tasks else None
    return HeadFacts(
        tasks=tasks,
        dim=int(proj.shape[0]) if two_d else None,
        fused_channels=int(proj.shape[1]) if two_d else None,
        semseg_classes=int(semseg.shape[0]) if semseg is not None else None,
        vit=is_vit_head(head),
        featconv_in=int(featconv.shape[1]) if featconv is not None and featconv.ndim == 4 else None,
        bottleneck=int(bottleneck.shape[0]) if bottleneck is not None and bottleneck.ndim == 4 else None,
    )


def swin_signature(backbone: dict[str, Tensor]) -> tuple | None:
    """(embed width, blocks per stage, window, heads per stage) from official (mmseg) Swin keys; None otherwise.

    Read from shapes and key names only, so one missing or damaged tensor does not change it (the strict loader
    names those); a Swin of another size does.
    """
    embed = backbone.get("patch_embed.projection.weight")
    blocks: dict[int, set[int]] = {}
    heads: dict[int, int] = {}
    window = None
    for key, value in backbone.items():
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", key)
        if not m:
            continue
        stage = int(m.group(1))
        blocks.setdefault(stage, set()).add(int(m.group(2)))
        if key.endswith("relative_position_bias_table") and value.ndim == 2:
            window = window or (math.isqrt(int(value.shape[0])) + 1) // 2
            heads.setdefault(stage, int(value.shape[1]))
    if embed is None or not blocks:
        return None
    stages = sorted(blocks)
    return int(embed.shape[0]), tuple(len(blocks[s]) for s in stages), window, tuple(heads.get(s) for s in stages)


def describe_swin(backbone: dict[str, Tensor]) -> str:
    """'Swin embed 96, depths 2,2,6,2, window 7' for official (mmseg) Swin keys; '' for other layouts."""
    sig = swin_signature(backbone)
    if sig is None:
        return ""
    embed, depths, window, _ = sig
    return f"Swin embed {embed}, depths {','.join(map(str, depths))}" + (f", window {window}" if window else "")


def describe_vit(backbone: dict[str, Tensor]) -> str:
    """'ViT embed 768, 12 layers' for official (mmseg) ViT keys; '' for other layouts."""
    from ..backbones.vit import vit_signature

    sig = vit_signature(backbone)
    return f"ViT embed {sig[0]}, {sig[1]} layers" if sig else ""


def describe_backbone(backbone: dict[str, Tensor]) -> str:
    return describe_swin(backbone) or describe_vit(backbone)


def _as_official_vit(backbone) -> dict[str, Tensor]:
    from ..backbones.vit import OfficialViTBackbone, slot_to_mmseg_vit

    return slot_to_mmseg_vit(backbone.state_dict()) if isinstance(backbone, OfficialViTBackbone) else {}


def _as_official_swin(backbone) -> dict[str, Tensor]:
    """Our Swin slot's state (meta tensors are fine) in the official key layout, to compare signatures."""
    from ..backbones.weights import slot_to_mmseg_swin

    return slot_to_mmseg_swin(backbone.state_dict())


def _describe_slot(backbone, name: str) -> str:
    """The same description for one of our backbones (built on meta), falling back to its name."""
    vit = describe_vit(_as_official_vit(backbone))
    swin = describe_swin(_as_official_swin(backbone)) if hasattr(backbone, "model") and not vit else ""
    return f"{name} ({swin or vit})" if swin or vit else name


def _meta_backbone(cfg: ModelConfig):
    from ..backbones import create_backbone

    with torch.device("meta"):
        return create_backbone(cfg.backbone, img_size=cfg.img_size, **cfg.backbone_kwargs)


def _backbone_fits(backbone, official: dict[str, Tensor]) -> bool:
    """Same Swin size (embed width, depths, window, heads) or ViT size (width, layers); a ViT file never fits a
    non-ViT slot nor a Swin file a ViT slot; other layouts are left to the strict loader."""
    from ..backbones.vit import vit_signature

    vit_file, vit_slot = vit_signature(official), vit_signature(_as_official_vit(backbone))
    if vit_file is not None or vit_slot is not None:
        return vit_file == vit_slot
    sig = swin_signature(official)
    return sig is None or not hasattr(backbone, "model") or swin_signature(_as_official_swin(backbone)) == sig


def _head_fits(facts: HeadFacts, cfg: ModelConfig, fused_channels: int, channels: list[int] | None = None) -> bool:
    if set(facts.tasks) != set(cfg.tasks):
        return False
    if facts.dim is not None and facts.dim != cfg.head.dim:
        return False
    vit_cfg = cfg.head.fusion == "conv_pyramid" and cfg.head.query_attention == "linear"
    if facts.vit != vit_cfg:
        return False
    if facts.vit:  # linear1 is unused there: the bottleneck and the FeatConv input width say what the head is
        if facts.bottleneck is not None and facts.bottleneck != cfg.head.bottleneck_width(fused_channels):
            return False
        if facts.featconv_in is not None and channels and facts.featconv_in != channels[0]:
            return False
    elif facts.fused_channels is not None and facts.fused_channels != fused_channels:
        return False
    semseg = cfg.task_channels().get("semseg")
    return facts.semseg_classes is None or semseg is None or facts.semseg_classes == semseg


def fits(cfg: ModelConfig, facts: HeadFacts, backbone_state: dict[str, Tensor]) -> bool:
    backbone = _meta_backbone(cfg)
    return (_head_fits(facts, cfg, sum(backbone.channels), backbone.channels)
            and _backbone_fits(backbone, backbone_state))


def fitting_presets(facts: HeadFacts, backbone_state: dict[str, Tensor]) -> list[str]:
    return [
        name for name, cfg in PRESETS.items()
        if set(cfg.tasks) == set(facts.tasks) and (facts.dim is None or cfg.head.dim == facts.dim)  # cheap filter
        and fits(cfg, facts, backbone_state)
    ]


def check_head_version(head: dict[str, Tensor], source: str) -> None:
    """Refuse heads saved from the 2025 DeGMix code (PatchEmbed to 1/16 + softmax-free AnyAttention queries).

    That head has different modules and computation from the DeMTG head behind the published numbers, which is
    the one degmix_tuning implements; its keys would otherwise surface as a list of "unexpected" entries.
    """
    vit = is_vit_head(head)  # the ViT head has AnyAttention queries too, on FeatConv (no PatchEmbed): importable
    newer = [k for k in head if k.startswith("patch_embed.")
             or (not vit and re.match(r"task_querys\.\d+\.(to_q|norm_q)\.", k))]
    if newer:
        raise ValueError(
            f"{source!r} was saved from the 2025 DeGMix head code (head.{newer[0]}: PatchEmbed at 1/16 and "
            f"AnyAttention task queries), not the DeMTG head that degmix_tuning implements and that gives the "
            f"published numbers; it cannot be imported"
        )


def check_fit(
    cfg: ModelConfig, facts: HeadFacts, backbone_state: dict[str, Tensor], preset: str | None, source: str
) -> None:
    """Raise one line saying what the checkpoint holds and which preset to use when `cfg` does not fit it."""
    if not facts.tasks:
        raise ValueError(
            f"{source!r} has head.* entries but no task heads (head.bottleneck.<task>.*); it is not an official "
            f"DeGMix/DeMTG checkpoint"
        )
    backbone = _meta_backbone(cfg)
    if _head_fits(facts, cfg, sum(backbone.channels), backbone.channels) and _backbone_fits(backbone, backbone_state):
        return
    given = f"preset {preset!r}" if preset else "the given config"
    swin = describe_backbone(backbone_state)
    held = facts.describe() + (f" on a {swin}" if swin else "")
    semseg = cfg.task_channels().get("semseg")
    wanted = ", ".join(
        [f"tasks {','.join(cfg.tasks)}"] + ([f"{semseg} semseg classes"] if semseg else [])
        + ([vit_head_text(backbone.channels[0], cfg.head.bottleneck_width(sum(backbone.channels)))]
           if cfg.head.fusion == "conv_pyramid" else [])
        + [f"head d={cfg.head.dim}", f"{sum(backbone.channels)} backbone channels"]
    ) + f" on {_describe_slot(backbone, cfg.backbone)}"
    found = fitting_presets(facts, backbone_state)
    if found:
        fix = f"use --preset {found[0]}" + (f" (also fits: {', '.join(found[1:])})" if len(found) > 1 else "")
    else:
        fix = "no preset fits it; pass --config with a ModelConfig JSON that has these tasks, head.dim and backbone"
    raise ValueError(f"{source!r} holds a DeGMix head for {held}, but {given} has {wanted}; {fix}")


__all__ = [
    "HeadFacts", "check_fit", "check_head_version", "describe_swin", "fits", "fitting_presets", "head_facts",
    "swin_signature",
]
