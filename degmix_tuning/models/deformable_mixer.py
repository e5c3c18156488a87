"""The deformable mixer ("encoder"): per task, blocks of channel-aware mixing + spatial deformable mixing.

A block is ``x = BN(GELU(conv1x1(x)))`` followed by ``x = x + BN(GELU(DeformConv(x)))``. The deformable
operator is torchvision's `deform_conv2d` with a 1x1 kernel and one offset group per channel, so every channel
is sampled at its own learned (dy, dx) before a 1x1 channel mix. `deform_impl` picks how it runs: torchvision's op,
or the same computation through `grid_sample` (models/deform_ops.py). The two give the same outputs and gradients.
"auto" uses grid_sample on CPU, the only device where that equivalence is tested, and torchvision elsewhere.

Under autocast (bf16/fp16 mixed precision) the offsets and the sampling positions stay float32: they are built from
absolute pixel coordinates (up to ~140 at 107x140 maps), which bf16 spaces 1 px apart there, so low-precision
offsets moved the samples by up to ~1 px. Only the features being sampled and mixed are in low precision.

Non-finite offsets (diverged weights, NaN features): torchvision's CPU kernel turns a NaN coordinate into a wild
index and crashes the process (SIGSEGV). On the devices of `GUARDED_DEVICES` the torchvision path therefore
replaces non-finite offsets by 0 before the call and sets the output pixels they belong to to NaN afterwards, which
is what the grid_sample path gives for them; the NaN then reaches the loss, where the training loop's existing check
names the step and task. The guard is elementwise on the device (masks, no value read on the host), so it adds no
sync anywhere; it is left off CUDA, where it would cost extra passes over the offsets at every step and a GPU's
float-to-int conversion of NaN is believed to give an in-bounds index (NaN samples, not a crash; no GPU here to
test it): add "cuda" to the tuple if that ever proves wrong.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from .deform_ops import deform_conv1x1_grid_sample

DEFORM_IMPLS = ("auto", "grid_sample", "torchvision")
GRID_SAMPLE_DEVICES = ("cpu",)  # where "auto" picks grid_sample: tested equivalent and faster (test_deform_ops.py)
GUARDED_DEVICES = ("cpu",)  # where torchvision's op never sees a non-finite offset (module docstring)


def resolve_deform_impl(impl: str, device: torch.device) -> str:
    """"auto" -> "grid_sample" on the devices of GRID_SAMPLE_DEVICES, "torchvision" elsewhere."""
    if impl not in DEFORM_IMPLS:
        raise ValueError(f"deform_impl must be one of {DEFORM_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "grid_sample" if device.type in GRID_SAMPLE_DEVICES else "torchvision"
    return impl


def guarded_deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`deform_conv2d` that never hands torchvision a NaN/inf offset: those become 0 for the call, and the output
    pixels whose offsets (any channel) were not finite become NaN. No host sync: masks only."""
    bad = ~torch.isfinite(offset)
    out = deform_conv2d(x, offset.masked_fill(bad, 0.0), weight, bias)
    return out.masked_fill(bad.any(dim=1, keepdim=True), float("nan"))


class OffsetGenerator(nn.Module):
    """Predicts a per-channel (dy, dx) displacement for every pixel.

    A zero-initialised k x k conv proposes k*k (row, col) displacements; the absolute pixel coordinates and the
    k x k grid are added (as in the official code), and a grouped k x k conv (rows | cols) maps them to 2*dim
    offset channels. All of it runs in float32 (or wider) with autocast off: these are positions, not features.
    """

    def __init__(self, dim: int, kernel_size: int = 3, absolute_coords: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.absolute_coords = absolute_coords
        n = kernel_size * kernel_size
        self.proposal = nn.Conv2d(dim, 2 * n, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.proposal.weight)
        self.to_offsets = nn.Conv2d(2 * n, 2 * dim, kernel_size, padding=kernel_size // 2, groups=2)

    def _base_grid(self, h: int, w: int, ref: Tensor) -> Tensor:
        """[1, 2k^2, h, w]: rows (first k^2 channels) then cols of p0 + pn."""
        k = self.kernel_size
        r = torch.arange(-(k - 1) // 2, (k - 1) // 2 + 1, device=ref.device, dtype=ref.dtype)
        pn_row, pn_col = torch.meshgrid(r, r, indexing="ij")
        pn = torch.cat([pn_row.flatten(), pn_col.flatten()]).view(1, 2 * k * k, 1, 1)
        if not self.absolute_coords:
            return pn.expand(1, -1, h, w)
        rows = torch.arange(1, h + 1, device=ref.device, dtype=ref.dtype).view(1, 1, h, 1).expand(1, k * k, h, w)
        cols = torch.arange(1, w + 1, device=ref.device, dtype=ref.dtype).view(1, 1, 1, w).expand(1, k * k, h, w)
        return torch.cat([rows, cols], dim=1) + pn

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, H, W] -> offsets [B, 2C, H, W], float32 (float64 for float64 input) under any autocast."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            p = self.proposal(x.to(dtype))
            p = p + self._base_grid(x.shape[-2], x.shape[-1], p)
            return self.to_offsets(p)


class ChannelDeformableConv(nn.Module):
    """1x1 deformable conv with per-channel offsets (offset_groups = C): `torchvision.ops.deform_conv2d`, or the same
    op through grid_sample (`impl`, a plain attribute: it adds nothing to the state dict)."""

    def __init__(self, dim: int, offset_kernel: int = 3, absolute_coords: bool = True, impl: str = "auto"):
        super().__init__()
        if impl not in DEFORM_IMPLS:
            raise ValueError(f"deform_impl must be one of {DEFORM_IMPLS}, got {impl!r}")
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(dim, dim, 1, 1))
        self.bias = nn.Parameter(torch.empty(dim))
        self.offsets = OffsetGenerator(dim, offset_kernel, absolute_coords)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(dim)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offsets(x)  # float32 positions whatever the autocast (OffsetGenerator)
        # deform_conv2d has no bf16/fp16 CPU kernel; run it in the input's float32 upcast when autocast is on
        # (the grid_sample path does the same, so both paths compute the same thing)
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        if resolve_deform_impl(self.impl, x.device) == "grid_sample":
            op = deform_conv1x1_grid_sample
        else:
            op = guarded_deform_conv2d if x.device.type in GUARDED_DEVICES else deform_conv2d
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = op(x.to(dtype), offset.to(dtype), self.weight.to(dtype), self.bias.to(dtype))
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}"


class DeformableMixerBlock(nn.Module):
    """Channel-aware mixing (1x1 conv, GELU, BN) then a residual spatial deformable operator (DeformConv, GELU, BN)."""

    def __init__(self, dim: int, offset_kernel: int = 3, absolute_coords: bool = True, deform_impl: str = "auto"):
        super().__init__()
        self.channel_mix = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))
        self.spatial_mix = nn.Sequential(
            ChannelDeformableConv(dim, offset_kernel, absolute_coords, deform_impl), nn.GELU(), nn.BatchNorm2d(dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.channel_mix(x)
        return x + self.spatial_mix(x)


class DeformableMixer(nn.Sequential):
    """`depth` mixer blocks for one task: [B, d, h, w] -> [B, d, h, w]."""

    def __init__(self, dim: int, depth: int = 2, offset_kernel: int = 3, absolute_coords: bool = True,
                 deform_impl: str = "auto"):
        super().__init__(
            *[DeformableMixerBlock(dim, offset_kernel, absolute_coords, deform_impl) for _ in range(depth)]
        )
