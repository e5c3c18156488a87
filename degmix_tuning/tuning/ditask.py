"""`ditask`: DiTASK (Mantri et al., CVPR 2025): keep each frozen weight's singular vectors, warp its spectrum.

Every target weight W = U diag(s) V^T is decomposed once, on the first forward (float32 SVD, cached as
non-persistent buffers; Swin-T needs 72 of them, about 10 s on one CPU core; call `refresh_svd()` after changing the
base weights). Training learns a monotone, endpoint-preserving warp phi of the normalised index axis [0, 1] of the
sorted spectrum and re-samples it linearly: s'_i = s(phi(i / (k-1)) * (k-1)); the layer computes with
W' = U diag(s') V^T (full rank, same singular vectors, s'_max = s_max, s'_min = s_min, order kept, every s'_i between
neighbouring old values), the behaviour of DiTASK's difw CPAB `transform_data`.

Our warp (a documented replacement for CPAB's closed-form integration): `tess` equal cells on [0, 1]; cell j gets
mass softmax([theta, 0])_j and phi is the piecewise-linear map through the cumulative masses. That is `tess - 1`
free parameters per weight, exactly CPAB's count with zero boundary, and theta = 0 is the identity. The official
code initialises theta kaiming-uniformly (so it does not start at the pretrained model); `init="random"` does the
same (uniform in +-1/sqrt(tess-1)), `init="zero"` (default) starts at the identity.

Layout (as the released code): a shared theta (tess 64 -> 63 numbers) on qkv/proj/fc1/fc2 of every block; the fused
qkv weight is split into its q, k, v thirds, each decomposed separately, warped with the same theta; per-task thetas
(tess 4 -> 3 numbers) on proj/fc1/fc2 of each stage's last block with per-task streams (task output W'_t x_task, see
streams.py). The released code also builds task thetas on qkv whose outputs are discarded (144 dead scalars on
Swin-T); we do not build them. Swin-T, 4 tasks: 48 * 63 + 4 * 3 * 3 * 4 = 3,168 scalars (+ 1,599,546 extras). Of
these, the shared thetas of proj/fc1/fc2 in the very last block (189) get no gradient, in the released code too:
task layers read only the task stream, and the final shared map feeds no decoder.
Dropout 0.05 on the adapted layer's input, as released. Weights with at most 2 singular values (a layer with 1 or 2
inputs or outputs) stay frozen and unwrapped: a warp that keeps both end points cannot change such a spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import TuningConfig, register_tuning_method
from .extras import BackboneExtras, unfreeze_extras
from .streams import MultiTaskLayer, wrap_stage_blocks

INITS = ("zero", "random")


def monotone_index_warp(theta: Tensor, u: Tensor) -> Tensor:
    """phi_theta(u) for u in [0, 1]: piecewise linear over len(theta)+1 equal cells with masses softmax([theta, 0])."""
    tess = theta.numel() + 1
    mass = torch.softmax(torch.cat([theta, theta.new_zeros(1)]), dim=0)
    knots = torch.cat([mass.new_zeros(1), torch.cumsum(mass, dim=0)])
    knots = knots / knots[-1]  # phi(1) == 1 exactly
    cell = (u * tess).floor().clamp(0, tess - 1)
    frac = u * tess - cell
    cell = cell.long()
    return torch.lerp(knots[cell], knots[cell + 1], frac)  # lerp(a, b, 1) == b exactly


def warp_spectrum(s: Tensor, theta: Tensor) -> Tensor:
    """s: [..., k] sorted singular values -> s re-sampled at the warped index positions (same shape)."""
    k = s.shape[-1]
    if k == 1 or theta.numel() == 0:
        return s
    u = torch.linspace(0.0, 1.0, k, device=s.device, dtype=s.dtype)
    pos = monotone_index_warp(theta.to(s.dtype), u) * (k - 1)
    lo = pos.floor().clamp(0, k - 2)
    w = pos - lo
    lo = lo.long()
    return torch.lerp(s[..., lo], s[..., lo + 1], w)


class SpectralWarpLayer(MultiTaskLayer):
    """A frozen Linear/Conv2d whose weight is rebuilt as U diag(warped s) V^T in every forward."""

    def __init__(self, base: nn.Module, tess: int, tasks: list[str], task_tess: int, groups: int, dropout: float,
                 init: str):
        super().__init__(base, tasks if task_tess > 1 else [])
        self.groups = groups
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for name in ("svd_u", "svd_s", "svd_vh"):  # filled on the first forward (SVDs are slow on CPU)
            self.register_buffer(name, None, persistent=False)
        self.theta = nn.Parameter(torch.zeros(tess - 1))
        self.task_theta = nn.ParameterDict({t: nn.Parameter(torch.zeros(task_tess - 1)) for t in self.tasks})
        if init == "random":
            for p in [self.theta, *self.task_theta.values()]:
                bound = 1.0 / math.sqrt(max(p.numel(), 1))
                nn.init.uniform_(p, -bound, bound)

    @torch.no_grad()
    def refresh_svd(self) -> None:
        """(Re)compute the cached SVD from the current base weight (done automatically on the first forward)."""
        w = self.base.weight.detach()
        mat = w.float().reshape(self.groups, w.shape[0] // self.groups, -1)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # MKL's threaded SVD was 10-25x slower than one thread on our 2-core CPUs
        try:
            u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        finally:
            torch.set_num_threads(threads)
        for name, t in (("svd_u", u), ("svd_s", s), ("svd_vh", vh)):
            self.register_buffer(name, t.to(w.dtype), persistent=False)

    def warped_weight(self, theta: Tensor) -> Tensor:
        if self.structure_only:  # the build-time probe checks shapes and calls only: no SVD for it
            return self.base.weight
        if self.svd_s is None:
            self.refresh_svd()
        s = warp_spectrum(self.svd_s, theta)
        return ((self.svd_u * s.unsqueeze(-2)) @ self.svd_vh).reshape(self.base.weight.shape)

    def _run(self, x: Tensor, weight: Tensor) -> Tensor:
        x = self.dropout(x)
        b = self.base
        if isinstance(b, nn.Conv2d):
            return F.conv2d(x, weight, b.bias, b.stride, b.padding, b.dilation)
        return F.linear(x, weight, b.bias)

    def shared_forward(self, x: Tensor) -> Tensor:
        return self._run(x, self.warped_weight(self.theta))

    def task_forward(self, x_shared: Tensor, x_task: Tensor, task: str) -> Tensor:
        return self._run(x_task, self.warped_weight(self.task_theta[task]))


@dataclass
class DiTASKConfig(TuningConfig):
    method: str = "ditask"
    head: str = "light"
    tess: int = field(default=64, metadata={"help": "shared tessellation size: tess-1 parameters per weight"})
    task_tess: int = field(default=4, metadata={"help": "per-task tessellation size; 0 or 1 = no task streams"})
    init: str = field(default="zero", metadata={"help": "'zero' (identity) or 'random' (official kaiming-uniform)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapted layer's input (released: 0.05)"})
    fused_qkv: tuple[str, ...] = field(default=("qkv",), metadata={"help": "layer names holding [q; k; v]"})
    target_types: tuple[str, ...] = field(default=("linear", "conv2d"), metadata={"help": "layer types to adapt"})
    task_exclude: tuple[str, ...] = field(default=("qkv",), metadata={"help": "layer names without task thetas"})
    extras: BackboneExtras = field(default_factory=BackboneExtras)

    def __post_init__(self):
        super().__post_init__()
        if self.tess < 2 or self.task_tess < 0:
            raise ValueError(f"ditask: tess must be >= 2 and task_tess >= 0, got {self.tess}, {self.task_tess}")
        if self.init not in INITS:
            raise ValueError(f"ditask: init must be one of {INITS}, got {self.init!r}")


def apply(model: nn.Module, cfg: DiTASKConfig) -> None:
    unfreeze_extras(model.backbone, cfg.extras)

    def make_layer(name: str, layer: nn.Module, layer_tasks: list[str]) -> nn.Module:
        groups = 3 if name.rpartition(".")[2] in cfg.fused_qkv else 1
        if layer.weight.shape[0] % groups:
            raise ValueError(f"ditask: {name} is listed in fused_qkv but its "
                             f"{layer.weight.shape[0]} outputs do not split into 3 equal parts")
        if min(layer.weight.shape[0] // groups, layer.weight[0].numel()) <= 2:
            return layer  # the warp keeps both end points of the spectrum: with <= 2 values it could change nothing
        return SpectralWarpLayer(layer, cfg.tess, layer_tasks, cfg.task_tess, groups, cfg.dropout, cfg.init)

    wrap_stage_blocks(model, "ditask", cfg.target_types, cfg.task_exclude, cfg.task_tess > 1, make_layer)


register_tuning_method("ditask", DiTASKConfig, apply)
