"""The multi-task objective: sum over tasks of loss weight x task loss, with a NaN/inf check that names the task."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .data.info import DatasetInfo
from .tasks import get_task


class NonFiniteLossError(RuntimeError):
    """Raised when a task loss is NaN or infinite; carries the task name for the training loop's message."""

    def __init__(self, task: str, value: float):
        super().__init__(f"loss of task {task!r} is {value}")
        self.task = task
        self.value = value


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
        weights: optional {task: weight} overriding the defaults.
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
        self.weights = {t: float((weights or {}).get(t, self.specs[t].loss_weight)) for t in self.tasks}
        self.overrides = {t: (dataset_info.loss_overrides(t) if dataset_info else {}) for t in self.tasks}

    def forward(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], check_finite: bool = True):
        """-> (total loss, {task: unweighted loss (detached)})."""
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
