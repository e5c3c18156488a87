"""torchvision's per-channel 1x1 `deform_conv2d`, rewritten on `F.grid_sample` because it is faster on CPU.

Why this exists: torchvision's CPU `deform_conv2d` backward loops over the C offset groups. It took about 24% of a
DeGMix head step for about 1% of the head's FLOPs. The mixers call it with a 1x1 kernel, stride 1, no padding,
no mask and one offset group per channel (offset [B, 2C, H, W]). For that case the op does two things:

1. It samples channel c at (y + offset[:, 2c], x + offset[:, 2c+1]). The first offset of each pair is the row
   (dy) and the second is the column (dx).
2. It mixes the sampled channels with the 1x1 weight and adds the bias.

This module does the same with one single-channel `grid_sample` per (image, channel), then a 1x1 `conv2d`.

torchvision's sampling rules, all checked numerically in tests/test_deform_ops.py:

- Bilinear interpolation with zeros outside the map. A sample with y <= -1, y >= H, x <= -1 or x >= W gives 0. A
  sample inside that range weights each of its 4 corners, and corners outside the map count as 0. This is
  `grid_sample(mode="bilinear", padding_mode="zeros", align_corners=True)` in pixel coordinates.
- The bilinear cell of a sample is [floor(y), floor(y) + 1] x [floor(x), floor(x) + 1]. The interpolated value
  is continuous, but its derivative jumps at integer coordinates. There the offset gradient is the one-sided
  derivative of the cell to the right or below. This holds at y = -1 as well (zero value, non-zero dy
  gradient from row 0) and at y = H - 1. At y = H every gradient is 0.

Cell agreement: `grid_sample` takes normalised coordinates g = y / s - 1, with s = (H - 1) / 2, and turns them
back into pixels as (g + 1) * s. A coordinate on an integer line, or within a few ulps of one, can land in the
neighbouring cell after that round trip. Left alone, this changed the offset gradient at about 11% of exactly
integer positions in float64 and at about 2 in 10^6 samples of generic float32 offsets. So
`_normalised_grid` repeats the kernel's round trip. Where the cell changes, it moves the coordinate the fewest ulps
needed to bring it back into torchvision's cell. The value changes only at rounding level.
One rounding-level difference remains: at exactly y = -1 or x = -1, torchvision returns an exact 0, while this op
can return |x| times a few ulps (6.7e-17 in the float64 test). The gradients agree there as well.
Maps with H or W equal to 1 get a zero row or column appended, because align_corners=True cannot address them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _normalised_grid(pos: Tensor, sizes: tuple[int, int]) -> Tensor:
    """Pixel coordinates pos [B, C, 2, H, W] (rows, cols) on a map of `sizes` (both >= 2) -> grid_sample's
    normalised coordinates, in the same layout. grid_sample will use floor(pos) as the bilinear cell."""
    s = pos.new_tensor([(n - 1) / 2 for n in sizes]).view(2, 1, 1)
    g = pos / s - 1
    with torch.no_grad():  # changes below are invisible to autograd: the gradient w.r.t. pos stays 1 / s
        moved = (g + 1).mul_(s).floor_() != torch.floor(pos)  # aten's unnormalize (align_corners): (g + 1) * s
        if not moved.any():
            return g
        idx = moved.nonzero(as_tuple=True)  # rare: coordinates on, or a few ulps off, an integer line
        p, scale = pos[idx], s.view(2)[idx[2]]
        cell = torch.floor(p)
        ulp = torch.finfo(p.dtype).eps * (p.abs() + 1)
        fixed = g[idx]
        todo = torch.ones_like(p, dtype=torch.bool)
        for k in range(12):  # the smallest nudge into the cell first: 1, 2, 4, ... ulps of |p| + 1
            cand = torch.minimum(torch.maximum(p, cell + ulp * 2**k), cell + 1 - ulp * 2**k) / scale - 1
            ok = todo & (torch.floor((cand + 1) * scale) == cell)
            fixed, todo = torch.where(ok, cand, fixed), todo & ~ok
            if not todo.any():
                break
        g[idx] = fixed
    return g


def deform_conv1x1_grid_sample(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`torchvision.ops.deform_conv2d(x, offset, weight, bias)` for a 1x1 kernel, stride 1, no padding, no mask and
    offset_groups = C. Shapes: x [B, C, H, W], offset [B, 2C, H, W], weight [C_out, C, 1, 1], bias [C_out]."""
    b, c, h, w = x.shape
    if offset.shape != (b, 2 * c, h, w) or weight.shape[1:] != (c, 1, 1):
        raise ValueError(f"per-channel 1x1 deform conv: got x {tuple(x.shape)}, offset {tuple(offset.shape)}, "
                         f"weight {tuple(weight.shape)}; need offset [B, 2C, H, W] and weight [C_out, C, 1, 1]")
    rows = torch.arange(h, dtype=x.dtype, device=x.device)
    cols = torch.arange(w, dtype=x.dtype, device=x.device)
    pos = offset.view(b, c, 2, h, w) + torch.stack(torch.meshgrid(rows, cols, indexing="ij"))  # torchvision's y, x
    hs, ws = max(h, 2), max(w, 2)
    grid = _normalised_grid(pos, (hs, ws)).permute(0, 1, 3, 4, 2).reshape(b * c, h, w, 2)  # (row, col) pairs
    images = x.reshape(b * c, 1, h, w)
    if (hs, ws) != (h, w):
        images = F.pad(images, (0, ws - w, 0, hs - h))
    # grid_sample reads grid[..., 0] as the column of its input: give it each image transposed (a view), so the
    # grid keeps torchvision's (row, col) order
    sampled = F.grid_sample(images.transpose(-1, -2), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)
    return F.conv2d(sampled.view(b, c, h, w), weight, bias)
