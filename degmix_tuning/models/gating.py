"""The gated MLP (gMLP-style) shared by all tasks after the task query.

Y = LN(G); Z = GELU(Linear(d, d_ff)(Y)); split Z into R, Q (d_ff/2 each);
gate = Linear(LN(Q)) initialised W=0, b=1 (so the gate starts open); out = G + Linear(d_ff/2, d)(R * gate).
The official gate mixes channels per token (a Conv1d over the channel axis), not tokens.
"""

from __future__ import annotations

from torch import Tensor, nn


class GatedMlp(nn.Module):
    def __init__(self, dim: int, hidden: int = 512):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"gated MLP hidden width must be even, got {hidden}")
        half = hidden // 2
        self.norm = nn.LayerNorm(dim)
        self.fc_in = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.gate_norm = nn.LayerNorm(half)
        self.gate = nn.Linear(half, half)
        self.fc_out = nn.Linear(half, dim)
        nn.init.zeros_(self.gate.weight)
        nn.init.ones_(self.gate.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., d] -> [..., d] (residual)."""
        r, q = self.act(self.fc_in(self.norm(x))).chunk(2, dim=-1)
        return x + self.fc_out(r * self.gate(self.gate_norm(q)))
