"""Depth: RMSE, log-RMSE and abs-rel in metres, pooled over every valid pixel of the set (not per image).

valid = gt != 255 and gt > 0 (both encode "no depth" in the label convention); predictions are clamped >= 0
as in ATRC/DeGMix. For log_rmse the clamped prediction is further floored at 1e-9 (as MTI-Net/InvPT do) so that
log(0) cannot appear. With no valid pixel at all the metrics are missing (None, with the reason), not NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes, missing_result

LOG_FLOOR = 1e-9
_NUMPY_FLOATS = (torch.float32, torch.float64)


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
        if pred.device.type == "cpu" and pred.dtype in _NUMPY_FLOATS and label.dtype in _NUMPY_FLOATS:
            # numpy gathers the float32 values (torch's boolean indexing of the float64 copies was ~80 % of the time);
            # the float64 vectors are then the same values in the same order, so every sum below is identical
            lab = label.detach().numpy()
            valid = lab != IGNORE_INDEX
            valid &= lab > 0
            p = torch.from_numpy(pred.detach().numpy()[valid]).double().clamp_min(0.0)
            g = torch.from_numpy(lab[valid]).double()
        else:
            valid = (label != IGNORE_INDEX) & (label > 0)
            p = pred.detach().double().clamp_min(0.0)[valid]
            g = label.double()[valid]
        # In-place steps where a temporary is no longer needed (same elementwise kernels, so the same values as
        # `((p - g) ** 2).sum()`, `((log(p.clamp_min(floor)) - log(g)) ** 2).sum()`, `((p - g).abs() / g).sum()`);
        # fresh ~2 MB temporaries cost more than the arithmetic here.
        diff = p - g
        self._add("sq_err", (diff ** 2).sum())
        log_diff = p.clamp_min_(LOG_FLOOR).log_().sub_(torch.log(g))
        self._add("log_sq_err", log_diff.pow_(2).sum())
        self._add("abs_rel", diff.abs_().div_(g).sum())
        self._add("count", torch.tensor(float(g.numel())))

    def compute(self) -> dict:
        n = float(self._state["count"])
        if n == 0:
            return missing_result(("rmse", "log_rmse", "abs_rel"), f"no valid {self.name} pixel", num_pixels=0)
        return {
            "rmse": float(torch.sqrt(self._state["sq_err"] / n)),
            "log_rmse": float(torch.sqrt(self._state["log_sq_err"] / n)),
            "abs_rel": float(self._state["abs_rel"] / n),
            "num_pixels": int(n),
        }


__all__ = ["DepthMeter"]
