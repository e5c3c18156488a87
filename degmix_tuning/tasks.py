"""Dense prediction tasks: output channels, label conventions, the official losses and post-processing.

Every task is a `TaskSpec` registered in `TASKS`; adding a task is one `TaskSpec` and one `register_task` call.
A loss function takes ``(output, label, *, per_image=False, **kwargs)``: it returns the mean over the batch's valid
pixels, or with ``per_image=True`` a ``[B]`` tensor of per-image means (0 for an image without valid pixels).
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


def _mean_over_valid(per_pixel: Tensor, valid: Tensor, per_image: bool) -> Tensor:
    """Sum over valid pixels / their count: pooled over the batch (a scalar), or per image (``[B]``).

    No valid pixel gives 0 (as the official ``loss.sum() / max(n_valid, 1)``): a person-free image adds nothing to
    the parts loss yet still counts as an image. Ignored pixels are selected away, never multiplied by 0.
    """
    per_pixel = torch.where(valid, per_pixel, torch.zeros((), dtype=per_pixel.dtype, device=per_pixel.device))
    dims = tuple(range(1, per_pixel.dim())) if per_image else tuple(range(per_pixel.dim()))
    return per_pixel.sum(dims) / valid.sum(dims).clamp_min(1).to(per_pixel.dtype)


def cross_entropy_loss(logits: Tensor, label: Tensor, *, per_image: bool = False, **_) -> Tensor:
    """Pixel-wise CE averaged over non-ignored pixels (semseg, human parts)."""
    valid = _valid_mask(label)
    per_pixel = F.cross_entropy(logits, label.long(), ignore_index=IGNORE_INDEX, reduction="none")
    return _mean_over_valid(per_pixel, valid, per_image)


def balanced_cross_entropy_loss(logits: Tensor, label: Tensor, *, per_image: bool = False, **_) -> Tensor:
    """2-class CE for saliency, re-weighted by the positive share of the batch, or of each image with `per_image`
    (what the official runs do at one image per GPU): the positive class gets the share of negatives (ATRC)."""
    valid = _valid_mask(label)
    dims = (1, 2) if per_image else (0, 1, 2)
    positives = ((label == 1) & valid).sum(dims, keepdim=True).to(logits.dtype)
    pos_share = positives / valid.sum(dims, keepdim=True).clamp_min(1).to(logits.dtype)
    # an all-negative (or all-positive) image weights its only class 0: loss exactly 0, as in the official
    # criterion, which divides by the valid-pixel count, not by the weights (DeMTG criterion.py l.100-118)
    weight = torch.where(label == 1, 1.0 - pos_share, pos_share)
    per_pixel = F.cross_entropy(logits, label.long(), ignore_index=IGNORE_INDEX, reduction="none")
    return _mean_over_valid(weight * per_pixel, valid, per_image)


def normals_l1_loss(pred: Tensor, label: Tensor, *, per_image: bool = False, **_) -> Tensor:
    """L1 between the L2-normalised prediction and the label, summed over xyz, averaged over valid pixels."""
    valid = (label != IGNORE_INDEX).all(dim=1)
    per_pixel = (F.normalize(pred, p=2, dim=1) - label).abs().sum(dim=1)
    return _mean_over_valid(per_pixel, valid, per_image)


def depth_l1_loss(pred: Tensor, label: Tensor, *, per_image: bool = False, **_) -> Tensor:
    """L1 in metres over pixels with valid depth (not 255 and not 0)."""
    valid = (label != IGNORE_INDEX) & (label > 0)
    return _mean_over_valid((pred - label).abs(), valid, per_image)


def weighted_bce_loss(logits: Tensor, label: Tensor, *, pos_weight: float = 0.95, per_image: bool = False,
                      **_) -> Tensor:
    """Boundary BCE: -w*y*log(sig) - (1-w)*(1-y)*log(1-sig), mean over non-ignored pixels."""
    valid = _valid_mask(label)
    target = torch.where(valid, label, torch.zeros_like(label)).to(logits.dtype)  # w in the logits' precision
    per_pixel = (-pos_weight * target * F.logsigmoid(logits)
                 - (1.0 - pos_weight) * (1.0 - target) * F.logsigmoid(-logits))
    return _mean_over_valid(per_pixel, valid, per_image)


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

    def loss(self, output: Tensor, label: Tensor, per_image: bool = False, **overrides) -> Tensor:
        """The pooled loss (a scalar), or with `per_image` one loss per image (``[B]``)."""
        kwargs = {**self.loss_kwargs, **overrides}
        return self.loss_fn(output, label, per_image=per_image, **kwargs)


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
