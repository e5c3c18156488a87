"""`Meter`: the common shape of every metric, built around additive state so distributed runs can sum it.

A meter holds only tensors that add up across batches and processes (sums, counts, histograms). `update()` adds
one batch, `compute()` turns the pooled state into numbers, and `state()` / `load_state()` / `reduce_()` /
`merge_()` expose the raw state so that e.g. `meter.reduce_(lambda t: accelerator.reduce(t, "sum"))` syncs
all processes before `compute()`. State lives on the device of the first batch seen (CPU until then).

A metric that cannot be computed (no valid pixel for it, e.g. a val split without valid depth) is MISSING, never
NaN or a made-up 0: `compute()` gives None for it and the task's results carry the reason under `MISSING_KEY`
(`missing_result`), so printed lines, metrics.jsonl and summary.json say why (and stay valid JSON).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

from ..tasks import IGNORE_INDEX


class Meter:
    """Base class: subclasses declare their state in `_init_state()` and fill it in `update()`."""

    def __init__(self) -> None:
        self._device = torch.device("cpu")
        self._state: dict[str, Tensor] = {}
        self.reset()

    # -- state -------------------------------------------------------------------------------------------------
    def _init_state(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything accumulated so far (keeps the device)."""
        self._state = {k: v.to(self._device) for k, v in self._init_state().items()}

    def _follow(self, tensor: Tensor) -> None:
        """Move the state to the device of the incoming predictions (first batch decides; CPU/GPU agnostic)."""
        if tensor.device != self._device:
            self._device = tensor.device
            self._state = {k: v.to(self._device) for k, v in self._state.items()}

    def to(self, device: torch.device | str) -> "Meter":
        """Move the state, e.g. to the accelerator's device before a cross-process reduce on a process that saw
        no batch (state otherwise follows the first batch's device)."""
        self._device = torch.device(device)
        self._state = {k: v.to(self._device) for k, v in self._state.items()}
        return self

    def _add(self, name: str, value: Tensor) -> None:
        self._state[name] += value.to(device=self._device, dtype=self._state[name].dtype)

    def state(self) -> dict[str, Tensor]:
        """The additive state tensors (live references: reducing them in place updates the meter)."""
        return dict(self._state)

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Replace the state, e.g. with the sum over processes; keys and shapes must match `state()`."""
        expected = set(self._state)
        if set(state) != expected:
            raise KeyError(f"{type(self).__name__}.load_state: expected keys {sorted(expected)}, got {sorted(state)}")
        for key, value in state.items():
            value = torch.as_tensor(value)
            if tuple(value.shape) != tuple(self._state[key].shape):
                raise ValueError(
                    f"{type(self).__name__}.load_state: {key!r} has shape {tuple(value.shape)}, expected "
                    f"{tuple(self._state[key].shape)} (was the meter built with other settings?)"
                )
        self._state = {k: torch.as_tensor(v).to(device=self._device, dtype=self._state[k].dtype).clone()
                       for k, v in state.items()}

    def reduce_(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Apply `fn` (e.g. a cross-process sum) to every state tensor and keep the results."""
        self.load_state({k: fn(v) for k, v in self._state.items()})

    def merge_(self, other: "Meter") -> None:
        """Add another meter's state to this one (pooling two shards of the same dataset)."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        other_state = other.state()
        if set(other_state) != set(self._state):
            raise KeyError(f"cannot merge: state keys {sorted(other_state)} differ from {sorted(self._state)}")
        self.load_state({k: v + other_state[k].to(v.device) for k, v in self._state.items()})

    # -- interface ---------------------------------------------------------------------------------------------
    def update(self, pred: Tensor, label: Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError


def check_batch_shapes(name: str, pred: Tensor, label: Tensor, pred_channels: int | None,
                       label_channels: int | None) -> tuple[Tensor, Tensor]:
    """Validate [B, C, H, W] predictions against labels of the same spatial size; returns (pred, label[B,C,H,W]).

    Class labels may come as [B, H, W] or [B, 1, H, W]; `label_channels=None` means "class label" ([B, H, W]
    is returned as [B, 1, H, W]).
    """
    if pred.ndim != 4:
        raise ValueError(f"{name}: predictions must be [B, C, H, W] model outputs, got shape {tuple(pred.shape)}")
    if pred_channels is not None and pred.shape[1] != pred_channels:
        raise ValueError(f"{name}: expected {pred_channels} output channels, got {pred.shape[1]} "
                         f"(shape {tuple(pred.shape)}); does the model head match the dataset?")
    if label.ndim == 3:
        label = label.unsqueeze(1)
    if label.ndim != 4:
        raise ValueError(f"{name}: labels must be [B, H, W] or [B, C, H, W], got shape {tuple(label.shape)}")
    want = 1 if label_channels is None else label_channels
    if label.shape[1] != want:
        raise ValueError(f"{name}: labels must have {want} channel(s), got shape {tuple(label.shape)}")
    if pred.shape[0] != label.shape[0] or pred.shape[-2:] != label.shape[-2:]:
        raise ValueError(
            f"{name}: prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in batch or spatial size; "
            "metrics are computed at label resolution, so resize/crop the output to the label size first"
        )
    return pred, label.to(pred.device)


MISSING_KEY = "missing"  # a task's results: why its None-valued metrics could not be computed


def missing_result(keys: Iterable[str], reason: str, **known) -> dict:
    """Results in which every metric of `keys` is missing (None) for `reason`; `known` adds what is still known
    (e.g. num_pixels=0)."""
    return {**{k: None for k in keys}, **known, MISSING_KEY: reason}


def missing_reason(results: Mapping, key: str) -> str | None:
    """Why `results[key]` is missing (None if it is a number): the recorded reason, or a generic one for a None,
    NaN or absent value written by something else."""
    value = results.get(key) if isinstance(results, Mapping) else None
    try:
        if value is not None and not isinstance(value, (bool, str)) and math.isfinite(float(value)):
            return None
    except (TypeError, ValueError):
        pass
    reason = results.get(MISSING_KEY) if isinstance(results, Mapping) else None
    if reason:
        return str(reason)
    return "not computed" if value is None else f"not a finite number ({value!r})"


def format_metric(results: Mapping, key: str, fmt: str = ".4f") -> str:
    """`results[key]` formatted with `fmt`, or "missing (reason)"."""
    reason = missing_reason(results, key)
    return f"missing ({reason})" if reason else format(results[key], fmt)


__all__ = ["IGNORE_INDEX", "MISSING_KEY", "Meter", "check_batch_shapes", "format_metric", "missing_reason",
           "missing_result"]
