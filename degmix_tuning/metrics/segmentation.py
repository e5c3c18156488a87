"""Semantic segmentation / human parts: mIoU from a confusion matrix pooled over the whole evaluation set.

Matches ATRC / MTI-Net / InvPT / DeGMix: per-class TP, FP, FN summed over all non-ignored pixels of the set,
IoU_c = TP_c / max(TP_c + FP_c + FN_c, 1e-8), and mIoU is the plain mean over ALL classes, so a class absent from
both prediction and ground truth counts as IoU 0 (this matters on small subsets). Values are fractions in [0, 1].

Speed (CPU): `torch.argmax(dim=1)` over the channels of NCHW logits runs a slow strided reduction (~50 ms for 40
classes at 425x560), so CPU updates take the argmax as a running maximum over the channel slices in numpy
(first index of the maximum, exactly torch's tie rule; NaN logits fall back to `torch.argmax`, which ranks NaN
highest) and build the confusion matrix with one `bincount` over all pixels, ignored ones sent to a spare bin.
The confusion counts, hence every metric, are identical to the direct formula.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes, missing_result


def _argmax_channels_numpy(logits: np.ndarray) -> np.ndarray | None:
    """argmax over axis 1 of [B, C, H, W] float logits -> [B, H, W] (uint8 when C <= 256), first index on ties.

    Returns None when any pixel's maximum is NaN (torch.argmax treats NaN as the maximum; let it decide).
    """
    num_classes = logits.shape[1]
    dtype = np.uint8 if num_classes <= 256 else np.int64
    best = logits[:, 0].copy()
    index = np.zeros(best.shape, dtype=dtype)
    candidate = np.empty(best.shape, dtype=dtype)
    for c in range(1, num_classes):
        channel = logits[:, c]
        # strict ">": an equal later channel never replaces an earlier one (torch's first-index rule)
        np.greater(channel, best, out=candidate, casting="unsafe")  # 0/1
        np.multiply(candidate, dtype(c), out=candidate)  # 0/c
        np.maximum(index, candidate, out=index)  # = where(greater, c, index), since index < c so far
        np.maximum(best, channel, out=best)  # propagates NaN, detected below
    if np.isnan(best).any():
        return None
    return index


def argmax_channels(logits: Tensor) -> Tensor:
    """`logits.argmax(dim=1)` (int64 [B, H, W]), computed by channel slices on CPU float32/float64 tensors."""
    if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64) and logits.ndim == 4 \
            and logits.shape[1] > 0 and logits.numel() > 0:
        index = _argmax_channels_numpy(logits.detach().numpy())
        if index is not None:
            return torch.from_numpy(index).long()
    return logits.argmax(dim=1)


class SegmentationMeter(Meter):
    """Confusion-matrix meter; state `confusion[gt, pred]` (int64, C x C) is additive."""

    def __init__(self, num_classes: int, name: str = "semseg"):
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.name = name
        super().__init__()

    def _init_state(self) -> dict[str, Tensor]:
        return {"confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)}

    def update(self, pred: Tensor, label: Tensor) -> None:
        """pred: [B, C, H, W] logits (argmax taken) or [B, H, W] integer ids; label: [B, H, W], 255 = ignore."""
        if pred.ndim == 3 and not pred.is_floating_point():
            pred = pred.unsqueeze(1)
            ids_given = True
        else:
            ids_given = False
        pred, label = check_batch_shapes(self.name, pred, label, None if ids_given else self.num_classes, None)
        self._follow(pred)
        gt = label[:, 0].long()
        if pred.device.type == "cpu":
            self._update_cpu(pred, gt, ids_given)
            return
        pred_ids = pred[:, 0] if ids_given else pred.argmax(dim=1)
        valid = gt != IGNORE_INDEX
        gt_valid = gt[valid]
        pred_valid = pred_ids[valid].long()
        if gt_valid.numel():
            bad = (gt_valid < 0) | (gt_valid >= self.num_classes)
            if bad.any():
                values = torch.unique(gt_valid[bad]).tolist()[:10]
                raise ValueError(f"{self.name}: label contains class ids {values} outside 0..{self.num_classes - 1} "
                                 f"(and not the ignore value {IGNORE_INDEX}); check the dataset's label encoding")
            if ids_given and ((pred_valid < 0) | (pred_valid >= self.num_classes)).any():
                raise ValueError(f"{self.name}: predicted class ids must lie in 0..{self.num_classes - 1}")
        flat = gt_valid * self.num_classes + pred_valid
        counts = torch.bincount(flat, minlength=self.num_classes ** 2)
        self._add("confusion", counts.view(self.num_classes, self.num_classes))

    def _update_cpu(self, pred: Tensor, gt: Tensor, ids_given: bool) -> None:
        """Same counts as the generic path: numpy argmax by channel slices and one bincount over all pixels."""
        num_classes = self.num_classes
        if ids_given:
            pred_ids = pred[:, 0].detach().numpy()
        else:
            index = _argmax_channels_numpy(pred.detach().numpy()) \
                if pred.dtype in (torch.float32, torch.float64) else None
            pred_ids = index if index is not None else pred.detach().argmax(dim=1).numpy()
        gt_np = gt.numpy()
        valid = gt_np != IGNORE_INDEX
        bad = (gt_np < 0) | (gt_np >= num_classes)
        bad &= valid
        if bad.any():
            values = np.unique(gt_np[bad]).tolist()[:10]
            raise ValueError(f"{self.name}: label contains class ids {values} outside 0..{num_classes - 1} "
                             f"(and not the ignore value {IGNORE_INDEX}); check the dataset's label encoding")
        if ids_given:
            bad_pred = (pred_ids < 0) | (pred_ids >= num_classes)
            bad_pred &= valid
            if bad_pred.any():
                raise ValueError(f"{self.name}: predicted class ids must lie in 0..{num_classes - 1}")
        # ignored pixels go to the spare bin C*C, which is dropped
        flat = gt_np * num_classes
        flat += pred_ids.astype(np.int64, copy=False)
        np.putmask(flat, ~valid, num_classes * num_classes)
        counts = np.bincount(flat.ravel(), minlength=num_classes * num_classes + 1)[:num_classes * num_classes]
        self._add("confusion", torch.from_numpy(counts).view(num_classes, num_classes))

    def compute(self) -> dict:
        conf = self._state["confusion"].double()
        if not conf.sum() > 0:  # every label 255: the official formula would report mIoU 0, which nothing measured
            return missing_result(("miou", "pixel_acc", "iou_per_class"), f"no labelled (non-255) {self.name} pixel")
        tp = conf.diag()
        fp = conf.sum(dim=0) - tp  # predicted c, gt not c
        fn = conf.sum(dim=1) - tp  # gt c, predicted not c
        iou = tp / torch.clamp(tp + fp + fn, min=1e-8)
        total = conf.sum()
        return {
            "miou": float(iou.mean()),
            "pixel_acc": float(tp.sum() / total),
            "iou_per_class": [float(v) for v in iou],
        }


__all__ = ["SegmentationMeter", "argmax_channels"]
