"""`adapter`: bottleneck adapters (Houlsby et al., 2019) after each block's MLP, or after each block without one.

y -> y + up(GELU(down(y))) on the channel axis, hidden width = channels // reduction, `up` zero-initialised so the
model starts exactly at the pretrained one. Transformer blocks (Swin, ViT, ConvNeXt) get it on their `mlp` output
(before the residual add); blocks without an `mlp` child (ResNet, EfficientNet, MaxViT) get it on the block output,
in the network's map layout (tokens and NHWC maps: channels last; NCHW maps: axis 1). Parameters per adapter:
2 C h + h + C. peft has no bottleneck adapter, hence this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from .base import TuningConfig, register_tuning_method
from .structure import TunerLayer, block_targets, find_stages, network_of, replace_module


class BottleneckAdapter(nn.Module):
    """Residual bottleneck on channel axis `channel_dim` (-1 for tokens/NHWC, 1 for NCHW)."""

    def __init__(self, channels: int, hidden: int, channel_dim: int):
        super().__init__()
        self.channel_dim = channel_dim
        self.down = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, y: Tensor) -> Tensor:
        axis = -1 if y.ndim == 3 else self.channel_dim  # tokens [B, N, C] carry channels last
        if y.shape[axis] != self.down.in_features:
            raise RuntimeError(f"adapter expects {self.down.in_features} channels on axis {axis} of {tuple(y.shape)}")
        z = y.movedim(axis, -1) if axis != -1 else y
        z = self.up(self.act(self.down(z)))
        return y + (z.movedim(-1, axis) if axis != -1 else z)


class Adapted(TunerLayer):
    """`base` (a whole block, frozen) followed by an adapter."""

    def __init__(self, base: nn.Module, adapter: BottleneckAdapter):
        super().__init__(base)
        self.adapter = adapter

    def forward(self, *args, **kwargs) -> Tensor:
        return self.adapter(self.base(*args, **kwargs))


@dataclass
class AdapterConfig(TuningConfig):
    method: str = "adapter"
    reduction: int = field(default=4, metadata={"help": "hidden width = channels // reduction (at least 1)"})

    def __post_init__(self):
        super().__post_init__()
        if self.reduction <= 0:
            raise ValueError(f"adapter: reduction must be positive, got {self.reduction}")


def _output_layout(module: nn.Module, whole_block: bool, net: nn.Module) -> tuple[int, int]:
    """(channels, channel axis) of what `module` returns: channels from its last Linear/Conv2d; the axis from that
    layer for an `mlp`, from the network's map layout for a whole block (a MaxViT block ends in a Linear but returns
    NCHW maps; a Swin block returns NHWC)."""
    layers = block_targets(module, ("linear", "conv2d")) + [
        (n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1
    ]
    if not layers:
        raise ValueError(f"adapter: cannot tell the output channels of {type(module).__name__} (no Linear/Conv2d)")
    order = {id(m): i for i, (_, m) in enumerate(module.named_modules())}
    last = max((m for _, m in layers), key=lambda m: order[id(m)])
    channels = last.out_channels if isinstance(last, nn.Conv2d) else last.out_features
    if whole_block:
        return channels, -1 if str(getattr(net, "output_fmt", "NCHW")) == "NHWC" else 1
    return channels, 1 if isinstance(last, nn.Conv2d) else -1


def apply(model: nn.Module, cfg: AdapterConfig) -> None:
    net = network_of(model.backbone)
    for stage in find_stages(model.backbone):
        for block_name, block in zip(stage.block_names, stage.blocks):
            mlp = getattr(block, "mlp", None)
            name, target = (f"{block_name}.mlp", mlp) if isinstance(mlp, nn.Module) else (block_name, block)
            channels, axis = _output_layout(target, target is block, net)
            adapter = BottleneckAdapter(channels, max(1, channels // cfg.reduction), axis)
            replace_module(net, name, Adapted(target, adapter))


register_tuning_method("adapter", AdapterConfig, apply)
