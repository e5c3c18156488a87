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
    from torch import nn

    from degmix_tuning import DeGMixConfig, ModelConfig, create_model
    from degmix_tuning.backbones import BACKBONES, FeatureBackbone, FeatureInfo, register_backbone

    with pytest.raises(ValueError, match="positive"):
        FeatureInfo(0, 4)

    class Reversed(FeatureBackbone):
        def __init__(self, chans=8):
            super().__init__()
            self.conv = nn.Conv2d(3, chans, 4, stride=4)
            self.feature_info = (FeatureInfo(8, 8, "a"), FeatureInfo(8, 4, "b"))

        def forward(self, x):
            return [self.conv(x), self.conv(x)]

    class WrongChannels(Reversed):
        def __init__(self):
            super().__init__(chans=5)
            self.feature_info = (FeatureInfo(8, 4, "conv"),)

        def forward(self, x):
            return [self.conv(x)]

    for name, cls in (("test_reversed", Reversed), ("test_wrong_channels", WrongChannels)):
        if name not in BACKBONES:
            register_backbone(name)(lambda cls=cls, **kw: cls())
    with pytest.raises(TypeError, match="decreasing strides"):
        create_backbone("test_reversed")
    model = create_model(ModelConfig(backbone="test_wrong_channels", tasks=("semseg",), head=DeGMixConfig(dim=8)))
    with pytest.raises(RuntimeError, match="expected NCHW with 8 channels"):
        model(torch.randn(1, 3, 32, 32))


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
