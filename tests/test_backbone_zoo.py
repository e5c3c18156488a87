"""The backbone slot across timm: every family x tuning method either trains or is refused in one line, at build time.

For each pair, EITHER the tuned model trains 3 steps (finite losses), every trainable tensor gets a non-zero gradient
(so no adapter is a silent no-op) and every returned map is ceil(input / stride) (the contract of
`FeatureBackbone.check_features`), OR `create_model` / `apply_tuning` raise one ValueError line naming the cause,
before any training step; those pairs are listed in `REFUSED`, the table the README shows.

Random init only. Two things a pretrained backbone does not have are removed so gradients can reach every adapter:
norm weights that timm initialises to exactly zero (ResNet's zero_init_last BN, Swin-V2's res-post-norms) are set
to one, and adapter halves initialised to zero (LoRA B, the bottleneck's up projection) get small noise; otherwise the
first backward would reach the other half only.
The smallest variant of each family is used, with tiny depths/widths where timm's constructor takes them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from degmix_tuning import ModelConfig, create_model
from degmix_tuning.data.info import get_dataset_info
from degmix_tuning.losses import MultiTaskLoss
from degmix_tuning.models.degmix import DeGMixConfig
from degmix_tuning.tuning import apply_tuning
from degmix_tuning.tuning.streams import TaskStreamBlock

SIZE = (64, 96)  # H != W: a transposed map cannot pass
TASKS = ("semseg", "depth")

FAMILIES = {  # family: (smallest timm variant, tiny constructor kwargs)
    "convnext": ("convnext_atto", dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))),
    "resnet": ("resnet18", dict(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16)),
    "poolformer": ("poolformer_s12", {}),  # metaformer variants take no depth/width kwargs
    "efficientvit": ("efficientvit_b0", dict(widths=(8, 16, 32, 64, 128), depths=(1, 1, 1, 1, 1), head_dim=16)),
    "fastvit": ("fastvit_t8", dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128))),
    "vit": ("vit_tiny_patch16_224", dict(depth=4, embed_dim=32, num_heads=2)),
    "deit": ("deit_tiny_patch16_224", dict(depth=4, embed_dim=32, num_heads=2)),
    "eva02": ("eva02_tiny_patch14_224", dict(depth=4, embed_dim=32, num_heads=2)),  # patch 14: non-integer pyramid
    "swinv2": ("swinv2_tiny_window8_256", dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                               window_size=4)),
    "efficientnet_b0": ("efficientnet_b0", {}),
    "mobilenetv3": ("mobilenetv3_small_050", {}),
    "pvt_v2": ("pvt_v2_b0", dict(depths=(1, 1, 1, 1))),
    "caformer": ("caformer_s18", {}),
    "regnety": ("regnety_002", {}),
    "maxvit": ("maxvit_rmlp_pico_rw_256", {}),
    "hiera": ("hiera_tiny_224", dict(embed_dim=16, num_heads=1, stages=(1, 1, 1, 1))),
    "mlp-mixer": ("mixer_s32_224", {}),
    "levit": ("levit_128s", {}),
    "inception_v3": ("inception_v3", {}),
}
# fixed input size (position tables, token-mixing MLPs, window grids): built at the crop size, as `model.img_size`
FIXED_SIZE = {"maxvit", "hiera", "mlp-mixer", "levit"}
METHODS = ("degmix", "lora", "mtlora", "ditask", "bitfit", "adapter", "dora", "ia3")

# (family, method) -> what the one-line refusal says. Every other pair must train.
REFUSED = {
    **{("inception_v3", m): "declared stride 4 needs 24x32" for m in METHODS},  # unpadded convs shrink its maps
}

# the unmarked subset: one pair per problem of issue 19 (the full matrix is marked slow)
FAST = {
    ("swinv2", "lora"), ("swinv2", "mtlora"), ("swinv2", "ditask"), ("mobilenetv3", "mtlora"), ("pvt_v2", "mtlora"),
    ("caformer", "degmix"), ("regnety", "lora"), ("hiera", "mtlora"), ("levit", "degmix"), ("maxvit", "adapter"),
    ("inception_v3", "degmix"), ("vit", "ditask"), ("convnext", "lora"), ("eva02", "lora"),
}


def _build(family: str, method: str) -> nn.Module:
    name, kwargs = FAMILIES[family]
    img_size = SIZE if family in FIXED_SIZE else None
    cfg = ModelConfig(backbone=name, backbone_kwargs=dict(kwargs), img_size=img_size, tasks=TASKS,
                      head=DeGMixConfig(dim=16))
    model = create_model(cfg)
    with torch.no_grad():  # zero-initialised residual gates would hide every branch from the loss
        for m in model.backbone.modules():
            w = getattr(m, "weight", None)
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) and w is not None:
                if not w.any():
                    w.fill_(1.0)
    apply_tuning(model, method)
    return model


def _batch(b: int = 2):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(b, 3, *SIZE, generator=g)
    labels = {"semseg": torch.randint(0, 40, (b, *SIZE), generator=g),
              "depth": 0.5 + 4 * torch.rand(b, 1, *SIZE, generator=g)}
    return images, labels


def _dead_by_design(model: nn.Module) -> set[int]:
    """Shared updates of the very last stage-end block of a task-stream method: they only feed the final shared map,
    which no per-task decoder reads (as in the released MTLoRA/DiTASK code, see tuning/mtlora.py)."""
    blocks = [m for m in model.backbone.modules() if isinstance(m, TaskStreamBlock)]
    if not blocks:
        return set()
    return {id(p) for n, p in blocks[-1].block.named_parameters() if ".shared." in f".{n}" or n.endswith("theta")}


# trainable parameters that are in the graph but whose gradient is exactly zero by the architecture's math, not by a
# bypass: MaxViT-rmlp's position MLP adds its output bias to every attention logit of a head, which softmax ignores
SOFTMAX_INVARIANT = ("rel_pos.mlp.fc2.bias",)


def _one_line_refusal(family: str, method: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        _build(family, method)  # model construction and tuning: nothing has trained yet
    message = str(info.value)
    assert why in message and "\n" not in message, message


def _trains(family: str, method: str) -> None:
    torch.manual_seed(0)
    model = _build(family, method)
    assert (model.backbone.fixed_input_size is not None) == (family in FIXED_SIZE)  # found by the backbone itself
    params = [p for p in model.parameters() if p.requires_grad]
    names = {id(p): n for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in params:
            if not p.any():  # LoRA B, adapter up: zero by design, so the other half would see no gradient
                p.add_(1e-2 * torch.randn_like(p))
    criterion = MultiTaskLoss(list(TASKS), get_dataset_info("nyud"))
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    images, labels = _batch()
    model.train()
    for step in range(3):
        loss, _ = criterion(model(images), labels)
        assert torch.isfinite(loss)
        loss.backward()
        if step == 0:
            dead = _dead_by_design(model)
            silent = [names[id(p)] for p in params if id(p) not in dead and (p.grad is None or not (
                p.grad.any() or names[id(p)].endswith(SOFTMAX_INVARIANT)))]
            assert not silent, f"{len(silent)} trainable tensors got no gradient, e.g. {silent[:3]}"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        feats = model.backbone(images)
    strides = model.backbone.strides
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-SIZE[0] // s), -(-SIZE[1] // s)) for s in strides]


PAIRS = [pytest.param(f, m, marks=() if (f, m) in FAST else pytest.mark.slow, id=f"{f}-{m}")
         for f in FAMILIES for m in METHODS]


@pytest.mark.parametrize("family,method", PAIRS)
def test_zoo_pair_trains_or_is_refused_in_one_line(family, method):
    why = REFUSED.get((family, method))
    if why is not None:
        _one_line_refusal(family, method, why)
    else:
        _trains(family, method)


def test_the_fast_subset_and_the_refusal_table_name_real_pairs():
    assert FAST <= {(f, m) for f in FAMILIES for m in METHODS}
    assert set(REFUSED) <= {(f, m) for f in FAMILIES for m in METHODS}
    assert all("\n" not in why for why in REFUSED.values())


def test_a_fixed_size_backbone_refuses_a_larger_input_in_one_line():
    """Built at its default 224x224, LeViT pads smaller inputs to it and names the fix for larger ones."""
    model = create_model(ModelConfig(backbone="levit_128s", tasks=TASKS, head=DeGMixConfig(dim=16)))
    assert model.backbone.fixed_input_size == (224, 224)
    assert model.backbone.img_size_for((240, 300)) == (256, 320)  # rounded up to its largest stride, 64
    with pytest.raises(ValueError, match=r"--set model.img_size=256,320$"):
        model(torch.randn(1, 3, 240, 300))
    out = model(torch.randn(1, 3, 40, 56))  # padded to 224x224, maps cropped back
    assert out["semseg"].shape == (1, 40, 40, 56)


def test_a_backbone_that_any_size_fits_is_not_marked_fixed():
    model = create_model(ModelConfig(backbone="vit_tiny_patch16_224", backbone_kwargs=dict(depth=4, embed_dim=32,
                                                                                         num_heads=2),
                                     tasks=TASKS, head=DeGMixConfig(dim=16)))
    assert model.backbone.fixed_input_size is None
