"""`decoder_only`: frozen backbone + the light per-task heads (the "MTL - decoders only" baseline).

With the default `LightHeadConfig` the heads are MTLoRA's HRNet-style decoders; see models/light_head.py for sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import TuningConfig, register_tuning_method


@dataclass
class DecoderOnlyConfig(TuningConfig):
    method: str = "decoder_only"
    head: str = "light"


def apply(model: nn.Module, cfg: DecoderOnlyConfig) -> None:
    """`apply_tuning` froze the backbone and swapped in the light head (cfg.head='light'); nothing else trains."""


register_tuning_method("decoder_only", DecoderOnlyConfig, apply)
