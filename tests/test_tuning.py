"""Tuning methods: exact trainable sets (hand-computed on tiny_swin), frozen base weights, save/load, task streams,
DiTASK's warp, other backbones, and the Swin-T counts the papers' code reproduces."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load, save
from torch import nn

from degmix_tuning.models import create_model
from degmix_tuning.models.degmix import DeGMixConfig, DeGMixHead
from degmix_tuning.models.light_head import LightHead
from degmix_tuning.tuning import (
    TUNING_METHODS, TuningConfig, apply_tuning, get_tuning_config_cls, list_tuning_methods, load_trainable_state,
    register_tuning_method, trainable_state,
)
from degmix_tuning.tuning.adapter import Adapted
from degmix_tuning.tuning.ditask import SpectralWarpLayer, monotone_index_warp, warp_spectrum
from degmix_tuning.tuning.mtlora import MTLoRALayer
from degmix_tuning.tuning.streams import TaskStreamBlock
from degmix_tuning.tuning.structure import TunerLayer

# tiny_swin: one block per stage, channels C = 16/32/64/128, window 4 (49-entry bias tables), 1 head.
# Linear shapes per block: qkv C->3C, proj C->C, fc1 C->4C, fc2 4C->C  => sum(in + out) = 16 C per block.
C = (16, 32, 64, 128)
SUM_C = sum(C)
T = 2  # the tiny preset's tasks: semseg (40), depth (1)
LAYERS = lambda c: [(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)]  # noqa: E731  (in, out) of qkv, proj, fc1, fc2
# MTLoRA/DiTASK "extras" on tiny_swin, from the module list:
PATCH_EMBED = 16 * 3 * 4 * 4 + 16 + 2 * 16  # conv + its bias + its LayerNorm
BLOCK_NORMS = sum(2 * 2 * c for c in C)  # norm1 + norm2 (weight, bias)
MERGE_NORMS = sum(2 * 4 * c for c in C[:3])  # PatchMerging LayerNorm(4C) of stages 2..4
REL_POS = 4 * 49  # one (2*4-1)^2 x 1-head table per block
REDUCTIONS = sum(4 * c * 2 * c for c in C[:3])  # PatchMerging Linear(4C -> 2C, no bias)
EXTRAS = PATCH_EMBED + BLOCK_NORMS + MERGE_NORMS + REL_POS + REDUCTIONS  # = 45,876
# light head (models/light_head.py) on 16/32/64/128: per task sum C_i w_i + (270*1080 + 1080) + 2*1080 + 1081 n
LIGHT_HEAD = T * (sum(c * w for c, w in zip(C, (18, 36, 72, 144))) + 270 * 1080 + 1080 + 2 * 1080) + 1081 * (40 + 1)


def _factor(n: int) -> tuple[int, int]:
    """peft LoKr's factorization(n, -1): the divisor pair closest to sqrt(n), smaller first."""
    m = int(n**0.5)
    while n % m:
        m -= 1
    return m, n // m


def _lokr(fan_in: int, fan_out: int, r: int = 8) -> int:
    (out_l, out_k), (in_m, in_n) = _factor(fan_out), _factor(fan_in)
    w1 = out_l * in_m
    w2 = out_k * in_n if r >= max(out_k, in_n) / 2 else r * (out_k + in_n)
    return w1 + w2


HAND_BACKBONE = {  # trainable backbone scalars per method, default configs, 2 tasks
    "degmix": 0,
    "decoder_only": 0,
    "lora": sum(8 * (i + o) for c in C for i, o in LAYERS(c)),  # r (in + out)
    "dora": sum(8 * (i + o) + o for c in C for i, o in LAYERS(c)),  # + one magnitude per output
    "loha": sum(2 * 8 * (i + o) for c in C for i, o in LAYERS(c)),
    "lokr": sum(_lokr(i, o) for c in C for i, o in LAYERS(c)),
    "ia3": sum(3 * c + c + 4 * c + 4 * c for c in C),  # outputs of qkv/proj/fc1, input of fc2 (feedforward)
    "adapter": sum(2 * c * (c // 4) + c // 4 + c for c in C),  # down + up (with biases), reduction 4
    "mtlora": 16 * 16 * SUM_C + 12 * 4 * T * SUM_C + EXTRAS,  # every block is its stage's last block
    "ditask": 63 * 4 * len(C) + 3 * 3 * len(C) * T + EXTRAS,
}
LIGHT = {"decoder_only", "mtlora", "ditask"}


@pytest.fixture(scope="module")
def pristine():
    torch.manual_seed(0)
    return create_model("degmix_tuning_tiny_nyud")


def _tuned(pristine, method, **kw):
    model = copy.deepcopy(pristine)
    apply_tuning(model, method, **kw)
    return model


def _count(params) -> int:
    return sum(p.numel() for p in params if p.requires_grad)


def test_registry_lists_every_method_and_rejects_bad_registrations():
    assert list_tuning_methods() == sorted(
        ["adapter", "bitfit", "decoder_only", "degmix", "ditask", "dora", "full", "ia3", "loha", "lokr", "lora",
         "mtlora"])
    with pytest.raises(KeyError, match="mtlora"):
        TUNING_METHODS.get("mtlorra")
    with pytest.raises(KeyError, match="already registered"):
        register_tuning_method("lora", get_tuning_config_cls("lora"), lambda m, c: None)
    with pytest.raises(ValueError, match="defaults to"):
        register_tuning_method("lora2", get_tuning_config_cls("lora"), lambda m, c: None)
    with pytest.raises(TypeError):
        register_tuning_method("plain", dict, lambda m, c: None)
    assert issubclass(get_tuning_config_cls("ditask"), TuningConfig)


def test_hand_counts_cover_every_registered_method():
    assert set(HAND_BACKBONE) | {"full", "bitfit"} == set(list_tuning_methods())
    assert EXTRAS == 45_876 and LIGHT_HEAD == 682_961


@pytest.mark.parametrize("method", sorted(HAND_BACKBONE))
def test_trainable_backbone_and_head_counts(pristine, method):
    model = _tuned(pristine, method)
    assert _count(model.backbone.parameters()) == HAND_BACKBONE[method]
    head = LIGHT_HEAD if method in LIGHT else _count(pristine.head.parameters())
    assert _count(model.head.parameters()) == head
    assert isinstance(model.head, LightHead if method in LIGHT else DeGMixHead)
    assert model.tuning_config.method == method


def test_bitfit_trains_exactly_the_backbone_biases(pristine):
    model = _tuned(pristine, "bitfit")
    biases = {id(m.bias) for m in model.backbone.modules() if isinstance(getattr(m, "bias", None), nn.Parameter)}
    trainable = {id(p) for p in model.backbone.parameters() if p.requires_grad}
    assert trainable == biases
    # linear biases 9C per block, block norms 2C, merge norms 4C, patch embed 16 + 16, output norms C
    assert _count(model.backbone.parameters()) == 9 * SUM_C + 2 * SUM_C + 4 * sum(C[:3]) + 32 + SUM_C == 3_360


def test_full_trains_everything_and_keeps_backbone_in_train_mode(pristine):
    model = _tuned(pristine, "full")
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert model.backbone.training and not model.backbone_frozen


def test_apply_refuses_a_second_method_and_unknown_fields(pristine):
    model = _tuned(pristine, "lora", r=2)
    assert model.tuning_config.r == 2
    with pytest.raises(ValueError, match="already tuned"):
        apply_tuning(model, "bitfit")
    with pytest.raises(KeyError, match="no field"):
        apply_tuning(copy.deepcopy(pristine), "lora", rank=2)
    with pytest.raises(ValueError, match="head"):
        apply_tuning(copy.deepcopy(pristine), "lora", head="hrnet")


PEFT_LIKE = ["adapter", "lora", "dora", "loha", "lokr", "ia3"]


@pytest.mark.parametrize("method,kwargs", [(m, {}) for m in PEFT_LIKE] + [
    ("mtlora", {"extras": {"stem": False, "norms": False, "position_bias": False, "merging": False}}),
    ("ditask", {"extras": {"stem": False, "norms": False, "position_bias": False, "merging": False}}),
])
def test_optimizer_step_changes_only_adapter_parameters(pristine, method, kwargs):
    model = copy.deepcopy(pristine)
    base = {id(p): p.detach().clone() for p in model.backbone.parameters()}
    apply_tuning(model, method, **kwargs)
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trainable and not any(id(p) in base for p in trainable)  # only new parameters train
    for p in trainable:  # leave the identity init so every adapter parameter gets a gradient
        p.data.add_(0.05 * torch.randn_like(p))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)  # moves any non-zero grad
    model.eval()  # gradients still flow; no drop-path, which can drop a whole block's branch for a tiny batch
    out = model(torch.randn(1, 3, 32, 32))
    sum(o.float().pow(2).mean() for o in out.values()).backward()
    assert all(p.grad is not None for p in trainable)
    before = [p.detach().clone() for p in trainable]
    opt.step()
    for p in model.backbone.parameters():
        if id(p) in base:
            assert torch.equal(p, base[id(p)]), "a frozen backbone weight changed"
    unchanged = {id(p) for a, p in zip(before, trainable) if torch.equal(a, p)}
    # With every head reading task streams the final shared map is unused, so shared updates that only feed it get
    # no gradient, as in the released code: MTLoRA's task fc2 is W h_shared + dW_t h_t (only the shared fc2 update
    # of the last block is dead); DiTASK's task layers read task inputs only (shared proj, fc1, fc2 thetas are dead)
    last = model.backbone.model.layers[-1].blocks[-1]
    dead_layers = {"mtlora": lambda b: [b.mlp.fc2], "ditask": lambda b: [b.attn.proj, b.mlp.fc1, b.mlp.fc2]}
    dead_layers = dead_layers[method](last.block) if method in dead_layers else []
    dead = {id(layer.shared.A) for layer in dead_layers if method == "mtlora"}
    dead |= {id(layer.shared.B) for layer in dead_layers if method == "mtlora"}
    dead |= {id(layer.theta) for layer in dead_layers if method == "ditask"}
    assert unchanged == dead


@pytest.mark.parametrize("method", sorted(list_tuning_methods()))
def test_trainable_state_round_trip_with_non_identity_init(pristine, method):
    x = torch.randn(1, 3, 32, 32)
    source = _tuned(pristine, method)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in source.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    source.eval()
    blob = save({k: v.float() for k, v in trainable_state(source).items()})
    target = _tuned(pristine, method)
    target.eval()
    with torch.no_grad():
        want = source(x)
        before = target(x)
        load_trainable_state(target, load(blob))
        got = target(x)
    assert any(not torch.allclose(before[t], want[t]) for t in want)  # the perturbation is visible
    for t in want:
        torch.testing.assert_close(got[t], want[t], rtol=0, atol=0)
    with pytest.raises(KeyError, match="missing"):
        load_trainable_state(target, {})


@pytest.mark.parametrize("method", ["adapter", "mtlora", "ditask"])
def test_every_wrapper_keeps_its_original_frozen_module_as_the_base_layer(pristine, method):
    model = _tuned(pristine, method)
    wrappers = [m for m in model.modules() if isinstance(m, TunerLayer)]
    originals = dict(pristine.named_modules())
    expected = len(C) if method == "adapter" else sum(len(LAYERS(c)) for c in C)  # one per block / per target
    assert len(wrappers) == expected
    for wrapper in wrappers:
        base = wrapper.get_base_layer()
        assert not isinstance(base, TunerLayer) and not any(p.requires_grad for p in base.parameters())
        name = next(n for n, m in model.named_modules() if m is wrapper)
        original = originals[name.replace(".block.", ".")]  # what it replaced (TaskStreamBlock adds ".block")
        assert type(base) is type(original)
        assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), original.state_dict().values()))
    nested = Adapted(wrappers[0], nn.Identity())  # wrappers of wrappers: still the innermost frozen module
    assert nested.get_base_layer() is wrappers[0].get_base_layer()


@pytest.mark.parametrize("method", ["mtlora", "ditask", "adapter", "lora", "loha", "ia3"])
def test_methods_start_at_the_pretrained_backbone(pristine, method):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = pristine.backbone(x)
        model = _tuned(pristine, method)
        model.eval()
        feats = model.backbone(x)
        per_task = model.head.task_features(feats) if getattr(model.head, "task_features", None) else None
    tol = 1e-5 if method == "ditask" else 0.0  # the SVD round trip
    for a, b in zip(feats, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=tol)
    if per_task is not None:
        assert list(per_task) == ["semseg", "depth"]
        for maps in per_task.values():
            for a, b in zip(maps, feats):
                assert torch.equal(a, b)  # every task stream equals the shared one at init


def test_mtlora_task_stream_is_shared_base_plus_task_delta_on_task_input(pristine):
    """Only task 'depth' gets a non-zero fc2 update in the last block of stage 0: its stream must be
    shared + 4 * B A h, with h the (shared) fc2 input, and 'semseg' must equal the shared stream."""
    model = _tuned(pristine, "mtlora", extras={"stem": False, "norms": False, "position_bias": False,
                                               "merging": False})
    model.eval()
    block = model.backbone.model.layers[0].blocks[-1]
    assert isinstance(block, TaskStreamBlock)
    fc2 = block.block.mlp.fc2
    assert isinstance(fc2, MTLoRALayer) and fc2.tasks == ["semseg", "depth"]
    assert block.block.attn.qkv.tasks == []  # attention inputs stay shared
    torch.manual_seed(3)
    with torch.no_grad():
        fc2.task["depth"].B.normal_()
    seen = {}
    fc2.register_forward_pre_hook(lambda m, args: seen.setdefault("h", args[0]))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone(x)
        semseg_raw, depth_raw = model.head.task_features._raw[0]  # NHWC block outputs of level 0
        h = seen["h"].chunk(3, dim=0)[0]  # the shared chunk of the stacked fc2 input
        lora = fc2.task["depth"]
        delta = 4.0 * torch.nn.functional.linear(torch.nn.functional.linear(h, lora.A), lora.B)
        per_task = model.head.task_features(feats)
    torch.testing.assert_close(depth_raw - semseg_raw, delta.reshape(depth_raw.shape), rtol=1e-5, atol=1e-5)
    assert torch.equal(per_task["semseg"][0], feats[0])
    assert not torch.allclose(per_task["depth"][0], feats[0])
    assert torch.equal(per_task["depth"][1], feats[1])  # the next stage continues from the shared stream


def test_task_streams_need_a_per_task_head_and_a_backbone_run(pristine):
    with pytest.raises(ValueError, match="head='light'"):
        _tuned(pristine, "mtlora", head="degmix")
    shared_only = _tuned(pristine, "mtlora", head="degmix", task_rank=0)
    assert not any(isinstance(m, TaskStreamBlock) for m in shared_only.backbone.modules())
    assert _count(shared_only.backbone.parameters()) == 16 * 16 * SUM_C + EXTRAS
    model = _tuned(pristine, "ditask")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone(x)
        model(x, features=feats)  # consumes the streams of this backbone run
        with pytest.raises(RuntimeError, match="cannot decode cached features"):
            model(x, features=feats)


def test_monotone_warp_is_identity_at_zero_and_keeps_endpoints_and_order():
    u = torch.linspace(0, 1, 11)
    torch.testing.assert_close(monotone_index_warp(torch.zeros(3), u), u)
    theta = torch.tensor([2.0, -1.0, 0.5])
    phi = monotone_index_warp(theta, u)
    assert phi[0] == 0 and phi[-1] == 1 and bool((phi[1:] > phi[:-1]).all())
    # hand check: masses softmax([2, -1, 0.5, 0]) over 4 cells; phi(0.25) = mass of cell 0
    mass = torch.softmax(torch.tensor([2.0, -1.0, 0.5, 0.0]), 0)
    torch.testing.assert_close(monotone_index_warp(theta, torch.tensor([0.25, 0.5])), mass.cumsum(0)[:2])
    s = torch.tensor([9.0, 5.0, 4.0, 1.0, 0.5])
    torch.testing.assert_close(warp_spectrum(s, torch.zeros(3)), s)
    w = warp_spectrum(s, theta)
    assert w[0] == s[0] and w[-1] == s[-1] and bool((w[1:] <= w[:-1]).all())


def test_spectral_warp_layer_rebuilds_the_weight_and_splits_qkv():
    torch.manual_seed(0)
    base = nn.Linear(8, 24)
    layer = SpectralWarpLayer(base, tess=4, tasks=[], task_tess=0, groups=3, dropout=0.0, init="zero")
    assert layer.theta.numel() == 3 and layer.svd_s is None  # SVD deferred to the first forward
    torch.testing.assert_close(layer.warped_weight(layer.theta), base.weight, rtol=0, atol=1e-5)
    assert layer.svd_s.shape == (3, 8)  # q, k, v decomposed separately
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([1.0, -1.0, 0.3]))
    w = layer.warped_weight(layer.theta)
    for g, part in enumerate(w.detach().chunk(3, 0)):  # same singular vectors, warped values, extremes kept
        s_new = torch.linalg.svdvals(part)
        s_old = layer.svd_s[g]
        torch.testing.assert_close(s_new[[0, -1]], s_old[[0, -1]], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(s_new, s_old, atol=1e-3)
    random_init = SpectralWarpLayer(nn.Linear(8, 8), 65, [], 0, 1, 0.0, "random")
    assert 0 < random_init.theta.abs().max() <= 1 / 8


@pytest.mark.parametrize("method", ["mtlora", "adapter", "lora", "ditask"])
def test_methods_work_on_a_convnet(method):
    """ConvNeXt: conv MLPs (1x1 Conv2d), depthwise convs skipped, NCHW task streams."""
    model = create_model("degmix_tuning_tiny_nyud", backbone="convnext_atto", head={"dim": 16})
    apply_tuning(model, method)
    wrapped = [m.base for m in model.backbone.modules() if isinstance(m, (MTLoRALayer, SpectralWarpLayer))]
    assert all(b.groups == 1 for b in wrapped if isinstance(b, nn.Conv2d))
    model.train()
    out = model(torch.randn(1, 3, 32, 32))
    sum(o.float().pow(2).mean() for o in out.values()).backward()
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


@pytest.fixture(scope="module")
def swin_t_pascal():
    torch.manual_seed(0)
    return create_model("degmix_tuning_swin_t_pascal")


def test_swin_t_counts_match_the_papers_code(swin_t_pascal):
    """MTLoRA r=16: 16 r sum(C_blocks) + 12 r_t T sum(C_stage_last) = 1,406,976 and 1,599,546 extras; DiTASK 3,168."""
    depths, chans = (2, 2, 6, 2), (96, 192, 384, 768)
    sum_blocks, sum_last = sum(d * c for d, c in zip(depths, chans)), sum(chans)
    assert (sum_blocks, sum_last) == (4416, 1440)

    model = copy.deepcopy(swin_t_pascal)
    base_ids = {id(p) for p in model.backbone.parameters()}
    apply_tuning(model, "mtlora", rank=16)
    added = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad and id(p) not in base_ids)
    unfrozen = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad and id(p) in base_ids)
    assert added == 16 * 16 * sum_blocks + 12 * 4 * 4 * sum_last == 1_406_976
    assert unfrozen == 1_599_546
    del model

    model = copy.deepcopy(swin_t_pascal)
    base_ids = {id(p) for p in model.backbone.parameters()}
    apply_tuning(model, "ditask")
    added = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad and id(p) not in base_ids)
    assert added == 63 * 4 * 12 + 3 * 3 * 4 * 4 == 3_168

    degmix_nyud = DeGMixHead(swin_t_pascal.backbone.channels, {"semseg": 40, "depth": 1}, DeGMixConfig(dim=128))
    assert sum(p.numel() for p in degmix_nyud.parameters()) == 1_322_645


def test_task_streams_on_a_plain_vit_match_the_shared_maps_at_init():
    """ViT: token outputs -> NCHW grid, the slot's parameter-free pyramid, crop and stage norm, like the shared map."""
    model = create_model("degmix_tuning_tiny_nyud", backbone="vit_tiny_patch16_224", img_size=(48, 64),
                         head={"dim": 16})
    apply_tuning(model, "mtlora")
    model.eval()
    with torch.no_grad():
        feats = model.backbone(torch.randn(1, 3, 40, 56))  # padded to 48x64 inside the slot, cropped back
        per_task = model.head.task_features(feats)
    assert [tuple(f.shape[-2:]) for f in feats] == [(10, 14), (5, 7), (3, 4), (2, 2)]
    for maps in per_task.values():
        for a, b in zip(maps, feats):
            assert torch.equal(a, b)


# --- the frozen slot across timm (issue 19): structure found by module type, refusals in one line --------------------

class _BypassBlock(nn.Module):
    """Computes with `fc.weight` directly, as timm's Swin-V2/EVA/BEiT attention does with `qkv` (F.linear)."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.fc = nn.Linear(c, c)
        self.out = nn.Linear(c, c)

    def forward(self, x):
        y = torch.nn.functional.linear(x.permute(0, 2, 3, 1), self.fc.weight, self.fc.bias)
        return x + self.out(y).permute(0, 3, 1, 2)


def _toy_model(make_stage, name: str):
    """A one-level backbone `stem -> stages.0`, `make_stage()` built anew for every model."""
    from degmix_tuning.backbones import BACKBONES, FeatureBackbone, FeatureInfo, register_backbone
    from degmix_tuning.models import ModelConfig

    class Toy(FeatureBackbone):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 4, stride=4)
            self.stages = nn.Sequential(make_stage())
            self.feature_info = (FeatureInfo(8, 4, "stages.0"),)

        def forward(self, x):
            return [self.stages(self.stem(x))]

    if name not in BACKBONES:
        register_backbone(name)(lambda **kw: Toy())
    return create_model(ModelConfig(backbone=name, tasks=("semseg",), head=DeGMixConfig(dim=8)))


class _PlainStage(nn.Module):
    def __init__(self, *blocks: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class _LinearBlock(_BypassBlock):
    def forward(self, x):
        return x + self.out(self.fc(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


def test_an_adapter_its_parent_bypasses_is_refused_in_one_line_at_build_time():
    def make():
        return _PlainStage(_BypassBlock())

    never_run = r"lora: 1 adapted layers .* never run .*stages\.0\.blocks\.0\.fc.*exclude=fc$"
    with pytest.raises(ValueError, match=never_run):
        apply_tuning(_toy_model(make, "test_bypass"), "lora")
    apply_tuning(_toy_model(make, "test_bypass"), "lora", exclude=("fc",))  # the fix the message names
    with pytest.raises(ValueError, match=r"mtlora: backbone .* fails on a 96x100 test input once tuned \(Attribute"):
        apply_tuning(_toy_model(make, "test_bypass"), "mtlora", task_rank=0, head="degmix")


def test_task_streams_that_cannot_be_restored_are_refused_in_one_line():
    class Scaled(_PlainStage):  # does more after its last block than a norm: the streams cannot replay it
        def forward(self, x):
            return 2 * self.blocks(x)

    def make():
        return Scaled(_LinearBlock())

    with pytest.raises(ValueError, match=r"mtlora: the per-task streams of backbone .* cannot be restored at level 0 "
                                         r"\(its stage output is not the returned map.*task_rank=0"):
        apply_tuning(_toy_model(make, "test_scaled_stage"), "mtlora")
    apply_tuning(_toy_model(make, "test_scaled_stage"), "mtlora", task_rank=0, head="degmix")  # shared only: fine


def test_swin_v2_qkv_is_called_as_a_module_with_the_same_numbers():
    from degmix_tuning.backbones import create_backbone
    from degmix_tuning.tuning.structure import route_through_modules

    bb = create_backbone("swinv2_tiny_window8_256", embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                         window_size=4).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = bb(x)
        assert route_through_modules(bb.model) == 4  # one attention per block
        calls = []
        hooks = [m.attn.qkv.register_forward_hook(lambda *a: calls.append(1)) for m in bb.model.modules()
                 if hasattr(m, "attn")]
        got = bb(x)
    assert len(calls) == len(hooks) == 4
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_without_the_qkv_switch_the_build_time_probe_refuses_the_silent_lora(monkeypatch):
    import degmix_tuning.tuning._peft as peft_plumbing

    monkeypatch.setattr(peft_plumbing, "route_through_modules", lambda net: 0)  # what timm's Swin-V2 does by itself
    model = create_model("degmix_tuning_tiny_nyud", backbone="swinv2_tiny_window8_256", head={"dim": 16},
                         backbone_kwargs=dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                              window_size=4))
    with pytest.raises(ValueError, match=r"lora: 4 adapted layers .* never run .*layers\.0\.blocks\.0\.attn\.qkv"):
        apply_tuning(model, "lora")


def test_efficientnet_stages_own_every_block_and_the_stem_is_conv_stem_and_bn1():
    """Taps at blocks.0/1/3/5: blocks.2 and blocks.4 belong to the next tapped stage, not to the "stem" extras."""
    from degmix_tuning.tuning.extras import BackboneExtras, extra_parameters, stem_parameters
    from degmix_tuning.tuning.structure import find_stages, network_of

    model = create_model("degmix_tuning_tiny_nyud", backbone="mobilenetv3_small_050", head={"dim": 16})
    net = network_of(model.backbone)
    stages = find_stages(model.backbone)
    assert [s.name for s in stages] == ["blocks.0", "blocks.1", "blocks.3", "blocks.5"]
    in_stages = {id(b) for s in stages for b in s.blocks}
    assert in_stages == {id(b) for unit in net.blocks for b in unit}  # every block of every unit, once
    assert {id(p) for p in stem_parameters(net, stages)} == {id(p) for m in (net.conv_stem, net.bn1)
                                                             for p in m.parameters()}
    stem_only = BackboneExtras(norms=False, position_bias=False, merging=False)
    assert sum(p.numel() for p in extra_parameters(model.backbone, stem_only)) == 464


def test_regnet_stages_are_their_b_blocks():
    from degmix_tuning.tuning.structure import find_stages

    model = create_model("degmix_tuning_tiny_nyud", backbone="regnety_002", head={"dim": 16})
    stages = find_stages(model.backbone)
    assert stages[0].block_names == ["s1.b1"] and stages[-1].block_names[-1].startswith("s4.b")
    assert all(type(b).__name__ == "Bottleneck" for s in stages for b in s.blocks)


def test_ditask_leaves_weights_whose_spectrum_it_cannot_warp():
    """A warp keeps both ends of the spectrum: on a weight with <= 2 singular values it could change nothing."""
    model = _toy_model(lambda: _PlainStage(nn.Sequential(nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1), nn.Conv2d(8, 8, 1))),
                       "test_thin_convs")
    apply_tuning(model, "ditask", task_tess=0, head="degmix")
    wrapped = [type(m).__name__ for m in model.backbone.stages[0].blocks[0]]
    assert wrapped == ["Conv2d", "Conv2d", "SpectralWarpLayer"]
