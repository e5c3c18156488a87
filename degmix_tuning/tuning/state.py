"""Trainable-only state: what a tuning method adds or unfreezes (adapter files, parameter budgets, tests)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """{name: tensor} of every parameter with requires_grad (detached, contiguous, same dtype)."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy `state` into the model's trainable parameters; keys and shapes must match exactly."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise KeyError(f"trainable state does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]} "
                       "(was it saved from the same backbone, tasks and tuning config?)")
    for n, p in params.items():
        if state[n].shape != p.shape:
            raise ValueError(f"trainable state {n!r} has shape {tuple(state[n].shape)}, the model {tuple(p.shape)}")
        p.copy_(state[n])


def trainable_bytes(model: nn.Module) -> int:
    """Size of the safetensors file holding the trainable parameters in fp32 (serialised, not estimated)."""
    from safetensors.torch import save

    return len(save({n: t.float() for n, t in trainable_state(model).items()}))


__all__ = ["load_trainable_state", "trainable_bytes", "trainable_state"]
