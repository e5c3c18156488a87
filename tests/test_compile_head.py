"""`train.compile_head`: the compiled head computes what the eager head does, in train and eval mode, with and
without grad, and a tiny run trains, evaluates and saves with it."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from degmix_tuning import DeGMixConfig
from degmix_tuning.models.attention import MultiHeadAttention
from degmix_tuning.models.degmix import DeGMixHead
from degmix_tuning.models.tokens import maps_to_tokens

IN_CHANNELS = [8, 16]
TASKS = {"semseg": 5, "depth": 1}
OUT_SIZE = (24, 28)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Compiled code is cached per code object: every test starts from an empty cache."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _head(**cfg) -> DeGMixHead:
    head = DeGMixHead(IN_CHANNELS, TASKS, DeGMixConfig(dim=16, gate_hidden=32, **cfg))
    with torch.no_grad():
        for p in head.parameters():  # opens the zero-initialised gate and offset proposal
            p.add_(0.05 * torch.randn_like(p))
    return head


def _feats(batch: int = 2) -> list[torch.Tensor]:
    return [torch.randn(batch, 8, 6, 7), torch.randn(batch, 16, 3, 4)]


@pytest.mark.parametrize("tasks", [2, 3])
@pytest.mark.parametrize("grad", [True, False])
def test_maps_to_tokens_keeps_every_task_when_compiled(tasks, grad):
    """Dynamo (torch 2.14) traced the old varargs autograd.Function with 2 maps and no grad as 1 map."""
    maps = [torch.randn(2, 3, 4, 5, requires_grad=grad) for _ in range(tasks)]
    compiled = torch.compile(lambda *m: maps_to_tokens(list(m)), backend="eager", fullgraph=True)
    with torch.set_grad_enabled(grad):
        got = compiled(*maps)
    torch.testing.assert_close(got, maps_to_tokens(maps), rtol=0, atol=0)


@pytest.mark.parametrize(("interaction", "query", "grad"), [
    ("global", "pixel", True), ("global", "pixel", False), ("pixel", "pixel", False), ("official", "global", False),
])
def test_head_traces_as_one_graph_with_the_torchvision_deform_op(interaction, query, grad):
    """The head's own code has no graph break (torchvision's op is the "auto" choice on GPU), chunked SDPA included;
    train mode with grad (a training step), eval mode without (an evaluation)."""
    head = _head(deform_impl="torchvision", interaction=interaction, query_attention=query).train(grad)
    for attn in head.modules():
        if isinstance(attn, MultiHeadAttention):
            attn.max_sequences_per_call = 5  # per-pixel paths: 84 sequences in 17 SDPA calls
    with torch.set_grad_enabled(grad):
        explained = torch._dynamo.explain(head)(_feats(), OUT_SIZE)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]


def test_head_breaks_only_in_the_grid_sample_deform_op():
    """The CPU default ("auto" -> grid_sample) breaks only where `_normalised_grid` branches on data (if at all)."""
    head = _head().train()
    explained = torch._dynamo.explain(head)(_feats(), OUT_SIZE)
    places = {(b.user_stack[-1].filename.rsplit("/", 1)[-1], b.user_stack[-1].name) for b in explained.break_reasons}
    assert places <= {("deform_ops.py", "_normalised_grid")}


def _run(head: nn.Module, feats: list[torch.Tensor], weights: dict[str, torch.Tensor], grad: bool):
    with torch.set_grad_enabled(grad):
        out = head(feats, OUT_SIZE)
    if not grad:
        return out, []
    params = list(head.parameters())
    loss = sum((out[t] * w).sum() for t, w in weights.items())
    return out, list(torch.autograd.grad(loss, params + feats))


@pytest.mark.slow
def test_compiled_head_equals_the_eager_head_in_every_mode():
    """Inductor on CPU, the default deform path, float64 (so rounding stays far below the tolerance): outputs,
    gradients (parameters and input maps) and BN statistics match the eager head."""
    eager = _head().double()
    compiled = copy.deepcopy(eager)
    compiled.compile()
    for training in (True, False):
        for grad in (True, False):
            eager.train(training)
            compiled.train(training)
            feats = [f.double().requires_grad_(grad) for f in _feats()]
            weights = {t: torch.randn(2, n, *OUT_SIZE, dtype=torch.float64) for t, n in TASKS.items()}
            want, want_grads = _run(eager, feats, weights, grad)
            got, got_grads = _run(compiled, feats, weights, grad)
            mode = f"train={training} grad={grad}"
            for t in TASKS:
                torch.testing.assert_close(got[t], want[t], rtol=1e-10, atol=1e-12, msg=lambda m: f"{mode}: {m}")
                assert got[t].requires_grad == want[t].requires_grad == grad
            for g, w in zip(got_grads, want_grads, strict=True):  # k_proj.bias: exactly 0 up to rounding
                torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=lambda m: f"{mode}: {m}")
            for (name, b), w in zip(compiled.named_buffers(), eager.buffers(), strict=True):
                torch.testing.assert_close(b, w, rtol=1e-12, atol=1e-14, msg=lambda m: f"{mode} {name}: {m}")


@pytest.mark.slow
def test_training_with_a_compiled_head_evaluates_and_saves(tmp_path, synthetic_cache):
    """train.compile_head=true: evaluation at start (no_grad, eval mode), training steps, final evaluation, adapter."""
    from test_training import tiny_config

    from degmix_tuning.training.checkpoint import load_tuned
    from degmix_tuning.training.engine import train

    run = train(tiny_config(tmp_path / "compiled", compile_head="true", max_steps=2), show_progress=False)
    lines = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 2]
    assert run.adapter_path.exists()
    assert set(run.final_metrics) == set(TASKS) and run.final_metrics != run.initial_metrics
    load_tuned(run.adapter_path)  # saved under the eager names (head.*): loads into an uncompiled model
