"""`loha` through peft: low-rank Hadamard-product updates (Hyeon-Woo et al., 2022), 2 r (in + out) per Linear."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ._peft import inject, peft_targets
from .base import TuningConfig, register_tuning_method


@dataclass
class LoHaConfig(TuningConfig):
    method: str = "loha"
    r: int = field(default=8, metadata={"help": "rank of each Hadamard factor"})
    alpha: float = field(default=8.0, metadata={"help": "peft alpha; the update is scaled by alpha / r"})
    target_types: tuple[str, ...] = field(default=("linear", "conv2d"), metadata={"help": "layer types to adapt"})
    exclude: tuple[str, ...] = field(default=(), metadata={"help": "layer names to leave out"})


def apply(model: nn.Module, cfg: LoHaConfig) -> None:
    from peft import LoHaConfig as PeftLoHaConfig

    targets = peft_targets(model, "loha", cfg.target_types, cfg.exclude)
    inject(model, PeftLoHaConfig(r=cfg.r, alpha=cfg.alpha, target_modules=targets))


register_tuning_method("loha", LoHaConfig, apply)
