"""`ia3` through peft: learned per-channel rescaling (Liu et al., 2022): one vector per adapted layer.

Layers named in `feedforward` (Swin/ViT: fc2) scale their input (in features), all others their output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ._peft import inject, peft_targets
from .base import TuningConfig, register_tuning_method


@dataclass
class IA3Config(TuningConfig):
    method: str = "ia3"
    feedforward: tuple[str, ...] = field(default=("fc2",), metadata={"help": "layer names scaled on their input"})
    target_types: tuple[str, ...] = field(default=("linear", "conv2d"), metadata={"help": "layer types to adapt"})
    exclude: tuple[str, ...] = field(default=(), metadata={"help": "layer names to leave out"})


def apply(model: nn.Module, cfg: IA3Config) -> None:
    from peft import IA3Config as PeftIA3Config

    targets = peft_targets(model, "ia3", cfg.target_types, cfg.exclude)
    feedforward = [t for t in targets if t.rpartition(".")[2] in cfg.feedforward]
    inject(model, PeftIA3Config(target_modules=targets, feedforward_modules=feedforward))


register_tuning_method("ia3", IA3Config, apply)
