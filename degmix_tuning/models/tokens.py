"""The head's maps <-> tokens boundary as explicit layout conversions, forward and backward.

The mixers and the task heads work on maps [B, d, h, w]; task interaction and task query work on tokens
[B, T, N, d] (N = h*w). A plain ``flatten(2).transpose(1, 2)`` is a view, so autograd hands the mixers
channels-last-strided gradient views. At batch 1 those hit a torch CPU bug: BatchNorm2d backward reads them as
NCHW and returns garbage (benchmarks/batchnorm_batch1_grad_bug.py). Here each crossing copies into the other
side's layout in both directions: tokens are contiguous [B, T, N, d], maps and map gradients are NCHW-contiguous.
The values are the same as the views'; only the memory layout is fixed.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _MapsToTokens(torch.autograd.Function):
    """Stacked maps [T, B, d, h, w] -> contiguous tokens [B, T, h*w, d]; backward gives an NCHW-contiguous gradient
    [T, B, d, h, w], so `torch.stack`'s backward hands each map a contiguous [B, d, h, w] slice.

    One tensor in, not T varargs: torch 2.14's dynamo traced `forward(ctx, *maps)` with two maps and no input
    requiring grad (evaluation) as one map, so a compiled two-task head crashed (tests/test_compile_head.py).
    """

    @staticmethod
    def forward(ctx, stacked: Tensor) -> Tensor:
        ctx.stacked_shape = stacked.shape
        return stacked.flatten(3).permute(1, 0, 3, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_tokens: Tensor) -> Tensor:
        # [B, T, N, d] -> [T, B, d, N] in one copy: slice t is then a contiguous [B, d, h, w] block
        return grad_tokens.permute(1, 0, 3, 2).contiguous().view(ctx.stacked_shape)


class _TokensToMap(torch.autograd.Function):
    """Tokens [B, h*w, d] -> NCHW-contiguous map [B, d, h, w]; backward gives contiguous token gradients."""

    @staticmethod
    def forward(ctx, tokens: Tensor, h: int, w: int) -> Tensor:
        b, _, d = tokens.shape
        return tokens.transpose(1, 2).reshape(b, d, h, w).contiguous()

    @staticmethod
    def backward(ctx, grad_map: Tensor) -> tuple[Tensor, None, None]:
        return grad_map.flatten(2).transpose(1, 2).contiguous(), None, None


def maps_to_tokens(maps: list[Tensor]) -> Tensor:
    """T maps [B, d, h, w] (same shape) -> tokens [B, T, h*w, d], task-major."""
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise ValueError(f"maps_to_tokens needs T maps of one shape [B, d, h, w], got shapes {sorted(shapes)}")
    return _MapsToTokens.apply(torch.stack(maps))


def tokens_to_map(tokens: Tensor, h: int, w: int) -> Tensor:
    """One task's tokens [B, h*w, d] -> map [B, d, h, w]."""
    if tokens.dim() != 3 or tokens.shape[1] != h * w:
        raise ValueError(f"tokens_to_map needs tokens [B, {h}*{w}, d], got {tuple(tokens.shape)}")
    return _TokensToMap.apply(tokens, h, w)
