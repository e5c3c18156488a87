"""The official DeGMix ViT head's task-query attention (`AnyAttention`, DeGMix 36da078 src/model/heads/utils_heads.py
l.102-143, used by demt_vit_head.py l.47, l.68): softmax-free multi-head attention.

q, k, v are each LayerNorm-ed, projected without bias, split into heads; out = proj(scale * (q k^T) v) with
scale = head_dim^-0.5 and NO softmax (it is commented out in the official code, l.137). Without the softmax the
product is associative, so we compute q (k^T v): the same numbers in O(N d^2) instead of O(N * T*N) memory
(the official order needs a [N, T*N] matrix per head: 15k x 60k at 1/4 of 425x560, 4 tasks).
Parameters: 3 LayerNorms (2d each), 3 bias-free d x d projections, out projection d x d + d = 4d^2 + 7d.
The official code casts v to float32 (`v.float()`); a no-op in its float32 training, so not repeated here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SoftmaxFreeAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 2):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"head width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """query [B, Nq, d], key/value [B, Nk, d] -> [B, Nq, d]; images never mixed."""
        b, nq, d = query.shape
        g = self.num_heads
        q = self.q_proj(self.norm_q(query)).view(b, nq, g, d // g)
        k = self.k_proj(self.norm_k(key)).view(b, key.shape[1], g, d // g)
        v = self.v_proj(self.norm_v(value)).view(b, value.shape[1], g, d // g)
        kv = torch.einsum("bkgc,bkge->bgce", k, v)  # k^T v per head
        out = torch.einsum("bqgc,bgce->bqge", q, kv) * self.scale
        return self.out_proj(out.reshape(b, nq, d))
