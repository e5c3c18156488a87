"""Dense prediction tasks: output channels, label conventions, the official losses and post-processing.

Every task is a `TaskSpec` registered in `TASKS`; adding a task is one `TaskSpec` and one `register_task` call.
Label conventions (what datasets return and losses/metrics read):

- ``semseg`` / ``human_parts`` / ``sal``: int64 ``[B, H, W]`` class ids, 255 = ignore.
- ``depth``: float32 ``[B, 1, H, W]`` metres, 255 (and 0) = invalid.
- ``normals``: float32 ``[B, 3, H, W]`` in [-1, 1], 255 on all channels = invalid.
- ``edge``: float32 ``[B, 1, H, W]`` in {0, 1}, 255 = ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import Registry

IGNORE_INDEX = 255

LossFn = Callable[..., Tensor]


def _valid_mask(label: Tensor) -> Tensor:
    return label != IGNORE_INDEX


def cross_entropy_loss(logits: Tensor, label: Tensor, **_) -> Tensor:
    """Pixel-wise CE averaged over non-ignored pixels (semseg, human parts)."""
    if not _valid_mask(label).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, label.long(), ignore_index=IGNORE_INDEX)


def balanced_cross_entropy_loss(logits: Tensor, label: Tensor, **_) -> Tensor:
    """2-class CE for saliency, re-weighted per batch: the positive class gets the share of negatives (ATRC)."""
    valid = _valid_mask(label)
    n_valid = valid.sum()
    if n_valid == 0:
        return logits.sum() * 0.0
    pos_share = ((label == 1) & valid).sum().float() / n_valid
    weight = torch.stack([pos_share, 1.0 - pos_share]).to(logits.dtype).clamp_min(1e-6)
    per_pixel = F.cross_entropy(logits, label.long(), weight=weight, ignore_index=IGNORE_INDEX, reduction="none")
    return per_pixel.sum() / n_valid


def normals_l1_loss(pred: Tensor, label: Tensor, **_) -> Tensor:
    """L1 between the L2-normalised prediction and the label, summed over xyz, averaged over valid pixels."""
    valid = (label != IGNORE_INDEX).all(dim=1, keepdim=True)
    n_valid = valid.sum()
    if n_valid == 0:
        return pred.sum() * 0.0
    unit = F.normalize(pred, p=2, dim=1)
    diff = (unit - label).abs() * valid
    return diff.sum() / n_valid


def depth_l1_loss(pred: Tensor, label: Tensor, **_) -> Tensor:
    """L1 in metres over pixels with valid depth (not 255 and not 0)."""
    valid = (label != IGNORE_INDEX) & (label > 0)
    if not valid.any():
        return pred.sum() * 0.0
    return (pred - label).abs()[valid].mean()


def weighted_bce_loss(logits: Tensor, label: Tensor, *, pos_weight: float = 0.95, **_) -> Tensor:
    """Boundary BCE: -w*y*log(sig) - (1-w)*(1-y)*log(1-sig), mean over non-ignored pixels."""
    valid = _valid_mask(label)
    if not valid.any():
        return logits.sum() * 0.0
    target = torch.where(valid, label, torch.zeros_like(label))
    loss = -pos_weight * target * F.logsigmoid(logits) - (1.0 - pos_weight) * (1.0 - target) * F.logsigmoid(-logits)
    return loss[valid].mean()


def _argmax(logits: Tensor) -> Tensor:
    return logits.argmax(dim=1)


def _clamp_depth(pred: Tensor) -> Tensor:
    return pred.clamp_min(0.0)


def _unit_normals(pred: Tensor) -> Tensor:
    return F.normalize(pred, p=2, dim=1)


def _sigmoid(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits)


def _positive_softmax(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=1)[:, 1:2] if logits.shape[1] == 2 else torch.sigmoid(logits)


@dataclass(frozen=True)
class TaskSpec:
    """Everything the toolkit needs to know about one dense task.

    `num_outputs` is the default channel count; datasets with a different class count (semseg: 40 on NYUD,
    21 on PASCAL) pass theirs through `DatasetInfo.num_outputs`.
    """

    name: str
    num_outputs: int
    loss_fn: LossFn
    loss_weight: float
    postprocess: Callable[[Tensor], Tensor]
    label_kind: str  # "class" (int64 [B,H,W]) or "dense" (float32 [B,C,H,W])
    label_channels: int
    higher_is_better: bool
    main_metric: str
    description: str = ""
    loss_kwargs: dict = field(default_factory=dict)

    def loss(self, output: Tensor, label: Tensor, **overrides) -> Tensor:
        kwargs = {**self.loss_kwargs, **overrides}
        return self.loss_fn(output, label, **kwargs)


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    return TASKS.register(spec.name, spec)


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)


def list_tasks() -> list[str]:
    return TASKS.names()


register_task(TaskSpec("semseg", 40, cross_entropy_loss, 1.0, _argmax, "class", 1, True, "miou",
                       "semantic segmentation (40 NYUD classes, 21 PASCAL classes)"))
register_task(TaskSpec("human_parts", 7, cross_entropy_loss, 2.0, _argmax, "class", 1, True, "miou",
                       "human parts: background + 6 parts"))
register_task(TaskSpec("sal", 2, balanced_cross_entropy_loss, 5.0, _positive_softmax, "class", 1, True, "maxf",
                       "saliency, 2-class logits"))
register_task(TaskSpec("normals", 3, normals_l1_loss, 10.0, _unit_normals, "dense", 3, False, "mean_angle",
                       "surface normals, xyz in [-1, 1]"))
register_task(TaskSpec("depth", 1, depth_l1_loss, 1.0, _clamp_depth, "dense", 1, False, "rmse", "depth in metres"))
register_task(TaskSpec("edge", 1, weighted_bce_loss, 50.0, _sigmoid, "dense", 1, True, "odsf",
                       "object boundaries", loss_kwargs={"pos_weight": 0.95}))
