"""Surface normals: angular error in degrees, pooled over every valid pixel of the set.

As in ATRC/InvPT/DeGMix: prediction and ground truth are L2-normalised (a zero vector stays zero) and
angle = degrees(2 * atan2(|p - g|, |p + g|)), which is numerically stable near 0 and 180 degrees; valid pixels
have all three GT channels != 255. Reported: mean (the main metric), median, true RMSE = sqrt(mean(angle^2)) and
the fractions (in [0, 1]) of angles strictly below 11.25, 22.5 and 30 degrees.

The median is an APPROXIMATION read from an additive histogram (default 0.01-degree bins over 0..180): the
returned value is the centre of the bin holding the middle angle (mean of the two middle bins for an even
count), so its error is at most half a bin width (0.005 degrees). Everything else is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)


def angular_error_degrees(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-pixel angle between [B, 3, H, W] vector fields after L2 normalisation -> [B, H, W] degrees."""
    p = F.normalize(pred, p=2, dim=1)
    g = F.normalize(gt, p=2, dim=1)
    return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))


class NormalsMeter(Meter):
    """State: angle sum, squared-angle sum, count, threshold counts and a fine angle histogram (for the median)."""

    def __init__(self, name: str = "normals", bin_width: float = 0.01):
        if bin_width <= 0 or bin_width > 180:
            raise ValueError(f"{name}: bin_width must be in (0, 180] degrees, got {bin_width}")
        self.name = name
        self.bin_width = float(bin_width)
        self.num_bins = int(math.ceil(180.0 / self.bin_width))
        super().__init__()

    def _init_state(self) -> dict[str, Tensor]:
        return {
            "angle_sum": torch.zeros((), dtype=torch.float64),
            "angle_sq_sum": torch.zeros((), dtype=torch.float64),
            "count": torch.zeros((), dtype=torch.int64),
            "below": torch.zeros(len(ANGLE_THRESHOLDS), dtype=torch.int64),
            "histogram": torch.zeros(self.num_bins, dtype=torch.int64),
        }

    def update(self, pred: Tensor, label: Tensor) -> None:
        """pred: [B, 3, H, W] raw normals (any scale); label: [B, 3, H, W] in [-1, 1], all-255 = invalid."""
        pred, label = check_batch_shapes(self.name, pred, label, 3, 3)
        self._follow(pred)
        valid = (label != IGNORE_INDEX).all(dim=1)
        angle = angular_error_degrees(pred.detach().float(), label.float())[valid].double()
        self._add("angle_sum", angle.sum())
        self._add("angle_sq_sum", (angle ** 2).sum())
        self._add("count", torch.tensor(angle.numel()))
        self._add("below", torch.stack([(angle < t).sum() for t in ANGLE_THRESHOLDS]))
        bins = (angle / self.bin_width).long().clamp_(0, self.num_bins - 1)
        self._add("histogram", torch.bincount(bins, minlength=self.num_bins))

    def _median(self) -> float:
        hist = self._state["histogram"]
        n = int(hist.sum())
        cumulative = hist.cumsum(0)
        # 0-based ranks of the middle element(s); searchsorted finds the bin holding rank r (cumulative > r).
        ranks = torch.tensor([(n - 1) // 2, n // 2], device=hist.device)
        bins = torch.searchsorted(cumulative, ranks, right=True)
        return float(((bins.double() + 0.5) * self.bin_width).mean())

    def compute(self) -> dict:
        n = int(self._state["count"])
        if n == 0:
            nan = float("nan")
            return {"mean_angle": nan, "median_angle": nan, "rmse_angle": nan,
                    "within_11_25": nan, "within_22_5": nan, "within_30": nan, "num_pixels": 0}
        below = (self._state["below"].double() / n).tolist()
        return {
            "mean_angle": float(self._state["angle_sum"] / n),
            "median_angle": self._median(),
            "rmse_angle": float(torch.sqrt(self._state["angle_sq_sum"] / n)),
            "within_11_25": below[0],
            "within_22_5": below[1],
            "within_30": below[2],
            "num_pixels": n,
        }


__all__ = ["ANGLE_THRESHOLDS", "NormalsMeter", "angular_error_degrees"]
