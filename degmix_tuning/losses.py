"""The multi-task objective: sum over tasks of loss weight x task loss, with a NaN/inf check that names the task.

The check either raises at once (a host sync per task) or, in training, is recorded on the device by `LossWatch`
and read when the loop syncs anyway (log, evaluation, checkpoint): a step then never waits for the GPU. On the CPU,
where reading a value costs nothing, `LossWatch` still raises at once: before backward, so NaN never reaches the
weights (torchvision's CPU deform_conv2d crashes the process on NaN offsets).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .data.info import DatasetInfo
from .tasks import get_task


class NonFiniteLossError(RuntimeError):
    """Raised when a task loss is NaN or infinite; carries the task name (and the step, from `LossWatch`) for the
    training loop's message."""

    def __init__(self, task: str, value: float, step: int | None = None):
        super().__init__(f"loss of task {task!r} is {value}" + (f" at step {step}" if step is not None else ""))
        self.task = task
        self.value = value
        self.step = step


EAGER_CHECK_DEVICES = ("cpu",)  # where `LossWatch.record` checks at once: no device to wait for
_FINITE = torch.iinfo(torch.int64).max  # LossWatch's code for "finite so far"
_KINDS = (float("nan"), float("inf"), float("-inf"))  # code % 4 - 1 -> the value


class LossWatch:
    """The first step at which each task loss was NaN/inf, kept on the loss's device: `record` never syncs (off the
    CPU), `check` (one sync) raises `NonFiniteLossError` for the earliest step, the first task in order at that step.

    Per task one int64: step * 4 + kind (1 nan, 2 +inf, 3 -inf), or `_FINITE`; so the smallest code across
    processes (an all-reduce MIN) is the earliest bad step too.
    """

    def __init__(self, tasks: list[str]):
        self.tasks = list(tasks)
        self.first: Tensor | None = None

    def record(self, step: int, parts: dict[str, Tensor]) -> None:
        losses = torch.stack([parts[t].detach().float() for t in self.tasks])
        kind = torch.where(losses.isnan(), 1, torch.where(losses > 0, 2, 3))
        code = torch.where(torch.isfinite(losses), _FINITE, step * 4 + kind)
        self.first = code if self.first is None else torch.minimum(self.first, code)
        if code.device.type in EAGER_CHECK_DEVICES:
            self.check()

    def check(self, reduce_min=None) -> None:
        """Raise for the first non-finite loss recorded; `reduce_min` takes the minimum over processes (in place)."""
        if self.first is None:
            return
        first = self.first.clone()
        if reduce_min is not None:
            reduce_min(first)
        codes = first.tolist()
        bad = [(code, i) for i, code in enumerate(codes) if code != _FINITE]
        if bad:
            code, i = min(bad, key=lambda bad_task: (bad_task[0] // 4, bad_task[1]))  # by step, then task order
            raise NonFiniteLossError(self.tasks[i], _KINDS[code % 4 - 1], code // 4)


def check_loss_weights(weights: dict) -> dict[str, float]:
    """{task: weight} as floats, or one line naming the task whose weight is unusable.

    A weight is a finite number >= 0. Negative would train the task to get worse, NaN/inf would make every step's
    loss non-finite; `true` is refused rather than read as 1. Zero is allowed: the task is still predicted and
    evaluated but gets no gradient from its loss (an ablation switch; its head still feels weight decay). All zero
    is refused: the total loss would be 0 and nothing would learn.
    """
    out = {}
    for task, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"loss weight of task {task!r} must be a number, got {value!r} "
                             f"(set train.loss_weights={{\"{task}\": 1.0}})")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"loss weight of task {task!r} must be a finite number >= 0, got {value!r} "
                             f"(0 switches the task's loss off)")
        out[task] = float(value)
    if out and not any(out.values()):
        raise ValueError(f"every loss weight is 0 ({', '.join(out)}): nothing would be trained; give at least one "
                         "task a positive weight")
    return out


class MultiTaskLoss(nn.Module):
    """total = sum_t w_t * L_t, with the official weights (semseg 1, parts 2, sal 5, normals 10, depth 1, edge 50).

    `per_image=True` gives the official objective: the official runs train 8 GPUs x 1 image and DDP averages the
    gradients, so each L_t is a per-image mean over that image's valid pixels (saliency balanced per image, a
    person-free image's parts loss 0), averaged over the images. Averaged here over the local batch, and by DDP over
    equal local batches, it does not depend on how the global batch is split over processes. `per_image=False` pools
    every pixel of the local batch (the MTLoRA protocol).

    Args:
        tasks: task names in output order.
        dataset_info: supplies dataset-specific loss settings (edge positive weight 0.8 NYUD / 0.95 PASCAL).
        weights: optional {task: weight} overriding the defaults (`check_loss_weights`: finite, >= 0, not all 0).
        per_image: per-image normalisation (above) instead of pooling over the batch.
    """

    def __init__(self, tasks: list[str], dataset_info: DatasetInfo | None = None,
                 weights: dict[str, float] | None = None, per_image: bool = False):
        super().__init__()
        self.tasks = list(tasks)
        self.per_image = bool(per_image)
        self.specs = {t: get_task(t) for t in self.tasks}
        unknown = set(weights or {}) - set(self.tasks)
        if unknown:
            raise KeyError(f"loss weights given for tasks that are not trained: {sorted(unknown)}")
        self.weights = check_loss_weights({t: (weights or {}).get(t, self.specs[t].loss_weight) for t in self.tasks})
        self.overrides = {t: (dataset_info.loss_overrides(t) if dataset_info else {}) for t in self.tasks}
        self.watch = LossWatch(self.tasks)  # the training loop's deferred check (forward with check_finite=False)

    def forward(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], check_finite: bool = True):
        """-> (total loss, {task: unweighted loss (detached)}). `check_finite` raises `NonFiniteLossError` at once,
        a host sync per task; the training loop passes False and records the parts in `self.watch` instead."""
        total = None
        parts: dict[str, Tensor] = {}
        for t in self.tasks:
            if t not in batch:
                raise KeyError(f"batch has no label for task {t!r}; the dataset must return it")
            out = outputs[t]
            out = out.to(torch.promote_types(out.dtype, torch.float32))  # fp16/bf16 heads: the loss in float32
            label = batch[t]
            if label.shape[-2:] != out.shape[-2:]:
                raise ValueError(f"task {t!r}: output size {tuple(out.shape[-2:])} != label size {tuple(label.shape[-2:])}")
            loss = self.specs[t].loss(out, label, per_image=self.per_image, **self.overrides[t])
            if self.per_image:
                loss = loss.mean()
            if check_finite and not torch.isfinite(loss):
                raise NonFiniteLossError(t, float(loss.detach()))
            parts[t] = loss.detach()
            weighted = self.weights[t] * loss
            total = weighted if total is None else total + weighted
        return total, parts
