"""Task query with gating: each task's tokens query the interacted tokens, then a shared gated MLP.

G_t = F_t + LN(Linear_t(Attn_t(F_t, S'', S''))); out_t = GatedMlp(G_t) (one GatedMlp for all tasks).

Attention modes (`DeGMixConfig.query_attention`):
- ``"pixel"``: the task-t token at a pixel attends over the T interacted tokens at that pixel (softmax). This is
  what the code behind the published numbers (DeMTG under torch<=1.8) computed with one image per GPU. That is one
  attention sequence per pixel (B*h*w); `MultiHeadAttention` hands them to SDPA in chunks CUDA can launch.
- ``"global"``: softmax cross-attention from the N task-t tokens to all T*N interacted tokens of the image.
- ``"linear"``: the official DeGMix ViT head's softmax-free attention to all T*N tokens (`SoftmaxFreeAttention`,
  models/linear_attention.py; its own parameters: LayerNorm-ed q/k/v, bias-free projections).
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .gating import GatedMlp
from .linear_attention import SoftmaxFreeAttention

QUERY_MODES = ("pixel", "global", "linear")


class TaskQuery(nn.Module):
    """One task's query attention + Linear + LayerNorm residual."""

    def __init__(self, dim: int, num_heads: int = 2, mode: str = "pixel"):
        super().__init__()
        if mode not in QUERY_MODES:
            raise ValueError(f"unknown task query mode {mode!r}; choose one of {QUERY_MODES}")
        self.mode = mode
        self.attn = SoftmaxFreeAttention(dim, num_heads) if mode == "linear" else MultiHeadAttention(dim, num_heads)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, query: Tensor, interacted: Tensor) -> Tensor:
        """query: [B, N, d] tokens of this task; interacted: [B, T, N, d] -> [B, N, d]."""
        b, t, n, d = interacted.shape
        if self.mode == "pixel":
            kv = interacted.permute(0, 2, 1, 3).reshape(b * n, t, d)
            attended = self.attn(query.reshape(b * n, 1, d), kv, kv).view(b, n, d)
        else:
            kv = interacted.reshape(b, t * n, d)
            attended = self.attn(query, kv, kv)
        return query + self.norm(self.proj(attended))


class TaskQueryBlock(nn.Module):
    """Per-task queries followed by the gated MLP shared by all tasks."""

    def __init__(self, tasks: list[str], dim: int, num_heads: int = 2, mode: str = "pixel", gate_hidden: int = 512):
        super().__init__()
        self.queries = nn.ModuleDict({t: TaskQuery(dim, num_heads, mode) for t in tasks})
        self.gated_mlp = GatedMlp(dim, gate_hidden)

    def forward(self, task_tokens: Tensor, interacted: Tensor) -> list[Tensor]:
        """task_tokens, interacted: [B, T, N, d] -> list of T tensors [B, N, d] (order of `tasks`)."""
        return [
            self.gated_mlp(q(task_tokens[:, i], interacted)) for i, q in enumerate(self.queries.values())
        ]
