"""Per-task prediction heads: 3x3 conv (d -> C_in/8) + BN + ReLU, 1x1 conv to the task's outputs, upsample."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TaskHead(nn.Module):
    def __init__(self, dim: int, mid_channels: int, num_outputs: int):
        super().__init__()
        self.bottleneck = nn.Sequential(
            nn.Conv2d(dim, mid_channels, 3, padding=1, bias=False), nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True)
        )
        self.logits = nn.Conv2d(mid_channels, num_outputs, 1)
        nn.init.normal_(self.logits.weight, std=0.01)
        nn.init.zeros_(self.logits.bias)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """x: [B, d, h, w] -> [B, num_outputs, *size] (bilinear, align_corners=False)."""
        return F.interpolate(self.logits(self.bottleneck(x)), size=size, mode="bilinear", align_corners=False)
