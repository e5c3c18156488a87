"""The backbone slot: timm models by name, feature contract, weights from local files, freezing."""

from __future__ import annotations

import pytest
import torch

from degmix_tuning.backbones import create_backbone, freeze_module, list_backbones, state_fingerprint


@pytest.mark.parametrize("name", ["tiny_swin", "resnet18", "convnext_atto", "vit_tiny_patch16_224"])
@pytest.mark.parametrize("size", [(64, 96), (70, 90), (33, 47)])
def test_maps_match_feature_info(name, size):
    bb = create_backbone(name).eval()
    with torch.no_grad():
        feats = bb(torch.randn(2, 3, *size))
    assert len(feats) == len(bb.feature_info) == 4
    for f, info in zip(feats, bb.feature_info):
        assert f.shape[0] == 2 and f.shape[1] == info.num_chs
        # maps are cropped back to ceil(size / stride), whatever padding the model needed
        assert tuple(f.shape[-2:]) == (-(-size[0] // info.reduction), -(-size[1] // info.reduction))
    assert [i.reduction for i in bb.feature_info] == [4, 8, 16, 32]


@pytest.mark.parametrize("size", [(96, 128), (70, 90)])
def test_a_patch_14_vit_pyramid_has_the_declared_strides(size):
    """14 is no power of two: the parameter-free pyramid resamples to ceil(padded / stride), not by 14 // 4 = 3."""
    bb = create_backbone("vit_small_patch14_dinov2", depth=4, embed_dim=32, num_heads=2, img_size=(98, 126)).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        feats = bb(x)
    bb.check_features(x, feats)
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-size[0] // r), -(-size[1] // r)) for r in (4, 8, 16, 32)]


def test_swin_t_official_shapes_at_nyud_size():
    bb = create_backbone("swin_t").eval()
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, 425, 560))
    assert [tuple(f.shape[1:]) for f in feats] == [(96, 107, 140), (192, 54, 70), (384, 27, 35), (768, 14, 18)]


def test_swin_backbone_counts_match_official_mmseg_swin():
    # timm Swin without classifier/final norm + one LayerNorm per stage output == the mmseg Swin DeGMix uses
    assert sum(p.numel() for p in create_backbone("swin_t").parameters()) == 27_520_698
    assert sum(p.numel() for p in create_backbone("swin_s").parameters()) == 48_838_602


def test_unknown_backbone_names_close_matches():
    with pytest.raises(KeyError, match="swin_t"):
        create_backbone("swin_tt")


def test_registered_names_are_listed():
    assert {"swin_t", "swin_s", "swin_b", "swin_l", "tiny_swin"} <= set(list_backbones())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_checkpoint_loads_strictly(tmp_path, suffix):
    src = create_backbone("resnet18")
    sd = {k: v.clone() for k, v in src.model.state_dict().items()}
    # a checkpoint as users have it: a full timm model state dict (classifier included)
    import timm

    full = timm.create_model("resnet18", num_classes=10)
    full_sd = full.state_dict()
    full_sd.update({k: v for k, v in sd.items() if k in full_sd})
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": full_sd}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in full_sd.items()}, str(path))
    loaded = create_backbone("resnet18", checkpoint_path=str(path))
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_missing_checkpoint_file_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_backbone("resnet18", checkpoint_path=str(missing))


def test_freeze_stops_grads_and_keeps_eval():
    bb = freeze_module(create_backbone("tiny_swin"))
    assert not any(p.requires_grad for p in bb.parameters())
    assert not bb.training
    before = state_fingerprint(bb)
    out = sum(f.sum() for f in bb(torch.randn(1, 3, 32, 32)))
    assert not out.requires_grad
    after = state_fingerprint(bb)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_registered_custom_backbone_drives_the_head():
    from torch import nn

    from degmix_tuning import DeGMixConfig, ModelConfig, create_model
    from degmix_tuning.backbones import BACKBONES, FeatureBackbone, FeatureInfo, register_backbone

    class TwoLevelNet(FeatureBackbone):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 4, stride=4)
            self.down = nn.Conv2d(8, 24, 2, stride=2)
            self.feature_info = (FeatureInfo(8, 4, "stem"), FeatureInfo(24, 8, "down"))
            self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

        def forward(self, x):
            a = self.stem(x)
            return [a, self.down(a)]

    if "test_two_level" not in BACKBONES:
        register_backbone("test_two_level")(lambda **kw: TwoLevelNet())
    model = create_model(ModelConfig(backbone="test_two_level", tasks=("semseg",), head=DeGMixConfig(dim=16)))
    assert model.head.fusion.proj.in_features == 32  # 8 + 24 channels, read from feature_info
    assert model.head.heads["semseg"].bottleneck[0].out_channels == 32 // 8
    assert model(torch.randn(1, 3, 40, 48))["semseg"].shape == (1, 40, 40, 48)
    with pytest.raises(KeyError, match="already registered"):
        register_backbone("test_two_level")(lambda **kw: TwoLevelNet())


@pytest.mark.parametrize("name", list_backbones())
def test_every_registered_backbone_keeps_the_slot_contract(name):
    """timm's test_models idea: every registered backbone returns what its feature_info declares."""
    bb = create_backbone(name).eval()
    reductions = [f.reduction for f in bb.feature_info]
    assert reductions == sorted(reductions) and all(f.num_chs > 0 for f in bb.feature_info)
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, 70, 90))
    bb.check_features(None, feats)
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-70 // r), -(-90 // r)) for r in reductions]


def test_contract_violations_are_refused():
    """timm's FeatureInfo asserts, at construction: positive channels/strides, strides never decreasing; and the real
    maps on the first forward: count, channels, and ceil(input / stride) sizes. Each is one ValueError line."""
    from torch import nn

    from degmix_tuning import DeGMixConfig, ModelConfig, create_model
    from degmix_tuning.backbones import BACKBONES, FeatureBackbone, FeatureInfo, register_backbone
    from degmix_tuning.tuning import apply_tuning

    with pytest.raises(ValueError, match="positive"):
        FeatureInfo(0, 4)
    with pytest.raises(ValueError, match="positive"):
        FeatureInfo(8, True)

    class Reversed(FeatureBackbone):
        def __init__(self):
            super().__init__()
            self.feature_info = (FeatureInfo(8, 8, "a"), FeatureInfo(8, 4, "b"))

    class Plain(FeatureBackbone):
        def __init__(self, chans=8, stride=4, declared=4):
            super().__init__()
            self.conv = nn.Conv2d(3, chans, stride, stride=stride)
            self.feature_info = (FeatureInfo(8, declared, "conv"),)

        def forward(self, x):
            return [self.conv(x)]

    with pytest.raises(ValueError, match="decreasing strides"):
        Reversed()  # at construction, however the backbone is built
    with pytest.raises(ValueError, match="no feature maps"):
        Plain().feature_info = ()
    with pytest.raises(ValueError, match="not FeatureInfo"):
        Plain().feature_info = [{"num_chs": 8, "reduction": 4}]

    for name, build in (("test_wrong_channels", lambda: Plain(chans=5)),
                        ("test_wrong_stride", lambda: Plain(stride=8, declared=4))):
        if name not in BACKBONES:
            register_backbone(name)(lambda build=build, **kw: build())
    model = create_model(ModelConfig(backbone="test_wrong_channels", tasks=("semseg",), head=DeGMixConfig(dim=8)))
    with pytest.raises(ValueError, match="expected NCHW with 8 channels"):
        model(torch.randn(1, 3, 32, 32))
    model = create_model(ModelConfig(backbone="test_wrong_stride", tasks=("semseg",), head=DeGMixConfig(dim=8)))
    with pytest.raises(ValueError, match=r"map 0 is 4x5 for a 32x40 input, but its declared stride 4 needs 8x10"):
        model(torch.randn(1, 3, 32, 40))
    with pytest.raises(ValueError, match="declared stride 4 needs"):  # refused at build time, before any training
        apply_tuning(model, "degmix")


def test_map_sizes_are_checked_once_per_input_size():
    bb = create_backbone("tiny_swin").eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        feats = bb(x)
    bb.check_features(x, feats)
    assert bb._checked_sizes == {(40, 56)}
    bb.check_features(x, [f[..., :1, :1] for f in feats])  # a known size is not checked again (cheap per step)
    with pytest.raises(ValueError, match="needs 11x14"):
        bb.check_features(torch.randn(1, 3, 41, 56), feats)


def test_inception_v3_is_caught_its_maps_are_smaller_than_its_strides():
    bb = create_backbone("inception_v3").eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = bb(x)
    with pytest.raises(ValueError, match=r"'inception_v3' map 0 is 20x28 for a 96x128 input.*needs 24x32"):
        bb.check_features(x, feats)


# --- backbones from other packages: entry points and --import ---------------------------------------------------

PLUGIN_MODULE = '''
from torch import nn
from degmix_tuning.backbones import FeatureBackbone, FeatureInfo, register_backbone


class {cls}(FeatureBackbone):
    def __init__(self, width=8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 4, stride=4)
        self.down = nn.Conv2d(width, 2 * width, 2, stride=2)
        self.feature_info = (FeatureInfo(width, 4, "stem"), FeatureInfo(2 * width, 8, "down"))

    def forward(self, x):
        a = self.stem(x)
        return [a, self.down(a)]


def build(**kwargs):
    return {cls}(**kwargs)
{extra}
'''


def test_entry_point_backbone_registers_without_an_import(tmp_path, monkeypatch):
    """A distribution declaring `[degmix_tuning.backbones]` is found through importlib.metadata (nothing installed)."""
    import degmix_tuning.backbones as backbones

    (tmp_path / "ep_plugin_net.py").write_text(PLUGIN_MODULE.format(cls="EntryPointNet", extra=""))
    dist = tmp_path / "ep_plugin_net-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin-net\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[degmix_tuning.backbones]\nep_plugin_net = ep_plugin_net:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(backbones, "_loaded_groups", set())
    assert "ep_plugin_net" in list_backbones()
    bb = create_backbone("ep_plugin_net", width=4)
    assert type(bb).__name__ == "EntryPointNet" and bb.channels == [4, 8]


def test_import_flag_registers_a_backbone_for_the_cli(tmp_path, monkeypatch, capsys):
    from degmix_tuning.cli import main

    module = tmp_path / "my_two_level.py"
    module.write_text(PLUGIN_MODULE.format(cls="MyTwoLevel", extra='\nregister_backbone("my_two_level")(build)\n'))
    monkeypatch.syspath_prepend(str(tmp_path))
    # the command fails on the missing run folder, after the import: the backbone is registered by then
    assert main(["--import", str(module), "evaluate", str(tmp_path / "no_run")]) == 1
    assert "my_two_level" in list_backbones()
    assert main(["evaluate", str(tmp_path / "no_run"), "--import", "no_such_module_xyz"]) == 1
    assert "module 'no_such_module_xyz' not found" in capsys.readouterr().err


def test_pretrained_without_network_is_one_clear_line(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # nothing cached
    # the suite runs with HF_HUB_OFFLINE=1: the hub library refuses at once, we say what to do
    with pytest.raises(ValueError, match=r"could not load the pretrained weights of 'resnet18'.*--checkpoint-path"):
        create_backbone("resnet18", pretrained=True)
    # online mode but the hub does not resolve: fail at once instead of ~50 s of retries
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def no_dns(*args, **kwargs):
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(ValueError, match="not in the local hub cache and the hub is unreachable"):
        create_backbone("resnet18", pretrained=True)
