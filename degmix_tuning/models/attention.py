"""Multi-head attention with one image per sequence (batch_first), softmax always on.

Parameters match `nn.MultiheadAttention` (q/k/v/out projections with bias: 4d^2 + 4d), but the batch axis is
never attended over, and the token layout is chosen by the caller: all tokens of an image ("global") or the T
task tokens at one pixel ("pixel").

Per-pixel attention hands `scaled_dot_product_attention` one sequence per pixel: B*h*w of them (~120k at 425x560,
batch 8). CUDA's fused SDPA kernels put the batch (and the heads) on grid axes limited to 65,535 blocks
(pytorch/pytorch#142228, #146704) and fail beyond that. So the sequences go to SDPA in chunks of at most
65,535 // heads; sequences never interact, so the result is the unchunked one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CUDA_GRID_LIMIT = 65_535  # blocks along a CUDA grid's y or z axis, where SDPA's kernels put the batch and heads


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 2):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"head width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # sequences per SDPA call (a plain attribute, not state): sequences * heads stays within the grid limit
        self.max_sequences_per_call = max(1, CUDA_GRID_LIMIT // num_heads)

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """query [S, Nq, d], key/value [S, Nk, d] -> [S, Nq, d]; S independent sequences (never mixed)."""
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        out = self._attend(q, k, v)
        s, h, n, hd = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(s, n, h * hd))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """SDPA over [S, heads, n, hd], at most `max_sequences_per_call` sequences per call."""
        step = self.max_sequences_per_call
        if q.shape[0] <= step:
            return F.scaled_dot_product_attention(q, k, v)
        chunks = zip(q.split(step), k.split(step), v.split(step))
        return torch.cat([F.scaled_dot_product_attention(*qkv) for qkv in chunks])

    def value_only(self, x: Tensor) -> Tensor:
        """What the official task interaction computes with one image per GPU: out_proj(v_proj(x)).

        There the softmax runs over a single key, so q/k get exact-zero gradients (not None). `_zero_from_qk` keeps
        that: q/k stay in the graph with zero gradients, so weight decay still applies and DDP sees them used.
        """
        return self.out_proj(self.v_proj(x)) + self._zero_from_qk()

    def _zero_from_qk(self) -> Tensor:
        """An exact 0.0 that depends on every q/k parameter, with gradient exactly 0.

        Sums of empty slices: no element is read, so the value is 0 and the gradient is a zero tensor even for
        inf/NaN weights; the cost is nil in forward and one zero-fill per parameter in backward.
        """
        params = (self.q_proj.weight, self.q_proj.bias, self.k_proj.weight, self.k_proj.bias)
        return sum(p[:0].sum() for p in params)
