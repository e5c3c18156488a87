"""peft interoperability (peft_format.py): `export --format peft` loads with plain peft onto the timm model of the
backbone slot and computes our adapted features bit for bit; `import-peft` reads it (or an adapter made with peft
itself) back into a run folder bit for bit; adapters of another method, targets or base model are refused in one line.
"""

from __future__ import annotations

import json
import logging

import peft
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from degmix_tuning.cli import main as cli_main
from degmix_tuning.models import create_model
from degmix_tuning.training.checkpoint import load_tuned, save_adapter
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.tuning import apply_tuning, trainable_state

PEFT_METHODS = ["lora", "dora", "loha", "lokr", "ia3"]
TIMM_NAME = "swin_tiny_patch4_window7_224"
# two blocks per stage, so every stage runs a shifted window too (the odd block)
DEPTHS = (2, 2, 2, 2)
LAYERS = 4 * len(DEPTHS) * DEPTHS[0]  # qkv, proj, fc1, fc2 in every block
# the timm model inside that `tiny_swin` slot, as a user builds it with plain timm (always_partition: keep the
# nominal window, as the slot does; strict_img_size off: any input size, shift masks made per call)
TIMM_KW = dict(num_classes=0, embed_dim=16, depths=DEPTHS, num_heads=(1, 1, 1, 1), window_size=4,
               always_partition=True, strict_img_size=False)
# stage maps 32/16/8/4, all multiples of the window: no padding anywhere, where the official padding the slot
# computes and plain timm's agree (at 100x76 or 425x560 they differ by design, up to ~0.3 after the stage norms)
SIZE = (128, 128)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """The 'pretrained' frozen weights: a seeded plain-timm model saved as a file both sides load."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "frozen.safetensors"
    save_file(timm.create_model(TIMM_NAME, **TIMM_KW).state_dict(), str(path))
    return path


def _timm_model(frozen):
    model = timm.create_model(TIMM_NAME, **TIMM_KW)
    model.load_state_dict(load_file(str(frozen)))
    return model.eval()


def _experiment(frozen, method, out, backbone="tiny_swin"):
    """A tiny run config; frozen=None keeps the backbone's random init (rebuilt from train.seed)."""
    weights = [f"model.checkpoint_path={frozen}"] if frozen else []
    exp = ExperimentConfig().override([f"model.backbone={backbone}", "model.head.dim=16", f"tuning={method}",
                                       f"train.output_dir={out}", *weights])
    if backbone == "tiny_swin":
        exp.model.backbone_kwargs = {"depths": list(DEPTHS)}
    return exp


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    """The tiny preset with the test's Swin depths, as a --config file (what a user passes for a custom model)."""
    from degmix_tuning.models.presets import get_preset

    cfg = get_preset("degmix_tuning_tiny_nyud")
    cfg.backbone_kwargs = {"depths": list(DEPTHS)}
    return cfg.save(tmp_path_factory.mktemp("config") / "model.json")


def _make_run(exp, method, **tuning_kwargs):
    """A run folder as training leaves it, with every trainable tensor moved off its init (adapters and head)."""
    exp.tuning_kwargs = tuning_kwargs
    torch.manual_seed(exp.train.seed)
    model = create_model(exp.model)
    apply_tuning(model, method, **tuning_kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    save_adapter(model, f"{exp.train.output_dir}/adapter.safetensors", exp.to_dict())
    exp.save(f"{exp.train.output_dir}/config.json")
    return model.eval()


def _their_features(timm_model, ours_backbone, x, rest):
    """Plain timm + peft features, with the slot's stage norms taken from degmix_head.safetensors."""
    feats = timm_model.forward_intermediates(x, indices=list(ours_backbone.out_indices), intermediates_only=True)
    if ours_backbone.stage_norms is None:
        return feats
    out = []
    for i, f in enumerate(feats):
        w, b = rest[f"backbone.stage_norms.{i}.weight"], rest[f"backbone.stage_norms.{i}.bias"]
        out.append(torch.nn.functional.layer_norm(f.permute(0, 2, 3, 1), w.shape, w, b, 1e-5).permute(0, 3, 1, 2))
    return out


@pytest.fixture(autouse=True)
def _fresh_info_handler(monkeypatch):
    """cli.main binds its info-line handler to the stderr of the moment; give each test its own (capsys swaps it)."""
    monkeypatch.setattr(logging.getLogger("degmix_tuning"), "handlers", [])


def _one_line_error(capsys, argv):
    """The error is one line on stderr (info lines, `[degmix-tuning] ...`, may precede it), exit code 1."""
    assert cli_main(argv) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("[degmix-tuning]")]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_export_loads_with_plain_peft_and_imports_back_bit_for_bit(tmp_path, frozen, method, capsys):
    model = _make_run(_experiment(frozen, method, tmp_path / "run"), method)
    out = tmp_path / "peft"
    assert cli_main(["export", str(tmp_path / "run"), "--format", "peft", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                               "degmix_head.safetensors"}
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == TIMM_NAME and len(saved["target_modules"]) == LAYERS
    assert all(t.startswith("layers.") for t in saved["target_modules"])

    # plain peft on plain timm: every adapter tensor loads, none is missing
    timm_model = _timm_model(frozen)
    theirs = peft.PeftModel.from_pretrained(timm_model, str(out)).eval()
    written = load_file(str(out / "adapter_model.safetensors"))
    assert peft.get_peft_model_state_dict(theirs, save_embedding_layers=False).keys() == written.keys()
    net = theirs.base_model.model
    # the adapted layers: same outputs, bit for bit
    adapted = [n for n, m in net.named_modules() if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)]
    assert len(adapted) == LAYERS
    for name in adapted:
        mine, their_layer = model.backbone.model.get_submodule(name), net.get_submodule(name)
        x = torch.randn(3, their_layer.get_base_layer().in_features)
        assert torch.equal(mine(x), their_layer(x)), name
    # the features of the whole backbone (stage norms from degmix_head.safetensors), bit for bit; shifted windows too
    assert sum(bool(getattr(m, "shift_size", (0,))[0]) for m in net.modules()) == len(DEPTHS)
    rest = load_file(str(out / "degmix_head.safetensors"))
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        ours, peft_feats = model.backbone(x), _their_features(net, model.backbone, x, rest)
    assert all(torch.equal(a, b) for a, b in zip(ours, peft_feats))
    # ...and the adapter changed them (the comparison is not between two unadapted backbones)
    with torch.no_grad():
        plain = _their_features(_timm_model(frozen), model.backbone, x, rest)
    assert not torch.equal(plain[-1], ours[-1])

    # import back: the same trainable state and outputs, bit for bit
    assert cli_main(["import-peft", str(out), "--out", str(tmp_path / "back")]) == 0
    assert "head: " in capsys.readouterr().out
    before, _ = load_tuned(tmp_path / "run")
    after, cfg = load_tuned(tmp_path / "back")
    a, b = trainable_state(before), trainable_state(after)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cfg.tuning == method
    with torch.no_grad():
        ya, yb = before.eval()(x), after.eval()(x)
    assert all(torch.equal(ya[t], yb[t]) for t in ya)
    provenance = json.loads((tmp_path / "back" / "imported_from.json").read_text())
    assert provenance["frozen_weights_as_exported"] is True and provenance["tuning"] == method


def test_a_trained_run_round_trips_through_peft(tmp_path, frozen, synthetic_cache):
    """The real `train` command (3 SGD steps), then export, plain-peft load and import."""
    from degmix_tuning.training.engine import train

    exp = _experiment(frozen, "lora", tmp_path / "run").override([
        "model.tasks=semseg,depth", "data.synthetic=true", "data.synthetic_n=8", "data.synthetic_size=64,64",
        "data.num_workers=0", "train.batch_size=4", "train.eval_batch_size=4", "train.lr=0.05", "train.max_steps=3",
        "train.eval_every=0", "train.checkpoint_every=0", "train.eval_at_start=false",
    ])
    exp.tuning_kwargs = {"r": 4}
    train(exp, show_progress=False)
    trained, _ = load_tuned(tmp_path / "run")
    lora_b = [v for k, v in trainable_state(trained).items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)  # trained off peft's zero init
    assert cli_main(["export", str(tmp_path / "run"), "--format", "peft", str(tmp_path / "peft")]) == 0
    theirs = peft.PeftModel.from_pretrained(_timm_model(frozen), str(tmp_path / "peft")).eval()
    rest = load_file(str(tmp_path / "peft" / "degmix_head.safetensors"))
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(
            trained.backbone(x), _their_features(theirs.base_model.model, trained.backbone, x, rest)))
    assert cli_main(["import-peft", str(tmp_path / "peft"), "--out", str(tmp_path / "back")]) == 0
    back, _ = load_tuned(tmp_path / "back")
    a, b = trainable_state(trained), trainable_state(back)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_adapter_made_with_peft_imports_with_its_settings(tmp_path, frozen, model_config):
    """A user's LoRA on plain timm (regex targets: qkv and fc1 of every block, r=4, alpha=16) -> a run whose backbone
    computes the peft model's features bit for bit; the head is a fresh seeded init (recorded as such)."""
    user = peft.get_peft_model(_timm_model(frozen), peft.LoraConfig(
        r=4, lora_alpha=16, lora_dropout=0.1, target_modules=r".*blocks\.\d+\.(attn\.qkv|mlp\.fc1)"))
    with torch.no_grad():
        for n, p in user.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.1)
    user.save_pretrained(str(tmp_path / "user"))
    assert cli_main(["import-peft", str(tmp_path / "user"), "--config", str(model_config), "--checkpoint-path",
                     str(frozen), "--method", "lora", "--out", str(tmp_path / "run")]) == 0
    model, cfg = load_tuned(tmp_path / "run")
    assert cfg.tuning == "lora"
    assert {k: cfg.tuning_kwargs[k] for k in ("r", "alpha", "dropout", "exclude")} == {
        "r": 4, "alpha": 16.0, "dropout": 0.1, "exclude": ["fc2", "proj"]}
    x = torch.randn(2, 3, *SIZE)
    user.eval()
    with torch.no_grad():
        ours = model.eval().backbone.model.forward_intermediates(x, indices=list(model.backbone.out_indices),
                                                                 intermediates_only=True)
        theirs = user.base_model.model.forward_intermediates(x, indices=list(model.backbone.out_indices),
                                                             intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    provenance = json.loads((tmp_path / "run" / "imported_from.json").read_text())
    assert provenance["head"].startswith("fresh init (seed 0")


def test_a_plain_timm_convnet_round_trips(tmp_path):
    """Not only Swin: lora on a random-init timm ConvNeXt slot (no stage norms, no block swap)."""
    from degmix_tuning.backbones import create_backbone

    exp = _experiment(None, "lora", tmp_path / "run", backbone="convnext_atto")
    model = _make_run(exp, "lora")
    assert cli_main(["export", str(tmp_path / "run"), "--format", "peft", str(tmp_path / "peft")]) == 0
    torch.manual_seed(exp.train.seed)  # the run's frozen weights: random init from its seed
    frozen_state = create_backbone("convnext_atto").model.state_dict()
    net = timm.create_model("convnext_atto", num_classes=0)
    missing, unexpected = net.load_state_dict(frozen_state, strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing), missing  # the pruned final norm only
    theirs = peft.PeftModel.from_pretrained(net, str(tmp_path / "peft")).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(
            model.backbone(x), _their_features(theirs.base_model.model, model.backbone, x, {})))
    assert cli_main(["import-peft", str(tmp_path / "peft"), "--out", str(tmp_path / "back")]) == 0
    a, b = trainable_state(model), trainable_state(load_tuned(tmp_path / "back")[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_vit_whose_qkv_timm_calls_through_f_linear_needs_the_switch(tmp_path, capsys):
    """timm's BEiT/EVA compute qkv with F.linear on its weight, which skips a peft layer on qkv; the slot switches them
    to call the module (tuning/structure.py route_through_modules) and the export says so: with the switch plain
    timm + peft computes our features, without it not."""
    from degmix_tuning.backbones import create_backbone

    arch = {"embed_dim": 32, "depth": 4, "num_heads": 2}
    exp = _experiment(None, "lora", tmp_path / "run", backbone="beit_base_patch16_224")
    exp.model.backbone_kwargs = arch
    model = _make_run(exp, "lora")
    assert cli_main(["export", str(tmp_path / "run"), "--format", "peft", str(tmp_path / "peft")]) == 0
    assert "qkv_bias_separate=True" in capsys.readouterr().out
    torch.manual_seed(exp.train.seed)
    frozen_state = create_backbone("beit_base_patch16_224", **arch).model.state_dict()
    x = torch.randn(1, 3, 224, 224)
    equal = {}
    for switch in (False, True):
        net = timm.create_model("beit_base_patch16_224", num_classes=0, **arch)
        net.load_state_dict(frozen_state, strict=False)
        for module in net.modules():
            if switch and getattr(module, "qkv_bias_separate", None) is False:
                module.qkv_bias_separate = True
        theirs = peft.PeftModel.from_pretrained(net, str(tmp_path / "peft")).eval()
        indices = list(model.backbone.out_indices)  # the slot's pyramid resampling after them has no parameters
        with torch.no_grad():
            ours = model.backbone.model.forward_intermediates(x, indices=indices, intermediates_only=True)
            peft_feats = theirs.base_model.model.forward_intermediates(x, indices=indices, intermediates_only=True)
        equal[switch] = all(torch.equal(a, b) for a, b in zip(ours, peft_feats))
    assert equal == {False: False, True: True}


# --- refusals: one line, exit code 1 ---------------------------------------------------------------------------------

def _user_adapter(frozen, folder, config, timm_name=TIMM_NAME, timm_kw=TIMM_KW):
    model = timm.create_model(timm_name, **timm_kw) if timm_name != TIMM_NAME else _timm_model(frozen)
    peft.get_peft_model(model, config).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("case", ["leaf_names", "other_method", "other_model", "named_other_model", "rslora",
                                  "some_blocks", "unsupported_type"])
def test_foreign_adapters_are_refused_in_one_line(tmp_path, frozen, model_config, capsys, case):
    folder = tmp_path / "adapter"
    blocks = r".*blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
    if case == "leaf_names":  # peft's usual leaf names also hit the patch embedding, outside the blocks
        _user_adapter(frozen, folder, peft.LoraConfig(target_modules=["qkv", "proj", "fc1", "fc2"]))
        expect = "patch_embed.proj"
    elif case == "other_method":
        _user_adapter(frozen, folder, peft.LoHaConfig(target_modules=blocks))
        expect = "LOHA adapter (degmix-tuning method 'loha'), not 'lora'"
    elif case == "other_model":  # made on a ViT: none of its layers exist in the Swin slot
        _user_adapter(frozen, folder, peft.LoraConfig(target_modules=r"blocks\.\d+\.attn\.qkv"),
                      "vit_tiny_patch16_224", dict(num_classes=0))
        expect = "another base model"
    elif case == "named_other_model":
        _user_adapter(frozen, folder, peft.LoraConfig(target_modules=blocks))
        saved = json.loads((folder / "adapter_config.json").read_text())  # as a hub model records its name
        saved["base_model_name_or_path"] = "timm/convnext_atto"
        (folder / "adapter_config.json").write_text(json.dumps(saved))
        expect = "made for the base model 'timm/convnext_atto'"
    elif case == "rslora":
        _user_adapter(frozen, folder, peft.LoraConfig(target_modules=blocks, use_rslora=True))
        expect = "use_rslora=True"
    elif case == "some_blocks":
        _user_adapter(frozen, folder, peft.LoraConfig(target_modules=r"layers\.0\.blocks\.0\.attn\.qkv"))
        expect = "in every block or in none"
    else:
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "VERA", "r": 4}))
        save_file({"x": torch.zeros(1)}, str(folder / "adapter_model.safetensors"))
        expect = "is a peft VERA adapter"
    args = ["import-peft", str(folder), "--config", str(model_config), "--checkpoint-path", str(frozen),
            "--out", str(tmp_path / "run")]
    if case == "other_method":
        args += ["--method", "lora"]
    line = _one_line_error(capsys, args)
    assert line.startswith("degmix-tuning import-peft: error:") and expect in line, line
    assert not (tmp_path / "run" / "adapter.safetensors").exists()


def test_export_refusals_and_other_frozen_weights(tmp_path, frozen, capsys):
    _make_run(_experiment(frozen, "degmix", tmp_path / "degmix"), "degmix")
    line = _one_line_error(capsys, ["export", str(tmp_path / "degmix"), "--format", "peft", str(tmp_path / "x")])
    assert "which peft does not implement" in line
    _make_run(_experiment(frozen, "lora", tmp_path / "run"), "lora")
    assert cli_main(["export", str(tmp_path / "run"), "--format", "peft", str(tmp_path / "peft")]) == 0
    line = _one_line_error(capsys, ["export", str(tmp_path / "run"), "--format", "peft", str(tmp_path / "peft")])
    assert "--overwrite" in line
    # the exported head was trained on `frozen`: another frozen backbone is refused (its stage norms / fingerprint)
    torch.manual_seed(7)
    other = tmp_path / "other.safetensors"
    save_file(timm.create_model(TIMM_NAME, **TIMM_KW).state_dict(), str(other))
    line = _one_line_error(capsys, ["import-peft", str(tmp_path / "peft"), "--checkpoint-path", str(other),
                                    "--out", str(tmp_path / "back")])
    assert "other frozen backbone weights" in line and "--allow-backbone-mismatch" in line
