"""SDPA never sees more sequences than CUDA's grid allows, and chunking does not change the result.

Per-pixel attention runs one sequence per pixel (B*h*w of them); CUDA's fused SDPA kernels fail once
sequences * heads passes 65,535. On CPU the limit is emulated by a spy on `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from degmix_tuning import DeGMixConfig
from degmix_tuning.models.attention import CUDA_GRID_LIMIT, MultiHeadAttention
from degmix_tuning.models.degmix import DeGMixHead

TASKS = {"semseg": 5, "depth": 1, "normals": 3}


class SdpaSpy:
    """Wraps SDPA: records every call's number of sequences; fails like CUDA when sequences * heads > `limit`."""

    def __init__(self, limit: int | None = None):
        self.real, self.limit, self.sequences = F.scaled_dot_product_attention, limit, []

    def __call__(self, q, k, v, *args, **kwargs):
        self.sequences.append(q.shape[0])
        if self.limit is not None and q.shape[0] * q.shape[1] > self.limit:
            raise RuntimeError(f"CUDA error: invalid configuration argument ({q.shape[0]} sequences x "
                               f"{q.shape[1]} heads)")
        return self.real(q, k, v, *args, **kwargs)


def _head(interaction: str, query: str, dim: int = 8, **cfg) -> DeGMixHead:
    head = DeGMixHead([4, 8], TASKS, DeGMixConfig(dim=dim, gate_hidden=16, interaction=interaction,
                                                  query_attention=query, **cfg))
    with torch.no_grad():
        for name, p in head.named_parameters():  # opens the zero-initialised gate and makes the softmaxes peaked
            p.add_(0.05 * torch.randn_like(p))
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(4.0)
    return head


def _attentions(head: DeGMixHead) -> list[MultiHeadAttention]:
    return [m for m in head.modules() if isinstance(m, MultiHeadAttention)]


def _forward_and_grads(head: DeGMixHead, feats: list[torch.Tensor], weights: dict[str, torch.Tensor]):
    out = head(feats, (12, 14))
    loss = sum((out[t] * w).sum() for t, w in weights.items())
    inputs = list(head.parameters()) + feats
    return out, torch.autograd.grad(loss, inputs, allow_unused=True)


@pytest.mark.parametrize("interaction", ["global", "pixel", "official"])
@pytest.mark.parametrize("query", ["pixel", "global"])
def test_chunked_attention_equals_the_unchunked_one(interaction, query, monkeypatch):
    """Chunks of 2 sequences (the last one ragged): same outputs and gradients in float64, and SDPA really chunked."""
    head = _head(interaction, query).double().train()
    feats = [torch.randn(3, 4, 6, 7, dtype=torch.float64, requires_grad=True),
             torch.randn(3, 8, 3, 4, dtype=torch.float64, requires_grad=True)]
    weights = {t: torch.randn(3, n, 12, 14, dtype=torch.float64) for t, n in TASKS.items()}
    state = {k: v.clone() for k, v in head.state_dict().items()}  # BN running stats move in train mode
    spy = SdpaSpy()
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    want_out, want_grads = _forward_and_grads(head, feats, weights)
    unchunked = list(spy.sequences)
    head.load_state_dict(state)
    for attn in _attentions(head):
        attn.max_sequences_per_call = 2
    spy.sequences.clear()
    got_out, got_grads = _forward_and_grads(head, feats, weights)
    for t in want_out:
        torch.testing.assert_close(got_out[t], want_out[t], rtol=0, atol=1e-12)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert (g is None) == (w is None)
        if w is not None:
            torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    assert max(spy.sequences) == 2 and sum(spy.sequences) == sum(unchunked)  # every sequence, two at a time


@pytest.mark.parametrize("interaction", ["pixel", "official"])
def test_per_pixel_attention_stays_within_the_cuda_grid_limit(interaction, monkeypatch):
    """Batch 2 at 130x130 tokens: 33,800 per-pixel sequences x 2 heads > 65,535, as at 425x560 with batch 5."""
    head = _head(interaction, "pixel", dim=4, deform_impl="grid_sample").train()
    feats = [torch.randn(2, 4, 130, 130), torch.randn(2, 8, 65, 65)]
    spy = SdpaSpy(limit=CUDA_GRID_LIMIT)
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    out = head(feats, (130, 130))
    sum(o.mean() for o in out.values()).backward()
    assert sum(spy.sequences) == (len(TASKS) + (interaction == "pixel")) * 2 * 130 * 130
    assert all(s * 2 <= CUDA_GRID_LIMIT for s in spy.sequences)


@pytest.mark.gpu
@pytest.mark.parametrize("interaction", ["pixel", "global"])
def test_head_runs_at_425x560_batch_8_on_cuda(interaction):
    """The tuning head (d=128, NYUD tasks) forward + backward on Swin-T-shaped maps of 425x560 images, batch 8."""
    tasks = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
    head = DeGMixHead([96, 192, 384, 768], tasks, DeGMixConfig(dim=128, interaction=interaction)).cuda().train()
    sizes = [(107, 140), (54, 70), (27, 35), (14, 18)]  # stride 4, 8, 16, 32 of 425x560 (padded up)
    feats = [torch.randn(8, c, h, w, device="cuda") for c, (h, w) in zip([96, 192, 384, 768], sizes)]
    out = head(feats, (425, 560))
    assert all(o.shape == (8, n, 425, 560) for o, n in zip(out.values(), tasks.values()))
    sum(o.float().mean() for o in out.values()).backward()
    torch.cuda.synchronize()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
