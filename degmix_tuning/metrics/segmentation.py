"""Semantic segmentation / human parts: mIoU from a confusion matrix pooled over the whole evaluation set.

Matches ATRC / MTI-Net / InvPT / DeGMix: per-class TP, FP, FN summed over all non-ignored pixels of the set,
IoU_c = TP_c / max(TP_c + FP_c + FN_c, 1e-8), and mIoU is the plain mean over ALL classes, so a class absent from
both prediction and ground truth counts as IoU 0 (this matters on small subsets). Values are fractions in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes


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
        pred_ids = pred[:, 0] if ids_given else pred.argmax(dim=1)
        gt = label[:, 0].long()
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

    def compute(self) -> dict:
        conf = self._state["confusion"].double()
        tp = conf.diag()
        fp = conf.sum(dim=0) - tp  # predicted c, gt not c
        fn = conf.sum(dim=1) - tp  # gt c, predicted not c
        iou = tp / torch.clamp(tp + fp + fn, min=1e-8)
        total = conf.sum()
        return {
            "miou": float(iou.mean()),
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
            "iou_per_class": [float(v) for v in iou],
        }


__all__ = ["SegmentationMeter"]
