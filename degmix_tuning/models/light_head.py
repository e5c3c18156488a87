"""A light per-task decoder (MTLoRA/MTL-PyTorch "HRNet head" layout), used by `decoder_only`, `mtlora` and `ditask`.

Per task t, on backbone levels i = 0..L-1 with channels C_i:
    1x1 conv C_i -> w_i (no bias; w_i = level_width * 2**i, MTLoRA's "downsampler": 18/36/72/144)
    -> bilinear resize to level 0 -> concat (S = sum w_i channels)
    -> 1x1 conv S -> h (h = hidden_ratio * S), BatchNorm, ReLU -> 1x1 conv h -> n_t outputs -> bilinear to input size.

Parameters per task: sum_i C_i w_i + (S h + h) + 2 h + (h n_t + n_t).
With the defaults (S = 270, h = 1080) that is 183,168 + 294,840 + 1,081 n_t on MTLoRA's taps (192/384/768/768:
its stage outputs after patch merging) and 146,880 + 294,840 + 1,081 n_t on our Swin-T slot (96/192/384/768).
For MTLoRA's four PASCAL heads (21 + 7 + 1 + 3 outputs) that gives 1,946,624 = the 1.947M "decoders + downsamplers".

The head can consume per-task feature maps (MTLoRA/DiTASK task streams): when `task_features` is set (a callable
`shared_maps -> {task: maps}`, attached by those tuning methods), task t decodes its own maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigBase

TaskFeatureSource = Callable[[list[Tensor]], dict[str, list[Tensor]]]


@dataclass
class LightHeadConfig(ConfigBase):
    """Widths of the light head. Defaults reproduce MTLoRA's decoder (18/36/72/144 projections, 1080 hidden)."""

    level_width: int = 18  # projection width of level 0; level i gets level_width * 2**i; 0 = no projection
    hidden_ratio: int = 4  # hidden width = hidden_ratio * (sum of projected widths)

    def __post_init__(self):
        if self.level_width < 0:
            raise ValueError(f"LightHeadConfig.level_width must be >= 0, got {self.level_width}")
        if self.hidden_ratio <= 0:
            raise ValueError(f"LightHeadConfig.hidden_ratio must be positive, got {self.hidden_ratio}")

    def level_widths(self, in_channels: list[int]) -> list[int]:
        if self.level_width == 0:
            return list(in_channels)
        return [self.level_width * 2**i for i in range(len(in_channels))]


class LightTaskDecoder(nn.Module):
    """One task's decoder: per-level 1x1 projections, resize-concat at level 0, 1x1-BN-ReLU, 1x1 to outputs."""

    def __init__(self, in_channels: list[int], widths: list[int], hidden: int, num_outputs: int, project: bool = True):
        super().__init__()
        self.projections = nn.ModuleList(
            [nn.Conv2d(c, w, 1, bias=False) if project else nn.Identity() for c, w in zip(in_channels, widths)]
        )
        self.fuse = nn.Sequential(nn.Conv2d(sum(widths), hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.logits = nn.Conv2d(hidden, num_outputs, 1)

    def forward(self, feats: list[Tensor], out_size: tuple[int, int]) -> Tensor:
        """feats: L maps [B, C_i, h_i, w_i] -> [B, num_outputs, *out_size]."""
        size = feats[0].shape[-2:]
        levels = []
        for proj, f in zip(self.projections, feats):
            f = proj(f)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            levels.append(f)
        x = self.logits(self.fuse(torch.cat(levels, dim=1)))
        return F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)


class LightHead(nn.Module):
    """Independent light decoders, one per task; same interface as `DeGMixHead`.

    Args:
        in_channels: channels of each backbone level (`backbone.channels`).
        task_channels: ordered {task: number of outputs}.
        cfg: widths (defaults: MTLoRA's decoder).
    """

    def __init__(self, in_channels: list[int], task_channels: dict[str, int], cfg: LightHeadConfig | None = None):
        super().__init__()
        cfg = cfg or LightHeadConfig()
        if not task_channels:
            raise ValueError("LightHead needs at least one task")
        self.cfg = cfg
        self.tasks = list(task_channels)
        self.in_channels = list(in_channels)
        widths = cfg.level_widths(self.in_channels)
        hidden = cfg.hidden_ratio * sum(widths)
        self.decoders = nn.ModuleDict({
            t: LightTaskDecoder(self.in_channels, widths, hidden, n, project=cfg.level_width > 0)
            for t, n in task_channels.items()
        })
        self.task_features: TaskFeatureSource | None = None  # set by task-stream tuning methods (mtlora, ditask)

    def parameter_groups(self) -> dict[str, list[nn.Module]]:
        """encoder = per-task level projections (MTLoRA's downsamplers), decoder = fuse blocks, heads = outputs."""
        return {
            "encoder": [d.projections for d in self.decoders.values()],
            "decoder": [d.fuse for d in self.decoders.values()],
            "heads": [d.logits for d in self.decoders.values()],
        }

    def forward(self, feats: list[Tensor], out_size: tuple[int, int]) -> dict[str, Tensor]:
        if len(feats) != len(self.in_channels):
            raise ValueError(f"LightHead expects {len(self.in_channels)} feature maps, got {len(feats)}")
        per_task = self.task_features(feats) if self.task_features is not None else None
        return {t: self.decoders[t](per_task[t] if per_task else feats, out_size) for t in self.tasks}


__all__ = ["LightHead", "LightHeadConfig", "LightTaskDecoder", "TaskFeatureSource"]
