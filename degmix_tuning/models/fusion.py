"""Feature fusion: every backbone level resized to the finest one, concatenated and projected to the head width.

`MultiScaleFusion` is DeMTG's `linear1` path (the version behind the published Swin numbers): a per-pixel
Linear(C_in, d) plus LayerNorm, so the head runs at the backbone's finest stride (1/4 for Swin).
`ConvPyramidFusion` is the official DeGMix ViT head's `FeatConv`: 3x3 conv stacks per level, 4x upsampling of the
stride-16 ViT maps, and a 3x3 conv merge (`DeGMixConfig.fusion = "conv_pyramid"`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resize_concat(feats: list[Tensor]) -> Tensor:
    """[B, C_i, H_i, W_i] maps -> [B, sum C_i, H_0, W_0], bilinear (align_corners=False), as mmseg's resize_concat."""
    size = feats[0].shape[-2:]
    up = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
    return torch.cat(up, dim=1)


class MultiScaleFusion(nn.Module):
    """Concatenate all levels at the finest resolution, then Linear + LayerNorm to `dim` channels.

    Args:
        in_channels: channels of every backbone level (from `backbone.feature_info`).
        dim: head width d.
    """

    def __init__(self, in_channels: list[int], dim: int):
        super().__init__()
        self.in_channels = list(in_channels)
        self.proj = nn.Linear(sum(in_channels), dim)
        self.norm = nn.LayerNorm(dim)

    @property
    def fused_channels(self) -> int:
        return sum(self.in_channels)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """feats: per-level [B, C_i, H_i, W_i] -> [B, d, H_0, W_0]."""
        x = resize_concat(feats).permute(0, 2, 3, 1)
        x = self.norm(self.proj(x))
        return x.permute(0, 3, 1, 2).contiguous()


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ConvPyramidFusion(nn.Module):
    """The official DeGMix ViT head's fusion (`FeatConv`, demt_vit_head.py l.288-331), for single-stride backbones.

    Per level: two [3x3 conv (no bias), BN, ReLU] to `width` channels; every level bilinearly upsampled
    (align_corners=False) to 4x the first level's size (the official code upsamples each level 4x its own size; a
    ViT's levels share one size, so these agree); concatenated; two [3x3 conv, BN, ReLU] to `dim`. The official
    widths are 128 per level and 256 out (width = dim / 2). It replaces `MultiScaleFusion`'s Linear + LayerNorm.

    Args:
        in_channels: channels of every backbone level.
        dim: head width d (output channels).
        width: per-level width (default dim // 2, as the official 128 -> 256).
    """

    scale = 4  # the official upsampling factor: stride-16 ViT maps -> stride 4

    def __init__(self, in_channels: list[int], dim: int, width: int | None = None):
        super().__init__()
        self.in_channels = list(in_channels)
        width = width or dim // 2
        self.levels = nn.ModuleList(
            [nn.Sequential(*_conv_bn_relu(c, width), *_conv_bn_relu(width, width)) for c in in_channels]
        )
        self.merge = nn.Sequential(*_conv_bn_relu(width * len(in_channels), dim), *_conv_bn_relu(dim, dim))

    @property
    def fused_channels(self) -> int:
        return sum(self.in_channels)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """feats: per-level [B, C_i, h, w] -> [B, d, 4h, 4w] (h, w of the first level)."""
        size = [self.scale * s for s in feats[0].shape[-2:]]
        up = [F.interpolate(level(f), size=size, mode="bilinear", align_corners=False)
              for level, f in zip(self.levels, feats)]
        return self.merge(torch.cat(up, dim=1))


FUSIONS = ("linear", "conv_pyramid")


def build_fusion(kind: str, in_channels: list[int], dim: int, width: int | None = None) -> nn.Module:
    """"linear": `MultiScaleFusion` (DeMTG / Swin head); "conv_pyramid": `ConvPyramidFusion` (DeGMix ViT head)."""
    if kind == "linear":
        return MultiScaleFusion(in_channels, dim)
    if kind == "conv_pyramid":
        return ConvPyramidFusion(in_channels, dim, width)
    raise ValueError(f"unknown fusion {kind!r}; choose one of {FUSIONS}")
