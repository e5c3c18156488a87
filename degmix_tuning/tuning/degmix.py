"""`degmix`: the product. The backbone stays frozen (eval mode, no activations kept); only the DeGMix head trains."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import TuningConfig, register_tuning_method


@dataclass
class DeGMixTuningConfig(TuningConfig):
    method: str = "degmix"
    head: str = "degmix"


def apply(model: nn.Module, cfg: DeGMixTuningConfig) -> None:
    """Nothing to add: `apply_tuning` already froze the backbone and put the DeGMix head in place."""


register_tuning_method("degmix", DeGMixTuningConfig, apply)
