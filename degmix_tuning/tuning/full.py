"""`full`: everything trains (the "MTL full fine-tuning" baseline).

`MultiTaskModel` runs the backbone with gradients and in train mode (drop-path, BN updates) as soon as any backbone
parameter requires grad, so nothing else is needed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import TuningConfig, register_tuning_method


@dataclass
class FullConfig(TuningConfig):
    method: str = "full"


def apply(model: nn.Module, cfg: FullConfig) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(True)


register_tuning_method("full", FullConfig, apply)
