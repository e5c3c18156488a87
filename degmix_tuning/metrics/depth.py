"""Depth: RMSE, log-RMSE and abs-rel in metres, pooled over every valid pixel of the set (not per image).

valid = gt != 255 and gt > 0 (both encode "no depth" in the label convention); predictions are clamped >= 0
as in ATRC/DeGMix. For log_rmse the clamped prediction is further floored at 1e-9 (as MTI-Net/InvPT do) so that
log(0) cannot appear.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes

LOG_FLOOR = 1e-9


class DepthMeter(Meter):
    """State: squared-error sum, log squared-error sum, relative-error sum and valid-pixel count (float64)."""

    def __init__(self, name: str = "depth"):
        self.name = name
        super().__init__()

    def _init_state(self) -> dict[str, Tensor]:
        z = lambda: torch.zeros((), dtype=torch.float64)  # noqa: E731
        return {"sq_err": z(), "log_sq_err": z(), "abs_rel": z(), "count": z()}

    def update(self, pred: Tensor, label: Tensor) -> None:
        """pred: [B, 1, H, W] metres; label: [B, 1, H, W] (or [B, H, W]) metres, 0 or 255 = invalid."""
        pred, label = check_batch_shapes(self.name, pred, label, 1, 1)
        self._follow(pred)
        valid = (label != IGNORE_INDEX) & (label > 0)
        p = pred.detach().double().clamp_min(0.0)[valid]
        g = label.double()[valid]
        self._add("sq_err", ((p - g) ** 2).sum())
        self._add("log_sq_err", ((torch.log(p.clamp_min(LOG_FLOOR)) - torch.log(g)) ** 2).sum())
        self._add("abs_rel", ((p - g).abs() / g).sum())
        self._add("count", torch.tensor(float(g.numel())))

    def compute(self) -> dict:
        n = float(self._state["count"])
        if n == 0:
            return {"rmse": float("nan"), "log_rmse": float("nan"), "abs_rel": float("nan"), "num_pixels": 0}
        return {
            "rmse": float(torch.sqrt(self._state["sq_err"] / n)),
            "log_rmse": float(torch.sqrt(self._state["log_sq_err"] / n)),
            "abs_rel": float(self._state["abs_rel"] / n),
            "num_pixels": int(n),
        }


__all__ = ["DepthMeter"]
