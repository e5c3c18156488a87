"""Saliency: ATRC/DeGMix max F-measure (pooled, beta^2 = 0.3) and, optionally, the MTI-Net/MTLoRA "saliency mIoU".

`maxf` (main metric, ATRC/DeGMix `MaxF`): prob = softmax(logits)[:, 1] for 2 channels, sigmoid for 1 channel;
thresholds t = torch.arange(0.05, 1, 0.05) (19 values, float32 exactly as the reference), positive = prob >= t,
valid = gt != 255. TP, predicted positives (PP) and actual positives (AP) are pooled over the whole set;
P = TP/PP, R = TP/AP, F = (1 + b2) P R / (b2 P + R) with b2 = 0.3, NaN -> 0, maxF = max over t.

`per_image_miou` (MTI-Net/MTLoRA `SaliencyMeter`, the saliency number behind MTI-Net's and MTLoRA's tables and
Delta-m): per image and threshold t in linspace(0.2, 0.9, 15), positive = prob > t (strict), Jaccard = TP / union
(1 when both are empty), averaged over images; the reported value is the max over t. One deviation: pixels
labelled 255 are excluded here too, and fully ignored images are skipped (MTI-Net's saliency labels have no
255). Values are fractions in [0, 1].

Speed (CPU): boolean-mask indexing and `torch.bucketize` dominate a direct torch implementation (~30 ms per
425x560 image), so CPU updates count "prob >= t" (resp. "> t") per threshold with numpy comparisons on the valid
(resp. positive) probabilities, whose float32 values are the same softmax/sigmoid outputs as before. The counts are
integers equal to the bucketize/bincount ones, so every metric is identical. Predictions with NaN probabilities
take the generic path (where bucketize decides where NaN goes).

Missing metrics (None, with the reason): maxF when the set has no salient (label 1) pixel, since recall is then
undefined at every threshold (the reference's NaN -> 0 would print 0); per_image_miou when no image has a valid
pixel.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import IGNORE_INDEX, MISSING_KEY, Meter, check_batch_shapes

BETA_SQ = 0.3


def maxf_thresholds() -> Tensor:
    return torch.arange(0.05, 1, 0.05)  # float32, 19 values: the reference's exact threshold set


def per_image_miou_thresholds() -> Tensor:
    return torch.linspace(0.2, 0.9, 15)


def saliency_probability(pred: Tensor) -> Tensor:
    """[B, 2, H, W] logits -> softmax channel 1; [B, 1, H, W] logits -> sigmoid. Returns [B, H, W]."""
    if pred.shape[1] == 2:
        return torch.softmax(pred.float(), dim=1)[:, 1]
    if pred.shape[1] == 1:
        return torch.sigmoid(pred.float())[:, 0]
    raise ValueError(f"sal: expected 1 or 2 output channels, got shape {tuple(pred.shape)}")


def f_beta(tp: Tensor, pred_pos: Tensor, actual_pos: Tensor, beta_sq: float = BETA_SQ) -> Tensor:
    """Pooled F_beta per threshold; 0/0 cases (no predictions or no positives) give 0, as the reference's NaN -> 0."""
    tp, pred_pos, actual_pos = tp.double(), pred_pos.double(), actual_pos.double()
    precision = tp / pred_pos
    recall = tp / actual_pos
    f = (1 + beta_sq) * precision * recall / (beta_sq * precision + recall)
    return torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)


class SaliencyMeter(Meter):
    """State: per-threshold TP and predicted positives, actual positives, and per-image IoU sums (int64/float64)."""

    def __init__(self, name: str = "sal", per_image_miou: bool = True, beta_sq: float = BETA_SQ):
        self.name = name
        self.with_per_image_miou = per_image_miou
        self.beta_sq = float(beta_sq)
        self.thresholds = maxf_thresholds()
        self.miou_thresholds = per_image_miou_thresholds()
        super().__init__()

    def _init_state(self) -> dict[str, Tensor]:
        n = len(self.thresholds)
        state = {
            "tp": torch.zeros(n, dtype=torch.int64),
            "pred_pos": torch.zeros(n, dtype=torch.int64),
            "actual_pos": torch.zeros((), dtype=torch.int64),
        }
        if self.with_per_image_miou:
            state["image_iou_sum"] = torch.zeros(len(self.miou_thresholds), dtype=torch.float64)
            state["num_images"] = torch.zeros((), dtype=torch.int64)
        return state

    def update(self, pred: Tensor, label: Tensor) -> None:
        """pred: [B, 2, H, W] (or [B, 1, H, W]) logits; label: [B, H, W] in {0, 1}, 255 = ignore."""
        pred, label = check_batch_shapes(self.name, pred, label, None, None)
        self._follow(pred)
        prob = saliency_probability(pred.detach()).contiguous()
        gt = label[:, 0].long()
        if prob.device.type == "cpu" and not np.isnan(prob.numpy()).any():
            self._update_cpu(prob.numpy(), gt.numpy())
            return
        valid = gt != IGNORE_INDEX
        if ((gt[valid] != 0) & (gt[valid] != 1)).any():
            values = torch.unique(gt[valid]).tolist()[:10]
            raise ValueError(f"{self.name}: saliency labels must be 0, 1 or {IGNORE_INDEX}, found {values}")
        positive = gt == 1
        n = len(self.thresholds)
        # level = number of thresholds t with t <= prob, so "prob >= thresholds[j]" <=> level > j.
        level = torch.bucketize(prob[valid], self.thresholds.to(prob.device), right=True)
        pred_hist = torch.bincount(level, minlength=n + 1)
        tp_hist = torch.bincount(level[positive[valid]], minlength=n + 1)
        # counts with level > j: reversed cumulative sum, dropping level 0.
        self._add("pred_pos", pred_hist.flip(0).cumsum(0).flip(0)[1:])
        self._add("tp", tp_hist.flip(0).cumsum(0).flip(0)[1:])
        self._add("actual_pos", (positive & valid).sum())
        if self.with_per_image_miou:
            self._update_per_image_miou(prob, positive, valid)

    def _update_cpu(self, prob: np.ndarray, gt: np.ndarray) -> None:
        """Same integer counts as the bucketize/bincount path, by one comparison per threshold (float32 both sides)."""
        valid = gt != IGNORE_INDEX
        positive = gt == 1
        batch = prob.shape[0]
        valid_per_image = valid.reshape(batch, -1).sum(1)
        positive_per_image = positive.reshape(batch, -1).sum(1)
        num_valid, num_positive = int(valid_per_image.sum()), int(positive_per_image.sum())
        if np.count_nonzero(gt == 0) + num_positive != num_valid:
            values = np.unique(gt[valid]).tolist()[:10]
            raise ValueError(f"{self.name}: saliency labels must be 0, 1 or {IGNORE_INDEX}, found {values}")
        # row-major gathers = the images' valid (resp. positive) probabilities one image after the other
        valid_prob, positive_prob = prob[valid], prob[positive]
        scratch = np.empty(valid_prob.size, dtype=bool)

        def count(values: np.ndarray, thresholds: np.ndarray, compare) -> list[int]:
            out = scratch[:values.size]
            return [int(np.count_nonzero(compare(values, t, out=out))) for t in thresholds]

        thresholds = self.thresholds.numpy()  # float32 vs float32, exactly bucketize's comparisons
        self._add("pred_pos", torch.tensor(count(valid_prob, thresholds, np.greater_equal), dtype=torch.int64))
        self._add("tp", torch.tensor(count(positive_prob, thresholds, np.greater_equal), dtype=torch.int64))
        self._add("actual_pos", torch.tensor(num_positive, dtype=torch.int64))
        if not self.with_per_image_miou:
            return
        miou_thresholds = self.miou_thresholds.numpy()
        valid_parts = np.split(valid_prob, np.cumsum(valid_per_image)[:-1])
        positive_parts = np.split(positive_prob, np.cumsum(positive_per_image)[:-1])
        pred_pos = torch.tensor([count(v, miou_thresholds, np.greater) for v in valid_parts], dtype=torch.int64)
        tp = torch.tensor([count(v, miou_thresholds, np.greater) for v in positive_parts], dtype=torch.int64)
        actual = torch.from_numpy(positive_per_image).view(batch, 1)
        self._add_per_image_iou(pred_pos, tp, actual, torch.from_numpy(valid_per_image > 0))

    def _add_per_image_iou(self, pred_pos: Tensor, tp: Tensor, actual: Tensor, has_pixels: Tensor) -> None:
        """pred_pos, tp: [B, T] integer counts per image and threshold; actual: [B, 1]; has_pixels: [B] bool."""
        pred_pos, tp, actual = pred_pos.double(), tp.double(), actual.double()
        union = pred_pos + actual - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.ones_like(union))
        self._add("image_iou_sum", iou[has_pixels].sum(0))
        self._add("num_images", has_pixels.sum())

    def _update_per_image_miou(self, prob: Tensor, positive: Tensor, valid: Tensor) -> None:
        batch = prob.shape[0]
        n = len(self.miou_thresholds)
        thresholds = self.miou_thresholds.to(prob.device)
        # level = number of thresholds strictly below prob, so "prob > thresholds[j]" <=> level > j.
        level = torch.bucketize(prob, thresholds, right=False)
        image = torch.arange(batch, device=prob.device).view(batch, 1, 1).expand_as(level)
        key = (image * (n + 1) + level)[valid]
        pred_hist = torch.bincount(key, minlength=batch * (n + 1)).view(batch, n + 1)
        tp_hist = torch.bincount(key[positive[valid]], minlength=batch * (n + 1)).view(batch, n + 1)
        pred_pos = pred_hist.flip(1).cumsum(1).flip(1)[:, 1:]
        tp = tp_hist.flip(1).cumsum(1).flip(1)[:, 1:]
        actual = (positive & valid).flatten(1).sum(1, keepdim=True)
        has_pixels = valid.flatten(1).any(dim=1)  # an image that is entirely 255 is not an image to score
        self._add_per_image_iou(pred_pos, tp, actual, has_pixels)

    def compute(self) -> dict:
        f = f_beta(self._state["tp"], self._state["pred_pos"], self._state["actual_pos"].expand_as(self._state["tp"]),
                   self.beta_sq)
        best = int(f.argmax())
        out = {"maxf": float(f[best]), "maxf_threshold": round(float(self.thresholds[best]), 4)}
        reason = None
        if int(self._state["actual_pos"]) == 0:
            out["maxf"] = out["maxf_threshold"] = None
            reason = f"no salient (label 1) {self.name} pixel"
        if self.with_per_image_miou:
            count = int(self._state["num_images"])
            miou = self._state["image_iou_sum"] / max(count, 1)
            best_iou = int(miou.argmax())
            out["per_image_miou"] = float(miou[best_iou])
            out["per_image_miou_threshold"] = round(float(self.miou_thresholds[best_iou]), 4)
            if count == 0:  # (then there is no salient pixel either)
                out["per_image_miou"] = out["per_image_miou_threshold"] = None
                reason = f"no valid (non-255) {self.name} pixel"
        if reason:
            out[MISSING_KEY] = reason
        return out


__all__ = ["BETA_SQ", "SaliencyMeter", "f_beta", "maxf_thresholds", "per_image_miou_thresholds",
           "saliency_probability"]
