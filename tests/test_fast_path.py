"""Fast-path switches change how, never what: channels_last, in-place head compile, inference-mode features,
autocast contexts; plus the FLOP counter used by the benchmarks."""

from __future__ import annotations

import pytest
import torch

from degmix_tuning.training.config import TrainConfig
from degmix_tuning.training.fast_path import (
    apply_fast_path, autocast, channels_last_images, compile_head, frozen_features_inference_mode, prepare_images,
    to_channels_last,
)


def test_channels_last_keeps_outputs_and_names(tiny_model):
    x = torch.randn(2, 3, 32, 48)
    tiny_model.eval()
    with torch.no_grad():
        ref = tiny_model(x)
    keys = list(tiny_model.state_dict())
    to_channels_last(tiny_model)
    conv = tiny_model.head.heads["semseg"].bottleneck[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert list(tiny_model.state_dict()) == keys
    xl = channels_last_images(x)
    assert xl.is_contiguous(memory_format=torch.channels_last) and torch.equal(xl, x)
    with torch.no_grad():
        out = tiny_model(xl)
    for t in ref:
        torch.testing.assert_close(out[t], ref[t], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="B, C, H, W"):
        channels_last_images(x[0])


def test_compile_head_keeps_parameter_names(tiny_model):
    keys = list(tiny_model.state_dict())
    n_params = sum(p.numel() for p in tiny_model.parameters())
    compile_head(tiny_model)  # lazy: nothing compiles until the first call
    assert list(tiny_model.state_dict()) == keys
    assert sum(p.numel() for p in tiny_model.parameters()) == n_params
    assert tiny_model.head._compiled_call_impl is not None
    with pytest.raises(TypeError, match="MultiTaskModel"):
        compile_head(torch.nn.Linear(2, 2))


def test_inference_mode_features_equal_no_grad_ones_and_train_the_head(tiny_model):
    tiny_model.train()
    x = torch.randn(2, 3, 32, 48)
    ref = tiny_model.extract_features(x)
    feats = frozen_features_inference_mode(tiny_model, x)
    assert all(torch.equal(a, b) and not a.is_inference() for a, b in zip(feats, ref))
    out = tiny_model(x, features=feats)
    sum(o.mean() for o in out.values()).backward()
    grads = [p.grad for p in tiny_model.head.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert all(p.grad is None for p in tiny_model.backbone.parameters())
    tiny_model.backbone.stage_norms[0].weight.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen backbone"):
        frozen_features_inference_mode(tiny_model, x)


def test_autocast_contexts():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("no"):
        assert (a @ b).dtype == torch.float32
    with autocast("bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast("fp8")


def test_apply_fast_path_follows_the_train_config(tiny_model):
    cfg = TrainConfig(channels_last=True)
    apply_fast_path(tiny_model, cfg)
    assert tiny_model.head.heads["depth"].bottleneck[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 16, 16)
    assert prepare_images(x, cfg).is_contiguous(memory_format=torch.channels_last)
    assert prepare_images(x, TrainConfig()) is x
    with pytest.raises(ValueError, match="feature_cache"):
        TrainConfig(feature_cache="gpu")


def test_flop_counter_parts_add_up_and_count_deform_analytically(tiny_model):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from flops import flops_per_part

    h, w = 32, 48
    parts = flops_per_part(tiny_model, (h, w))
    assert set(parts) >= {"backbone", "encoder", "decoder", "heads", "deform_1x1"}
    # deform 1x1: per task, per mixer block: 2 * (h/4)(w/4) * d * d FLOPs (d = 32, 2 tasks, depth 2)
    assert parts["deform_1x1"] == 2 * 2 * 2 * (h // 4) * (w // 4) * 32 * 32
    # fusion Linear alone: 2 * tokens * sum(C_in) * d, inside the encoder count
    assert parts["encoder"] > 2 * (h // 4) * (w // 4) * (16 + 32 + 64 + 128) * 32
    # the heads' 1x1 logits + 3x3 bottleneck: 2 * tokens * (9 * d * mid + mid * C) summed over tasks (mid = 240 // 8)
    mid = (16 + 32 + 64 + 128) // 8
    expected_heads = sum(2 * (h // 4) * (w // 4) * (9 * 32 * mid + mid * c) for c in (40, 1))
    assert parts["heads"] == expected_heads
