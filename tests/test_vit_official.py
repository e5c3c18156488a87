"""DeGMix ViT: the official ViT backbone and head (DemtViTHead), checked against outputs of the official code.

The fixture (tests/fixtures/official_vit, see its README) was made by running the official DeGMix code on a tiny ViT
(32 wide, 12 layers) + DemtViTHead (d=32, FeatConv 16 per level): its Lightning checkpoint, the same backbone in
the mmseg UperNet layout the official code downloads, and float64 outputs on three images whose sides are not
multiples of 16 (and one batch of two).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from degmix_tuning import ModelConfig, create_model
from degmix_tuning.backbones import create_backbone
from degmix_tuning.cli import main
from degmix_tuning.data.info import get_dataset_info
from degmix_tuning.losses import MultiTaskLoss
from degmix_tuning.models.degmix import DeGMixConfig, DeGMixHead
from degmix_tuning.models.fusion import ConvPyramidFusion
from degmix_tuning.models.presets import VIT_HEAD
from degmix_tuning.official import import_official
from degmix_tuning.training.checkpoint import load_tuned
from degmix_tuning.tuning import apply_tuning
from degmix_tuning.tuning.streams import TaskStreamBlock

FIXTURE = Path(__file__).parent / "fixtures" / "official_vit"
CKPT = FIXTURE / "degmix_vit_tiny_nyud.ckpt"
MMSEG = FIXTURE / "mmseg_vit_tiny_backbone.pth"
SPEC = json.loads((FIXTURE / "fixture.json").read_text())
TASKS = tuple(SPEC["tasks"])
TOL = 1e-8
TINY_VIT = {"embed_dim": SPEC["embed_dims"], "num_heads": SPEC["num_heads"]}


def tiny_config(freeze_backbone: bool = False) -> ModelConfig:
    """The fixture's model in our terms: the ViT slot at width 32 and the official ViT head at d=32."""
    return ModelConfig(backbone="vit_b", backbone_kwargs=dict(TINY_VIT), dataset="nyud", tasks=TASKS,
                       head=DeGMixConfig(dim=SPEC["head_dim"], fusion_channels=SPEC["featconv_channels"], **VIT_HEAD),
                       freeze_backbone=freeze_backbone)


@pytest.fixture(scope="module")
def official():
    return load_file(str(FIXTURE / "inputs_outputs.safetensors"))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The Lightning checkpoint through the public importer, rebuilt as evaluate/predict rebuild it (float64)."""
    out = tmp_path_factory.mktemp("vit") / "run"
    result = import_official(CKPT, tiny_config(), out)
    model, _ = load_tuned(out)
    return result, model.double().eval()


def _run_with_taps(model, image):
    """Outputs, the fused map and each task's pre-upsampling logits of one forward."""
    taps = {}
    hooks = [model.head.fusion.register_forward_hook(lambda m, i, o: taps.__setitem__("fused", o))]
    hooks += [model.head.heads[t].logits.register_forward_hook(lambda m, i, o, t=t: taps.__setitem__(f"{t}_grid", o))
              for t in model.head.tasks]
    try:
        with torch.no_grad():
            out = model(image)
    finally:
        for h in hooks:
            h.remove()
    return out, taps


# --- float64 equality with the official code ------------------------------------------------------------------------

@pytest.mark.parametrize("tag", SPEC["tags"] + SPEC["batch2_tags"])
def test_backbone_from_the_mmseg_file_computes_the_official_features(official, tag, caplog):
    with caplog.at_level(logging.INFO, logger="degmix_tuning"):
        backbone = create_backbone("vit_b", **TINY_VIT, checkpoint_path=str(MMSEG)).double().eval()
    # one line says what was skipped and dropped: exactly what vit_b()'s load_state_dict(strict=False) drops
    lines = [r.getMessage() for r in caplog.records if str(MMSEG) in r.getMessage()]
    assert len(lines) == 1
    assert "dropped backbone.patch_embed.projection.bias, backbone.ln1.weight, backbone.ln1.bias" in lines[0]
    assert "skipped 34 keys of other modules: auxiliary_head.* (8), decode_head.* (10), neck.* (16)" in lines[0]
    with torch.no_grad():
        feats = backbone(official[f"{tag}.image"])
    for i, f in enumerate(feats):
        assert (f - official[f"{tag}.features.{i}"]).abs().max().item() < TOL, (tag, i)


@pytest.mark.parametrize("tag", SPEC["tags"])
def test_imported_checkpoint_reproduces_the_official_model(imported, official, tag):
    _, model = imported
    out, taps = _run_with_taps(model, official[f"{tag}.image"])
    diffs = {"fused": (taps["fused"] - official[f"{tag}.fused"]).abs().max().item()}
    for t in TASKS:
        diffs[f"{t}_grid"] = (taps[f"{t}_grid"] - official[f"{tag}.{t}_grid"]).abs().max().item()
    for t in ("depth", "normals", "edge"):
        diffs[t] = (out[t] - official[f"{tag}.{t}"]).abs().max().item()
    diffs["semseg_sel"] = (out["semseg"][:, [0, 39]] - official[f"{tag}.semseg_sel"]).abs().max().item()
    assert max(diffs.values()) < TOL, diffs
    assert official[f"{tag}.fused"].abs().max() > 0.1  # the comparison is not of near-zero maps


def test_a_batch_keeps_each_image_independent_where_the_official_head_couples_them(imported, official):
    """Official task_query(...)[0] adds image 0's query result to every image, and task_fusion attends across the
    batch; ours gives every image its batch-1 output (the official one-image-per-GPU computation)."""
    _, model = imported
    images = official["b2_40x57.image"]
    batch, _ = _run_with_taps(model, images)
    for i in range(2):
        alone, _ = _run_with_taps(model, images[i:i + 1])
        assert (batch["depth"][i:i + 1] - alone["depth"]).abs().max().item() < 1e-12
    # the official batch output of image 1 differs from its own batch-1 output by O(1) (fixture.json)
    assert (batch["depth"][1:] - official["b2_40x57.depth"][1:]).abs().max().item() > 0.1


def test_import_records_the_dropped_linear1_and_the_computation(imported):
    result, model = imported
    src = result.source
    dropped = [k for k in src["dropped_unused_head_buffers"] if k.startswith("head.linear1.")]
    assert dropped == ["head.linear1.0.weight", "head.linear1.0.bias", "head.linear1.1.weight", "head.linear1.1.bias"]
    linear1 = 1440 * 32 + 32 + 2 * 32  # Linear(in_channels 1440, d) + LayerNorm(d) at d=32
    assert f"dropped the head's linear1 ({linear1:,d} parameters" in src["computation"]
    assert "query_attention=linear" in src["computation"] and "interaction=official" in src["computation"]
    assert not any("linear1" in n for n, _ in model.named_parameters())


def test_our_tiny_model_has_the_official_parameters_minus_linear1(imported):
    """Every parameter of the official tiny model (the checkpoint's tensors, buffers excluded) but linear1."""
    _, model = imported
    state = torch.load(CKPT, map_location="cpu", weights_only=True)["state_dict"]
    buffers = ("running_mean", "running_var", "num_batches_tracked", ".offset")
    official = {k: v.numel() for k, v in state.items() if not k.endswith(buffers)}
    head = sum(n for k, n in official.items() if k.startswith("head.") and not k.startswith("head.linear1."))
    backbone = sum(n for k, n in official.items() if k.startswith("backbone."))
    assert sum(p.numel() for p in model.head.parameters()) == head
    assert sum(p.numel() for p in model.backbone.parameters()) == backbone


# --- full-size parameter counts --------------------------------------------------------------------------------------

def test_full_size_counts_equal_the_official_modules():
    """fixture.json `full_size_counts`: the official classes counted on CPU (ViT-B, NYUD 4 tasks, d=256)."""
    want = SPEC["full_size_counts"]
    with torch.device("meta"):
        model = create_model("degmix_vit_b_nyud")
    n = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    h, parts = model.head, want["head_parts"]
    heads = list(h.heads.values())
    assert n(model.backbone) == want["backbone"] == 86_432_256
    assert n(h.fusion) == parts["featconv"] == 5_901_312
    assert [n(lv) for lv in h.fusion.levels] == [parts[f"featconv.head{i}"] for i in (2, 3, 4, 5)]
    assert n(h.fusion.merge) == parts["featconv.head6"]
    assert n(h.mixers) == parts["defor_mixers"]
    assert n(h.task_interaction) == parts["task_fusion"] + parts["smlp"]
    assert n(h.task_query.queries) == parts["task_querys"] + parts["smlp2"]
    assert n(h.task_query.gated_mlp) == parts["gmlps"]
    assert n(*[x.bottleneck for x in heads]) == parts["bottleneck"] and n(*[x.logits for x in heads]) == 8_145
    assert n(model.head) == want["head_without_linear1"] == 11_213_057  # linear1 (369,408) omitted
    assert n(model) == want["total_without_linear1"] == 97_645_313 == want["total"] - parts["linear1"]


def test_vit_preset_counts():
    """Presets module docstring: ViT-L is inferred; the tuning presets' d=128 is ours."""
    counts = {}
    for name in ("degmix_vit_l_nyud", "degmix_tuning_vit_b_nyud", "degmix_tuning_vit_l_nyud"):
        with torch.device("meta"):
            model = create_model(name)
        counts[name] = (sum(p.numel() for p in model.parameters()),
                        sum(p.numel() for p in model.parameters() if p.requires_grad))
    assert counts == {"degmix_vit_l_nyud": (316_539_137, 316_539_137),
                      "degmix_tuning_vit_b_nyud": (89_931_797, 3_499_541),
                      "degmix_tuning_vit_l_nyud": (308_235_797, 4_089_365)}


# --- gradients ------------------------------------------------------------------------------------------------------

def test_conv_pyramid_fusion_gradients_match_finite_differences_at_batch_one():
    """float64, train-mode BatchNorm (batch statistics of one image), inputs and every parameter; and through the
    whole head, where the mixers hand the fusion its incoming gradient (the batch-1 BatchNorm bug's setting)."""
    torch.manual_seed(0)
    fusion = ConvPyramidFusion([3, 3, 3, 3], dim=4, width=2).double().train()
    feats = [torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    assert torch.autograd.gradcheck(lambda *x: fusion(list(x)), feats, eps=1e-6, atol=1e-7)
    head = DeGMixHead([3, 3, 3, 3], {"depth": 1, "normals": 3},
                      DeGMixConfig(dim=4, gate_hidden=8, fusion="conv_pyramid", query_attention="linear",
                                   interaction="official", bottleneck_channels=3)).double().train()
    weights = {"depth": torch.randn(1, 1, 16, 20, dtype=torch.float64),
               "normals": torch.randn(1, 3, 16, 20, dtype=torch.float64)}
    x = [f.detach() for f in feats]

    def loss() -> torch.Tensor:
        out = head(x, (16, 20))
        return sum((out[t] * weights[t]).sum() for t in out)

    targets = [head.fusion.levels[0][0].weight, head.fusion.merge[3].weight, head.fusion.merge[4].bias]
    head.zero_grad()
    loss().backward()
    for p in targets:
        flat = p.detach().view(-1)
        for idx in (0, flat.numel() // 2, flat.numel() - 1):
            with torch.no_grad():
                old = flat[idx].item()
                flat[idx] = old + 1e-6
                up = loss().item()
                flat[idx] = old - 1e-6
                down = loss().item()
                flat[idx] = old
            numeric = (up - down) / 2e-6
            assert abs(p.grad.view(-1)[idx].item() - numeric) <= 1e-6 * max(1.0, abs(numeric)), (p.shape, idx)


# --- refusals (one line each) --------------------------------------------------------------------------------------

def _one_line_error(capsys, argv) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_vit_checkpoint_with_a_swin_preset_is_refused(tmp_path, capsys):
    err = _one_line_error(capsys, ["import-official", str(CKPT), "--preset", "degmix_swin_t_nyud",
                                   "--out", str(tmp_path / "run")])
    assert "ViT head (FeatConv on 32-channel maps, bottleneck 180)" in err and "ViT embed 32, 12 layers" in err


def test_swin_checkpoint_with_a_vit_preset_is_refused(tmp_path, capsys):
    swin = Path(__file__).parent / "fixtures" / "official_degmix" / "demtg_tiny_nyud.ckpt"
    err = _one_line_error(capsys, ["import-official", str(swin), "--preset", "degmix_tuning_vit_b_nyud",
                                   "--out", str(tmp_path / "run")])
    assert "Swin embed 16" in err and "degmix_tuning_vit_b_nyud" in err and "vit_b (ViT embed 768, 12 layers)" in err


@pytest.mark.parametrize("edit,expected", [
    (lambda sd: sd.pop("head.featconv.head6.3.weight"), "missing head.featconv.head6.3.weight"),
    (lambda sd: sd.__setitem__("head.featconv.head7.0.weight", torch.zeros(1)), "unexpected head.featconv.head7"),
    (lambda sd: sd.__setitem__("head.task_querys.1.to_k.weight", torch.zeros(32, 31)),
     "wrong shape head.task_querys.1.to_k.weight [32,31] (expected [32,32])"),
    (lambda sd: sd.pop("backbone.layers.11.ffn.layers.1.bias"), "missing: layers.11.ffn.layers.1.bias"),
])
def test_checkpoint_that_does_not_fit_names_the_key(tmp_path, capsys, edit, expected):
    obj = torch.load(CKPT, map_location="cpu", weights_only=True)
    edit(obj["state_dict"])
    bad = tmp_path / "bad.ckpt"
    torch.save(obj, bad)
    config = tmp_path / "model.json"
    config.write_text(json.dumps(tiny_config().to_dict()))
    err = _one_line_error(capsys, ["import-official", str(bad), "--config", str(config), "--out", str(tmp_path / "r")])
    assert expected in err, err


def test_backbone_files_of_the_wrong_kind_or_size_are_refused_in_one_line(tmp_path):
    swin_file = Path(__file__).parent / "fixtures" / "official_degmix" / "mmseg_swin_tiny_backbone.pth"
    cases = [
        (lambda: create_backbone("vit_b", **TINY_VIT, checkpoint_path=str(swin_file)),
         "holds mmseg/official Swin weights, not a ViT"),
        (lambda: create_backbone("tiny_swin", depths=(2, 2, 2, 2), checkpoint_path=str(MMSEG)),
         "holds mmseg/official ViT weights"),
        (lambda: create_backbone("vit_b", embed_dim=64, num_heads=2, checkpoint_path=str(MMSEG)),
         "holds an mmseg/official ViT with embed 32, 12 layers, but the backbone is vit_base_patch16_224 (ViT embed "
         "64, 12 layers)"),
    ]
    for build, expected in cases:
        with pytest.raises(ValueError) as info:
            build()
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_timm_vit_file_loads_with_its_patch_bias_folded_into_the_position_embedding(tmp_path, caplog):
    """A timm/hub ViT has a patch bias and a final norm; the slot has neither. Folding the bias into the grid part of
    the position embedding gives timm's own features (built for 512, eps 1e-5, no resize, no padding): equal up to the
    float32 rounding of the folded sum."""
    import timm
    from functools import partial

    torch.manual_seed(0)
    net = timm.create_model("vit_base_patch16_224", num_classes=0, embed_dim=32, depth=4, num_heads=2, img_size=512,
                            norm_layer=partial(nn.LayerNorm, eps=1e-5))
    with torch.no_grad():
        net.patch_embed.proj.bias.normal_()
        net.pos_embed.normal_()
    torch.save(net.state_dict(), tmp_path / "timm_vit.pth")
    with caplog.at_level(logging.INFO, logger="degmix_tuning"):
        backbone = create_backbone("vit_b", **TINY_VIT, depth=4, checkpoint_path=str(tmp_path / "timm_vit.pth"))
    assert "patch-embedding bias folded into the position embedding" in caplog.text and "norm.weight" in caplog.text
    x = torch.randn(1, 3, 512, 512, dtype=torch.float64)
    net, backbone = net.double().eval(), backbone.double().eval()
    with torch.no_grad():
        ours = backbone(x)
        timm_maps = net.forward_intermediates(x, indices=[0, 1, 2, 3], norm=False, intermediates_only=True)
    assert max((a - b).abs().max().item() for a, b in zip(ours, timm_maps)) < 1e-5
    assert backbone.model.patch_embed.proj.bias is None


# --- every tuning method on the tiny ViT -----------------------------------------------------------------------------

SIZE = (40, 57)


@pytest.mark.parametrize("method", ["degmix", "lora", "mtlora", "ditask", "bitfit", "adapter"])
def test_every_tuning_method_trains_on_the_vit(method):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="vit_b", backbone_kwargs={**TINY_VIT, "depth": 4}, tasks=("semseg", "depth"),
                      head=DeGMixConfig(dim=16, **{**VIT_HEAD, "bottleneck_channels": 12}))
    model = create_model(cfg)
    apply_tuning(model, method)
    params = [p for p in model.parameters() if p.requires_grad]
    names = {id(p): n for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in params:
            if not p.any():  # LoRA B, adapter up: zero by design
                p.add_(1e-2 * torch.randn_like(p))
    before = {id(p): p.detach().clone() for p in params}
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, *SIZE, generator=g)
    labels = {"semseg": torch.randint(0, 40, (2, *SIZE), generator=g),
              "depth": 0.5 + 4 * torch.rand(2, 1, *SIZE, generator=g)}
    criterion = MultiTaskLoss(["semseg", "depth"], get_dataset_info("nyud"))
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    model.train()
    for step in range(2):
        loss, _ = criterion(model(images), labels)
        assert torch.isfinite(loss)
        loss.backward()
        if step == 0:  # task-stream methods: the last stage-end block's shared update feeds no decoder (by design)
            streams = [m for m in model.backbone.modules() if isinstance(m, TaskStreamBlock)]
            dead = {id(p) for n, p in streams[-1].block.named_parameters()
                    if ".shared." in f".{n}" or n.endswith("theta")} if streams else set()
            silent = [names[id(p)] for p in params if id(p) not in dead and (p.grad is None or not p.grad.any())]
            assert not silent, silent[:3]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert any(not torch.equal(before[id(p)], p) for p in params if "backbone" in names[id(p)]) or method == "degmix"
    assert all(isinstance(m, nn.Module) for m in model.backbone.model.blocks)


def test_the_degmix_protocol_gives_each_official_backbone_its_own_drop_path():
    """Official stochastic depth: ViT 0.0 (vit.py l.325), Swin 0.1 (DeMTG swin.py l.781). The protocol leaves
    model.drop_path_rate unset, so each slot keeps its own (timm's defaults are the official values)."""
    from degmix_tuning.training.config import ExperimentConfig
    from degmix_tuning.training.protocols import protocol_assignments

    rates = {}
    for backbone, kwargs in (("vit_b", {**TINY_VIT, "depth": 4}), ("tiny_swin", {})):
        base = ExperimentConfig(model=ModelConfig(backbone=backbone, backbone_kwargs=kwargs))
        cfg = base.override(protocol_assignments("degmix")[1:])
        assert cfg.model.drop_path_rate is None
        model = create_model(cfg.model)
        rates[backbone] = max((getattr(m, "drop_prob", 0.0) for m in model.backbone.modules()), default=0.0)
    assert rates["vit_b"] == 0.0 and rates["tiny_swin"] == pytest.approx(0.1)


# --- listing ---------------------------------------------------------------------------------------------------------

def test_models_lists_the_vit_presets_and_published_has_no_vit_figure(capsys):
    from degmix_tuning.reporting.published import published_flops, repeated_row

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("degmix_vit_b_nyud", "degmix_vit_l_nyud", "degmix_tuning_vit_b_nyud", "degmix_tuning_vit_l_nyud"):
        assert name in out
    assert published_flops("vit_b", "nyud") is None  # the README's ViT-B row is the Swin-L row repeated
    row, swin_l = repeated_row("vit_b", "nyud"), published_flops("swin_l", "nyud")
    assert (row.printed, row.params, row.repeats) == (swin_l.printed, swin_l.params, "swin_l")


def test_models_flops_table_says_there_is_no_vit_figure(capsys, monkeypatch):
    """The table and its notes, with the counting stubbed (the counts themselves: test_flops.py); rows may carry a
    label other than the preset name."""
    from degmix_tuning.reporting import flops

    rows = [("degmix_vit_b_nyud (interaction=official)",
             flops.PresetFlops("degmix_vit_b_nyud", "nyud", TASKS, (425, 560), "official", 251_230_000_000)),
            ("degmix_swin_t_nyud", flops.PresetFlops("degmix_swin_t_nyud", "nyud", TASKS, (425, 560), "global", 1))]
    monkeypatch.setattr(flops, "preset_flops_rows", lambda names, **kw: rows)
    assert main(["models", "--flops", "--no-matmul"]) == 0
    out = capsys.readouterr().out
    vit_row = next(line for line in out.splitlines() if "degmix_vit_b_nyud" in line)
    assert "251.23" in vit_row and "none (README repeats Swin-L)" in vit_row
    assert "no ViT FLOPs are published" in out


def test_the_official_key_tables_invert_each_other():
    """slot -> official layout -> slot gives back every key and tensor (import-official's refusals and the export
    both describe a ViT slot in the official keys)."""
    from degmix_tuning.backbones import create_backbone
    from degmix_tuning.backbones.vit import mmseg_vit_to_timm, slot_to_mmseg_vit

    slot = create_backbone("vit_b", depth=2).model.state_dict()
    official = slot_to_mmseg_vit(slot)
    assert "layers.1.attn.attn.in_proj_weight" in official and "patch_embed.projection.weight" in official
    back, dropped = mmseg_vit_to_timm(official)
    assert dropped == [] and back.keys() == slot.keys()
    assert all(back[k] is slot[k] for k in slot)
