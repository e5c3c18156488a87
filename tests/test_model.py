"""The DeGMix model: shapes, gradients, batch independence, frozen backbone, exact parameter counts."""

from __future__ import annotations

import pytest
import torch

from degmix_tuning import DeGMixConfig, ModelConfig, count_parameters, create_model, get_task
from degmix_tuning.backbones import state_fingerprint

TASK_SETS = [
    ("nyud", ("semseg", "depth")),
    ("nyud", ("semseg", "depth", "normals", "edge")),
    ("pascal", ("semseg", "human_parts", "sal", "normals")),
    ("pascal", ("semseg", "human_parts", "sal", "normals", "edge")),
    ("pascal", ("sal",)),
]


def _tiny(dataset, tasks, **head):
    return create_model(ModelConfig(backbone="tiny_swin", dataset=dataset, tasks=tasks, head=DeGMixConfig(dim=16, **head)))


@pytest.mark.parametrize("dataset,tasks", TASK_SETS)
@pytest.mark.parametrize("size", [(64, 96), (50, 70), (37, 41)])
def test_output_shapes_every_task_set(dataset, tasks, size):
    model = _tiny(dataset, tasks).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    expected = {"semseg": 40 if dataset == "nyud" else 21, "depth": 1, "normals": 3, "edge": 1, "human_parts": 7, "sal": 2}
    assert list(out) == list(tasks)
    for t in tasks:
        assert tuple(out[t].shape) == (2, expected[t], *size)
        assert torch.isfinite(out[t]).all()


@pytest.mark.parametrize("interaction", ["global", "pixel", "official"])
@pytest.mark.parametrize("query", ["pixel", "global"])
def test_gradients_reach_every_trainable_param_and_no_frozen_one(interaction, query):
    model = _tiny("nyud", ("semseg", "depth", "normals", "edge"), interaction=interaction, query_attention=query)
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(list(trainable.values()), lr=0.1)
    x = torch.randn(2, 3, 48, 64)
    # step 1 opens the zero-initialised gate weight (its LayerNorm gets exactly zero gradient at init), step 2 checks
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        loss = sum(o.float().pow(2).mean() for o in out.values())
        loss.backward()
        opt.step()
    assert trainable and all(n.startswith("head.") for n in trainable)
    assert [n for n, p in trainable.items() if p.grad is None] == []
    # the official interaction (one image per GPU) is out_proj(v_proj(S)): as in the official code, its q/k
    # projections get exact-zero gradients (not None)
    zero_grad = [n for n, p in trainable.items() if not p.grad.any()]
    expected_zero = (
        [f"head.task_interaction.attn.{m}_proj.{w}" for m in "qk" for w in ("weight", "bias")]
        if interaction == "official" else []
    )
    assert zero_grad == expected_zero, f"zero gradient for {zero_grad}"
    assert all(p.grad is None for p in model.backbone.parameters())


def test_official_mode_weight_decay_shrinks_the_unused_qk_projections_exactly():
    """Zero gradients, so two SGD steps (momentum 0.9, wd 5e-4, the official recipe) only apply the decay."""
    model = _tiny("nyud", ("semseg", "depth"), interaction="official").double().train()
    attn = model.head.task_interaction.attn
    qk = {n: p for n, p in attn.named_parameters() if n[0] in "qk"}
    before = {n: p.detach().clone() for n, p in qk.items()}
    lr, momentum, wd = 0.1, 0.9, 5e-4
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum, weight_decay=wd)
    x = torch.randn(1, 3, 32, 48, dtype=torch.float64)
    for _ in range(2):
        opt.zero_grad()
        sum(o.pow(2).mean() for o in model(x).values()).backward()
        assert all(p.grad is not None and not p.grad.any() for p in qk.values())
        opt.step()
    # with g = 0: step 1 w1 = a w0, a = 1 - lr wd; step 2 buf = wd w0 (momentum + a), w2 = w1 - lr buf
    a = 1 - lr * wd
    factor = a - lr * wd * (momentum + a)
    for n, p in qk.items():
        torch.testing.assert_close(p.detach(), before[n] * factor, rtol=1e-14, atol=0)
        assert not torch.equal(p.detach(), before[n])


@pytest.mark.parametrize("interaction", ["global", "pixel", "official"])
@pytest.mark.parametrize("query", ["pixel", "global"])
def test_one_image_output_does_not_depend_on_the_batch(interaction, query):
    """The official head attends across the batch axis and broadcasts sample 0; ours must not."""
    model = _tiny("pascal", ("semseg", "sal", "normals"), interaction=interaction, query_attention=query).eval()
    x = torch.randn(4, 3, 40, 56)
    with torch.no_grad():
        batched = model(x)
        for i in range(4):
            alone = model(x[i : i + 1])
            for t in batched:
                torch.testing.assert_close(batched[t][i : i + 1], alone[t], rtol=1e-4, atol=1e-5)
        # and changing another image of the batch changes nothing for image 0
        x2 = x.clone()
        x2[1:] = torch.randn_like(x2[1:])
        other = model(x2)
    for t in batched:
        torch.testing.assert_close(batched[t][0], other[t][0], rtol=1e-4, atol=1e-5)


def test_interaction_modes_differ_but_share_parameters():
    torch.manual_seed(1)
    a = _tiny("nyud", ("semseg", "depth"), interaction="global").eval()
    b = _tiny("nyud", ("semseg", "depth"), interaction="official").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert not torch.allclose(a(x)["semseg"], b(x)["semseg"])


def test_frozen_backbone_is_bit_identical_after_training_steps():
    model = _tiny("nyud", ("semseg", "depth"))
    before = state_fingerprint(model.backbone)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    assert not model.backbone.training  # model.train() keeps the frozen backbone in eval mode
    for _ in range(3):
        x = torch.randn(2, 3, 32, 48)
        out = model(x)
        loss = get_task("semseg").loss(out["semseg"], torch.randint(0, 40, (2, 32, 48))) + out["depth"].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = state_fingerprint(model.backbone)
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen backbone weights/buffers changed"
    changed = [k for k, v in model.head.state_dict().items() if not torch.equal(v, head_before[k])]
    assert len(changed) > 10  # the head did train


def test_frozen_backbone_records_no_autograd_graph():
    model = _tiny("nyud", ("semseg",))
    feats = model.extract_features(torch.randn(1, 3, 32, 32))
    assert all(not f.requires_grad and f.grad_fn is None for f in feats)


def test_unfrozen_backbone_trains():
    model = create_model(ModelConfig(backbone="tiny_swin", tasks=("depth",), head=DeGMixConfig(dim=16),
                                     freeze_backbone=False))
    model.train()
    assert model.backbone.training
    model(torch.randn(2, 3, 32, 32))["depth"].mean().backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(KeyError, match="semseg"):
        ModelConfig(backbone="tiny_swin", tasks=("semseg_",))
    with pytest.raises(ValueError, match="human_parts"):
        ModelConfig(backbone="tiny_swin", dataset="nyud", tasks=("human_parts",))
    with pytest.raises(ValueError, match="interaction"):
        DeGMixConfig(interaction="batch")
    model = _tiny("nyud", ("semseg",))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(3, 32, 32))


def test_head_parameter_breakdown_by_hand():
    """d=16, 2 tasks, tiny_swin (C_in = 16+32+64+128 = 240, bottleneck 30)."""
    model = _tiny("nyud", ("semseg", "depth"))
    rep = count_parameters(model)
    d, c_in, mid = 16, 240, 30
    fusion = c_in * d + d + 2 * d
    block = (d * d + d) + 2 * d + (d * d + d) + (d * 18 * 9 + 18) + (2 * d * 9 * 9 + 2 * d) + 2 * d
    encoder = fusion + 2 * 2 * block
    mha = 4 * (d * d + d)
    gmlp = 2 * d + (d * 512 + 512) + 2 * 256 + (256 * 256 + 256) + (256 * d + d)
    decoder = mha + (d * d + d + 2 * d) + 2 * (mha + d * d + d + 2 * d) + gmlp
    heads = 2 * (d * mid * 9 + 2 * mid) + (mid * 40 + 40) + (mid * 1 + 1)
    assert rep.groups["encoder"].total == encoder
    assert rep.groups["decoder"].total == decoder
    assert rep.groups["heads"].total == heads
    assert rep.trainable == encoder + decoder + heads
    assert rep.groups["backbone"].trainable == 0


# Official counts (degmix_official.md §3.1, §3.3). Building Swin-L on CPU with random weights takes a few seconds.
@pytest.mark.parametrize(
    "preset,total,trainable",
    [
        ("degmix_swin_t_nyud", 33_198_779, 33_198_779),
        ("degmix_swin_s_nyud", 54_516_683, 54_516_683),
        ("degmix_swin_l_nyud", 202_916_345, 202_916_345),
        ("degmix_tuning_swin_t_nyud", None, 1_322_645),
        ("degmix_tuning_swin_t_pascal", None, 2_203_397),
        ("degmix_tuning_swin_l_pascal", None, 3_224_537),
    ],
)
def test_preset_parameter_counts_match_official(preset, total, trainable):
    rep = count_parameters(create_model(preset))
    if total is not None:
        assert rep.total == total
    assert rep.trainable == trainable


def test_tuning_preset_module_breakdown_matches_official_nyud():
    """degmix_official.md §3.3: bottleneck 415,440; logits 7,421; mixers 301,128; linear1 184,704; ..."""
    model = create_model("degmix_tuning_swin_t_nyud")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    h = model.head
    assert sum(n(x.bottleneck) for x in h.heads.values()) == 415_440
    assert sum(n(x.logits) for x in h.heads.values()) == 7_421
    assert n(h.mixers) == 301_128
    assert n(h.fusion) == 184_704
    assert n(h.task_interaction.attn) == 66_048
    assert n(h.task_interaction.proj) + n(h.task_interaction.norm) == 16_768
    assert sum(n(q.attn) for q in h.task_query.queries.values()) == 132_096
    assert sum(n(q.proj) + n(q.norm) for q in h.task_query.queries.values()) == 33_536
    assert n(h.task_query.gated_mlp) == 165_504
