"""The DeGMix head, read top to bottom:

backbone maps -> `MultiScaleFusion` (1/4, d channels) -> one `DeformableMixer` per task -> `TaskInteractionBlock`
over all task tokens -> `TaskQueryBlock` (per-task query attention + shared gated MLP) -> one `TaskHead` per task.

This is the DeMTG head (linear projection at 1/4), the version that reproduces the published parameter counts;
`DeGMixConfig` names every place where we deliberately differ from the official code (see README). The official
DeGMix ViT head (DemtViTHead) is the same head with two swaps, both config fields: `fusion="conv_pyramid"`
(FeatConv instead of the linear projection) and `query_attention="linear"` (softmax-free AnyAttention queries).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..config import ConfigBase
from .deformable_mixer import DEFORM_IMPLS, DeformableMixer
from .fusion import FUSIONS, build_fusion
from .heads import TaskHead
from .task_interaction import INTERACTION_MODES, TaskInteractionBlock
from .task_query import QUERY_MODES, TaskQueryBlock
from .tokens import maps_to_tokens, tokens_to_map


@dataclass
class DeGMixConfig(ConfigBase):
    """Head hyper-parameters. Defaults are the official ones (d=256); the tuning presets use d=128."""

    dim: int = 256
    mixer_depth: int = 2
    offset_kernel: int = 3
    num_heads: int = 2
    gate_hidden: int = 512
    head_reduction: int = 8  # bottleneck channels = sum(backbone channels) // head_reduction
    interaction: str = "global"  # "global" | "pixel" | "official"
    query_attention: str = "pixel"  # "pixel" | "global"
    absolute_offset_coords: bool = True  # official: absolute pixel coords feed the offset generator
    # how the mixers' deformable conv runs (same outputs and gradients): "auto" (grid_sample on CPU, torchvision's
    # deform_conv2d elsewhere) | "grid_sample" | "torchvision"; see models/deform_ops.py
    deform_impl: str = "auto"
    # "linear": per-pixel Linear + LayerNorm at 1/4 (DeMTG, Swin); "conv_pyramid": the ViT head's FeatConv
    fusion: str = "linear"
    fusion_channels: int | None = None  # conv_pyramid per-level width (None: dim // 2; official ViT: 128 at d=256)
    # task-head bottleneck width; None: sum(backbone channels) // head_reduction. The official ViT head gets 180 from
    # the Swin-T channel table that builder.py gives ViT-B (1440 // 8), not from the ViT's own 4 x 768
    bottleneck_channels: int | None = None

    def __post_init__(self):
        if self.interaction not in INTERACTION_MODES:
            raise ValueError(f"DeGMixConfig.interaction must be one of {INTERACTION_MODES}, got {self.interaction!r}")
        if self.query_attention not in QUERY_MODES:
            raise ValueError(f"DeGMixConfig.query_attention must be one of {QUERY_MODES}, got {self.query_attention!r}")
        if self.deform_impl not in DEFORM_IMPLS:
            raise ValueError(f"DeGMixConfig.deform_impl must be one of {DEFORM_IMPLS}, got {self.deform_impl!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"DeGMixConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name in ("fusion_channels", "bottleneck_channels"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"DeGMixConfig.{name} must be positive or null, got {getattr(self, name)}")
        for name in ("dim", "mixer_depth", "num_heads", "gate_hidden", "head_reduction"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DeGMixConfig.{name} must be positive, got {getattr(self, name)}")

    def bottleneck_width(self, fused_channels: int) -> int:
        """The task heads' bottleneck channels: `bottleneck_channels`, else sum(backbone channels) // head_reduction."""
        return self.bottleneck_channels or fused_channels // self.head_reduction

class DeGMixHead(nn.Module):
    """Multi-task head on a list of backbone maps.

    Args:
        in_channels: channels of each backbone level (`backbone.channels`).
        task_channels: ordered {task: number of outputs}.
        cfg: head hyper-parameters.
    """

    def __init__(self, in_channels: list[int], task_channels: dict[str, int], cfg: DeGMixConfig | None = None):
        super().__init__()
        cfg = cfg or DeGMixConfig()
        self.cfg = cfg
        self.tasks = list(task_channels)
        if not self.tasks:
            raise ValueError("DeGMixHead needs at least one task")
        d = cfg.dim
        self.fusion = build_fusion(cfg.fusion, in_channels, d, cfg.fusion_channels)
        self.mixers = nn.ModuleDict(
            {t: DeformableMixer(d, cfg.mixer_depth, cfg.offset_kernel, cfg.absolute_offset_coords, cfg.deform_impl)
             for t in self.tasks}
        )
        self.task_interaction = TaskInteractionBlock(d, cfg.num_heads, cfg.interaction)
        self.task_query = TaskQueryBlock(self.tasks, d, cfg.num_heads, cfg.query_attention, cfg.gate_hidden)
        mid = cfg.bottleneck_width(self.fusion.fused_channels)
        self.heads = nn.ModuleDict({t: TaskHead(d, mid, n) for t, n in task_channels.items()})

    def parameter_groups(self) -> dict[str, list[nn.Module]]:
        """Which submodules make up the encoder, decoder and heads (for parameter reports)."""
        return {
            "encoder": [self.fusion, self.mixers],
            "decoder": [self.task_interaction, self.task_query],
            "heads": [self.heads],
        }

    def forward(self, feats: list[Tensor], out_size: tuple[int, int]) -> dict[str, Tensor]:
        x = self.fusion(feats)  # [B, d, h, w]
        h, w = x.shape[-2:]
        task_maps = [self.mixers[t](x) for t in self.tasks]
        # explicit layout conversions: they keep the mixers' gradients NCHW-contiguous (see models/tokens.py)
        tokens = maps_to_tokens(task_maps)  # [B, T, N, d]
        interacted = self.task_interaction(tokens)
        queried = self.task_query(tokens, interacted)
        return {t: self.heads[t](tokens_to_map(q, h, w), out_size) for t, q in zip(self.tasks, queried)}
