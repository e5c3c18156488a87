"""Feature fusion: every backbone level resized to the finest one, concatenated and projected to the head width.

This is DeMTG's `linear1` path (the version behind the published numbers): a per-pixel Linear(C_in, d) plus
LayerNorm, so the head runs at the backbone's finest stride (1/4 for Swin).
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
