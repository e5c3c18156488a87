"""`mtlora`: MTLoRA (Agiza et al., CVPR 2024): shared low-rank updates everywhere, task-specific ones at stage ends.

- TA-LoRA: every target layer (Swin: qkv, proj, fc1, fc2 of every block) gets `W x + b + scale * B A x` with rank
  `rank`, a fixed `scale` (4.0; no alpha/r), A kaiming-uniform, B zero (so the model starts at the pretrained one).
- TS-LoRA: in the last block of each stage, the target layers except `task_exclude` (qkv: attention is computed on
  the shared stream only) also get one rank-`task_rank` update per task, and each task keeps its own stream
  (`W x_shared + b + task_scale * B_t A_t x_task`, see streams.py). Each task's stage outputs feed its own decoder,
  so the default head is the light per-task head (MTLoRA's HRNet-style decoder).
- `extras`: the backbone parts MTLoRA's code leaves trainable (stem, norms, relative-position bias, PatchMerging),
  on by default as in the released configs.

Counts on Swin-T (sum of block widths 4416, of stage-last widths 1440), T tasks: shared 16 r 4416, task
12 r_t T 1440; r=16/32/64, r_t=4, T=4 -> 1,406,976 / 2,537,472 / 4,798,464 adapter parameters, + 1,599,546 extras.

As in the released code, the shared update of the very last layer (fc2 of the last block) gets no gradient when
every decoder reads task streams: its output only reaches the final shared map, which no decoder uses. It is still
built and counted, as MTLoRA counts it (Swin-T r=16: 61,440 of the 1,406,976).

Differences from the released code: our task maps are stage outputs before the next patch merging (the slot's
convention), so the decoder's first projection sees 96/192/384/768 channels instead of 192/384/768/768; and
`nn.Conv2d` targets (CNN backbones) get a conv low-rank update (A: r x C_in x k x k, B: C_out x r x 1 x 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from .base import TuningConfig, register_tuning_method
from .extras import BackboneExtras, unfreeze_extras
from .streams import MultiTaskLayer, wrap_stage_blocks


class LowRankDelta(nn.Module):
    """`B A x` for a Linear (A: [r, in], B: [out, r]) or a Conv2d (A: r x in x k x k conv, B: 1x1 conv)."""

    def __init__(self, base: nn.Module, rank: int):
        super().__init__()
        self.rank = rank
        if isinstance(base, nn.Conv2d):
            self.A = nn.Parameter(base.weight.new_zeros(rank, base.in_channels, *base.kernel_size))
            self.B = nn.Parameter(base.weight.new_zeros(base.out_channels, rank, 1, 1))
            self._conv = dict(stride=base.stride, padding=base.padding, dilation=base.dilation)
        else:
            self.A = nn.Parameter(base.weight.new_zeros(rank, base.in_features))
            self.B = nn.Parameter(base.weight.new_zeros(base.out_features, rank))
            self._conv = None
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # B stays zero: the update starts at 0

    def forward(self, x: Tensor) -> Tensor:
        if self._conv is not None:
            return F.conv2d(F.conv2d(x, self.A, **self._conv), self.B)
        return F.linear(F.linear(x, self.A), self.B)


class MTLoRALayer(MultiTaskLayer):
    def __init__(self, base: nn.Module, rank: int, scale: float, tasks: list[str], task_rank: int, task_scale: float,
                 dropout: float):
        super().__init__(base, tasks if task_rank > 0 else [])
        self.scale = scale
        self.task_scale = task_scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shared = LowRankDelta(base, rank)
        self.task = nn.ModuleDict({t: LowRankDelta(base, task_rank) for t in self.tasks})

    def shared_forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale * self.shared(self.dropout(x))

    def task_forward(self, x_shared: Tensor, x_task: Tensor, task: str) -> Tensor:
        return self.base(x_shared) + self.task_scale * self.task[task](self.dropout(x_task))


@dataclass
class MTLoRAConfig(TuningConfig):
    method: str = "mtlora"
    head: str = "light"
    rank: int = field(default=16, metadata={"help": "shared (task-agnostic) rank r; published 16/32/64"})
    scale: float = field(default=4.0, metadata={"help": "fixed scale of the shared update (MTLoRA: 4.0)"})
    task_rank: int = field(default=4, metadata={"help": "rank of each task-specific update; 0 = no task streams"})
    task_scale: float = field(default=4.0, metadata={"help": "fixed scale of the task updates (configs '_scale4')"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the update's input"})
    target_types: tuple[str, ...] = field(default=("linear", "conv2d"), metadata={"help": "layer types to adapt"})
    task_exclude: tuple[str, ...] = field(default=("qkv",), metadata={"help": "layer names without task updates"})
    extras: BackboneExtras = field(default_factory=BackboneExtras)

    def __post_init__(self):
        super().__post_init__()
        if self.rank <= 0 or self.task_rank < 0:
            raise ValueError(f"mtlora: rank must be > 0 and task_rank >= 0, got {self.rank}, {self.task_rank}")


def apply(model: nn.Module, cfg: MTLoRAConfig) -> None:
    unfreeze_extras(model.backbone, cfg.extras)
    wrap_stage_blocks(model, "mtlora", cfg.target_types, cfg.task_exclude, cfg.task_rank > 0,
                      lambda name, layer, layer_tasks: MTLoRALayer(
                          layer, cfg.rank, cfg.scale, layer_tasks, cfg.task_rank, cfg.task_scale, cfg.dropout))


register_tuning_method("mtlora", MTLoRAConfig, apply)
