"""Task interaction: the T task token sets of one image attend to each other, then Linear + LayerNorm.

Modes (`DeGMixConfig.interaction`):
- ``"global"``: softmax self-attention over all T*N tokens of one image (the paper's description).
- ``"pixel"``: self-attention among the T task tokens at each pixel (cheap; linear in N; one sequence per pixel,
  chunked for CUDA by `MultiHeadAttention`).
- ``"official"``: what the official code computes with one image per GPU (`nn.MultiheadAttention` fed
  batch-first tensors attends over a length-1 batch axis): out_proj(v_proj(S)), no token mixing. The q/k
  projections do not affect the output; as in the official code (a softmax over one key), they get exact-zero
  gradients, not None: SGD weight decay still shrinks them, they stay in the parameter count, and DDP needs no
  `find_unused_parameters` (`MultiHeadAttention.value_only`).
All three have the same parameters and none mixes images of a batch.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import MultiHeadAttention

INTERACTION_MODES = ("global", "pixel", "official")


class TaskInteractionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int = 2, mode: str = "global"):
        super().__init__()
        if mode not in INTERACTION_MODES:
            raise ValueError(f"unknown task interaction mode {mode!r}; choose one of {INTERACTION_MODES}")
        self.mode = mode
        self.attn = MultiHeadAttention(dim, num_heads)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: [B, T, N, d] (task-major) -> interacted tokens S'' of the same shape."""
        b, t, n, d = tokens.shape
        if self.mode == "global":
            s = tokens.reshape(b, t * n, d)
            out = self.attn(s, s, s).view(b, t, n, d)
        elif self.mode == "pixel":
            s = tokens.permute(0, 2, 1, 3).reshape(b * n, t, d)
            out = self.attn(s, s, s).view(b, n, t, d).permute(0, 2, 1, 3)
        else:
            out = self.attn.value_only(tokens)
        return self.norm(self.proj(out))
