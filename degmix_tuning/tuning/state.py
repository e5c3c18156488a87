"""Trainable-only state: what a tuning method adds or unfreezes, i.e. exactly what an adapter file holds.

One definition for adapter files, checkpoints, parameter budgets and tests: the trainable parameters, plus the
buffers of every module that is not a fully frozen backbone (BatchNorm statistics of the head, of an unfrozen
backbone). A frozen backbone is rebuilt from its config and weights, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


def trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """{name: detached tensor}: trainable parameters + buffers outside a fully frozen backbone."""
    from ..backbones import is_frozen

    backbone = getattr(model, "backbone", None)
    frozen_backbone = backbone is not None and is_frozen(backbone)
    state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    for name, b in model.named_buffers():
        if name.startswith("backbone.") and (frozen_backbone or not _is_statistic(name)):
            continue  # a frozen backbone, or fixed index tables rebuilt by construction
        state[name] = b.detach()
    return state


def _is_statistic(name: str) -> bool:
    leaf = name.split(".")[-1]
    return leaf.startswith("running_") or "num_batches" in leaf


def key_mismatch(expected: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str | None:
    """"missing [...], unexpected [...]" (first five of each) when `state`'s keys are not exactly `expected`'s (a
    `trainable_state`), else None: the one key check, each caller words its own error around it."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if not (missing or unexpected):
        return None
    return (f"missing {missing[:5]}{'...' * (len(missing) > 5)}, "
            f"unexpected {unexpected[:5]}{'...' * (len(unexpected) > 5)}")


@torch.no_grad()
def load_trainable_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy `state` into the model's trainable state (`trainable_state` keys); keys and shapes must match exactly."""
    target = trainable_state(model)
    mismatch = key_mismatch(target, state)
    if mismatch:
        raise KeyError(f"trainable state does not fit the model: {mismatch} (was it saved from the same backbone, "
                       "tasks and tuning config?)")
    for n, t in target.items():
        if state[n].shape != t.shape:
            raise ValueError(f"trainable state {n!r} has shape {tuple(state[n].shape)}, the model {tuple(t.shape)}")
        t.copy_(state[n])


def trainable_bytes(model: nn.Module) -> int:
    """Size of the trainable state serialised as fp32 safetensors, without metadata (the adapter file adds its
    config: `training.checkpoint.adapter_file_bytes`)."""
    from safetensors.torch import save

    return len(save({n: t.float().contiguous() for n, t in trainable_state(model).items()}))


__all__ = ["key_mismatch", "load_trainable_state", "trainable_bytes", "trainable_state"]
