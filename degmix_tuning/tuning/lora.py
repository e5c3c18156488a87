"""`lora` and `dora` through peft: low-rank updates (Hu et al., 2022) / weight-decomposed ones (Liu et al., 2024).

Targets: every `nn.Linear` / ungrouped `nn.Conv2d` inside the backbone's blocks (Swin: qkv, proj, fc1, fc2),
minus the layer names in `exclude`. A rank-r update of a Linear adds r (in + out) parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ._peft import inject, peft_targets
from .base import TuningConfig, register_tuning_method


@dataclass
class LoRAConfig(TuningConfig):
    method: str = "lora"
    r: int = field(default=8, metadata={"help": "rank"})
    alpha: float = field(default=8.0, metadata={"help": "peft lora_alpha; the update is scaled by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the update's input"})
    use_dora: bool = field(default=False, metadata={"help": "weight-decomposed LoRA (adds one magnitude per output)"})
    target_types: tuple[str, ...] = field(default=("linear", "conv2d"), metadata={"help": "layer types to adapt"})
    exclude: tuple[str, ...] = field(default=(), metadata={"help": "layer names to leave out, e.g. fc1,fc2"})

    def __post_init__(self):
        super().__post_init__()
        if self.r <= 0:
            raise ValueError(f"{self.method}: r must be positive, got {self.r}")


@dataclass
class DoRAConfig(LoRAConfig):
    method: str = "dora"
    use_dora: bool = True


def apply(model: nn.Module, cfg: LoRAConfig) -> None:
    from peft import LoraConfig

    targets = peft_targets(model, cfg.method, cfg.target_types, cfg.exclude)
    inject(model, LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, use_dora=cfg.use_dora,
                             target_modules=targets, bias="none"))


register_tuning_method("lora", LoRAConfig, apply)
register_tuning_method("dora", DoRAConfig, apply)
