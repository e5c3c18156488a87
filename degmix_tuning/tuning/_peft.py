"""Shared plumbing for the peft-backed methods: pick target layers by type, inject into `model.backbone` only.

`peft.inject_adapter_in_model(config, model.backbone)` edits the backbone in place and leaves only the adapter
parameters trainable inside it; the head is never handed to peft (no `modules_to_save`, which would keep a second
copy of it). Adapter state can be read back with `peft.get_peft_model_state_dict(model.backbone)`.
"""

from __future__ import annotations

from torch import nn

from .structure import network_of, require_targets, route_through_modules, target_names


def peft_targets(model: nn.Module, method: str, target_types: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    route_through_modules(network_of(model.backbone))  # Swin-V2/EVA/BEiT qkv: called as a module, so peft sees it
    names = target_names(model.backbone, target_types, exclude)
    require_targets(names, method, model.backbone, target_types)
    return names


def inject(model: nn.Module, peft_config) -> None:
    from peft import inject_adapter_in_model

    inject_adapter_in_model(peft_config, model.backbone)
