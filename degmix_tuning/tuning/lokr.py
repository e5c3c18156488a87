"""`lokr` through peft: Kronecker-product updates (LyCORIS LoKr), peft's default factorisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ._peft import inject, peft_targets
from .base import TuningConfig, register_tuning_method


@dataclass
class LoKrConfig(TuningConfig):
    method: str = "lokr"
    r: int = field(default=8, metadata={"help": "rank of the low-rank Kronecker factor"})
    alpha: float = field(default=8.0, metadata={"help": "peft alpha; the update is scaled by alpha / r"})
    target_types: tuple[str, ...] = field(default=("linear", "conv2d"), metadata={"help": "layer types to adapt"})
    exclude: tuple[str, ...] = field(default=(), metadata={"help": "layer names to leave out"})


def apply(model: nn.Module, cfg: LoKrConfig) -> None:
    from peft import LoKrConfig as PeftLoKrConfig

    targets = peft_targets(model, "lokr", cfg.target_types, cfg.exclude)
    inject(model, PeftLoKrConfig(r=cfg.r, alpha=cfg.alpha, target_modules=targets))


register_tuning_method("lokr", LoKrConfig, apply)
