"""`bitfit`: only the backbone's bias terms train (Ben Zaken et al., 2022), plus the head.

Biases are found by structure: every parameter registered as `bias` on a backbone module (Linear, Conv, and, with
`norm_biases=True`, the shift of LayerNorm/BatchNorm/GroupNorm). peft has no BitFit, hence this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .base import TuningConfig, register_tuning_method
from .structure import NORM_TYPES


@dataclass
class BitFitConfig(TuningConfig):
    method: str = "bitfit"
    norm_biases: bool = field(default=True, metadata={"help": "also train the biases (shifts) of norm layers"})


def bias_parameters(module: nn.Module, norm_biases: bool = True) -> list[nn.Parameter]:
    """Every `bias` parameter of `module`'s submodules (optionally skipping norm layers)."""
    out = []
    for m in module.modules():
        b = m._parameters.get("bias")
        if b is not None and (norm_biases or not isinstance(m, NORM_TYPES)):
            out.append(b)
    return out


def apply(model: nn.Module, cfg: BitFitConfig) -> None:
    biases = bias_parameters(model.backbone, cfg.norm_biases)
    if not biases:
        raise ValueError(f"bitfit: backbone {type(model.backbone).__name__} has no bias parameters to train")
    for b in biases:
        b.requires_grad_(True)


register_tuning_method("bitfit", BitFitConfig, apply)
