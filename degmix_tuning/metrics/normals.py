"""Surface normals: angular error in degrees, pooled over every valid pixel of the set.

As in ATRC/InvPT/DeGMix: prediction and ground truth are L2-normalised (a zero vector stays zero) and
angle = degrees(2 * atan2(|p - g|, |p + g|)), which is numerically stable near 0 and 180 degrees; valid pixels
have all three GT channels != 255. Reported: mean (the main metric), median, true RMSE = sqrt(mean(angle^2)) and
the fractions (in [0, 1]) of angles strictly below 11.25, 22.5 and 30 degrees.

The median is an APPROXIMATION read from an additive histogram (default 0.01-degree bins over 0..180): the
returned value is the centre of the bin holding the middle angle (mean of the two middle bins for an even
count), so its error is at most half a bin width (0.005 degrees). Everything else is exact. With no valid pixel
at all the metrics are missing (None, with the reason), not NaN.

Speed (CPU): `torch.norm(dim=1)` over 3 channels goes through torch's generic strided reduction (~40 ms for one
425x560 image, 4 of them per update), so the CPU path computes every norm from the 3 channel slices instead:
float32 (x0*x0 + x1*x1) + x2*x2 followed by a correctly rounded square root (numpy's; `torch.sqrt` on float32 is
not correctly rounded on every CPU build). That is exactly what torch's norm kernel computes (float32 products
and sums in channel order, exact sqrt), so the angles are bit-identical to the `F.normalize` / `.norm(dim=1)`
formula; the transcendental step (`torch.atan2`) runs on a tensor of the same shape and layout as before, so its
vectorised/scalar split is unchanged too (tests/test_meter_speedups.py checks the bit identity, so a torch whose
norm kernel rounds differently is caught). Other devices and layouts use the formula as written.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes, missing_result

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
NORMALIZE_EPS = 1e-12  # F.normalize's default


def _angular_error_reference(pred: Tensor, gt: Tensor) -> Tensor:
    p = F.normalize(pred, p=2, dim=1)
    g = F.normalize(gt, p=2, dim=1)
    return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))


def _norm_into(out: Tensor, tmp: Tensor, c0, c1, c2) -> Tensor:
    """out = sqrt((c0^2 + c1^2) + c2^2) per pixel, bit-identical to torch's CPU `norm(dim=1)` of the 3 stacked float32
    channels (its generic kernel: float32 products and sums in channel order, then an exact sqrt). Each `c` is a
    function writing one channel into the buffer it is given; `out`/`tmp` are [B, H, W] float32 buffers."""
    c0(out)
    out.mul_(out)
    for channel in (c1, c2):
        channel(tmp)
        tmp.mul_(tmp)
        out += tmp
    np.sqrt(out.numpy(), out=out.numpy())  # correctly rounded; torch.sqrt on float32 is not on every CPU build
    return out


def _copy(x: Tensor):
    return lambda buf: buf.copy_(x)


def _unit_into(x: Tensor, out: Tensor, norm: Tensor, tmp: Tensor) -> None:
    """out[c] = F.normalize(x, dim=1)[:, c] for a [B, 3, H, W] float32 field (same eps, same division)."""
    _norm_into(norm, tmp, *(_copy(x[:, c]) for c in range(3))).clamp_min_(NORMALIZE_EPS)
    for c in range(3):
        torch.div(x[:, c], norm, out=out[c])


def _fast_path_applies(pred: Tensor, gt: Tensor) -> bool:
    """The channel-slice formula reproduces torch's generic strided norm kernel, which is what `norm(dim=1)` runs for
    contiguous NCHW float32 CPU tensors with more than one pixel. Channels-last or 1-pixel inputs make the channel
    dim the innermost one, where torch uses another (vectorised) kernel with other rounding: keep the formula."""
    return (pred.device.type == "cpu" and gt.device.type == "cpu" and pred.dtype == torch.float32
            and gt.dtype == torch.float32 and not pred.requires_grad and not gt.requires_grad
            and pred.ndim == 4 and pred.shape == gt.shape and pred.shape[1] == 3 and pred.shape[2] * pred.shape[3] > 1
            and pred.is_contiguous() and gt.is_contiguous())


def angular_error_degrees(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-pixel angle between [B, 3, H, W] vector fields after L2 normalisation -> [B, H, W] degrees."""
    if not _fast_path_applies(pred, gt):
        return _angular_error_reference(pred, gt)
    batch, _, height, width = pred.shape
    work = torch.empty(9, batch, height, width)  # one allocation: p (3), g (3), 3 scratch planes
    p, g, a, b, c = work[0:3], work[3:6], work[6], work[7], work[8]
    _unit_into(pred, p, a, b)
    _unit_into(gt, g, a, b)
    diff = _norm_into(a, b, *(lambda buf, i=i: torch.sub(p[i], g[i], out=buf) for i in range(3)))
    total = _norm_into(c, b, *(lambda buf, i=i: torch.add(p[i], g[i], out=buf) for i in range(3)))
    # same elementwise ops as rad2deg(2.0 * atan2(|p - g|, |p + g|)), on a [B, H, W] tensor of the same layout
    return torch.rad2deg_(torch.atan2(diff, total).mul_(2.0))


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
        pred, label = pred.detach().float(), label.detach().float()
        angle = angular_error_degrees(pred, label)
        if angle.device.type == "cpu":
            # valid = all three GT channels != 255; numpy compares/gathers several times faster than torch here.
            lab = label.numpy()
            valid = lab[:, 0] != IGNORE_INDEX
            valid &= lab[:, 1] != IGNORE_INDEX
            valid &= lab[:, 2] != IGNORE_INDEX
            # same values in the same (row-major) order as angle[valid].double(), so the sums below are identical
            angle = torch.from_numpy(angle.numpy()[valid]).double()
            below = torch.tensor([np.count_nonzero(angle.numpy() < t) for t in ANGLE_THRESHOLDS])
        else:
            angle = angle[(label != IGNORE_INDEX).all(dim=1)].double()
            below = torch.stack([(angle < t).sum() for t in ANGLE_THRESHOLDS])
        self._add("angle_sum", angle.sum())
        self._add("angle_sq_sum", (angle ** 2).sum())
        self._add("count", torch.tensor(angle.numel()))
        self._add("below", below)
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
            return missing_result(("mean_angle", "median_angle", "rmse_angle", "within_11_25", "within_22_5",
                                   "within_30"), f"no valid {self.name} pixel", num_pixels=0)
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
