"""`swin_synthetic`: the packaged weights load bit-exactly, match their recorded fingerprint and provenance, the
random init of the same architecture stays reachable, and the synthetic demo picks it when no backbone is named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from degmix_tuning.backbones import create_backbone, list_backbones
from degmix_tuning.backbones.base import state_digest, weights_digest
from degmix_tuning.backbones.swin_synthetic import (
    ARCHITECTURE, METADATA_KEY, PROVENANCE_FILE, WEIGHTS_FILE, read_packaged_weights,
)


@pytest.fixture(scope="module")
def pretrained():
    return create_backbone("swin_synthetic", pretrained=True).eval()


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a tensor (so -0.0 != 0.0 and every NaN payload counts)."""
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def test_packaged_weights_load_bit_exactly(pretrained):
    on_disk = load_file(str(WEIGHTS_FILE))
    loaded = pretrained.state_dict()
    assert set(loaded) == set(on_disk)
    for key, tensor in on_disk.items():
        assert loaded[key].dtype == tensor.dtype == torch.float32 and loaded[key].shape == tensor.shape, key
        assert torch.equal(_bits(loaded[key]), _bits(tensor)), key


def test_packaged_weights_match_their_recorded_fingerprint(pretrained):
    cfg = pretrained.pretrained_cfg
    with safe_open(str(WEIGHTS_FILE), framework="pt") as f:
        recorded = json.loads(f.metadata()[METADATA_KEY])
    assert weights_digest(pretrained) == recorded["sha256"] == cfg["sha256"]
    assert json.loads(PROVENANCE_FILE.read_text()) == recorded  # the readable sidecar says the same
    assert recorded["params"] == sum(p.numel() for p in pretrained.parameters())


def test_provenance_says_how_the_weights_were_made(pretrained):
    cfg = pretrained.pretrained_cfg
    assert cfg["command"].startswith("python recipes/pretrain_synthetic.py")
    assert cfg["steps"] == cfg["arguments"]["steps"] > 0
    assert cfg["data"]["flavour"] == "pascal" and cfg["data"]["seed"] != 0  # not the demos' scenes
    assert "depth" not in cfg["tasks"]  # the NYUD demo's depth is a task the backbone never trained on
    assert set(cfg["val_metrics"]) == set(cfg["tasks"])
    assert cfg["val_metrics"]["semseg"]["miou"] > cfg["untrained_val_metrics"]["semseg"]["miou"]
    assert tuple(cfg["mean"]) == (0.485, 0.456, 0.406) and tuple(cfg["std"]) == (0.229, 0.224, 0.225)
    assert cfg["weights"] == "packaged swin_synthetic.safetensors"


def test_backbone_keeps_the_slot_contract(pretrained):
    assert "swin_synthetic" in list_backbones()
    assert pretrained.channels == [32, 64, 128, 256] and pretrained.strides == [4, 8, 16, 32]
    with torch.no_grad():
        feats = pretrained(torch.randn(1, 3, 70, 90))
    pretrained.check_features(None, feats)
    assert [tuple(f.shape[-2:]) for f in feats] == [(18, 23), (9, 12), (5, 6), (3, 3)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_random_init_is_the_same_architecture_with_other_weights(pretrained):
    random = create_backbone("swin_synthetic")
    assert random.pretrained_cfg["weights"] == "random init" and "sha256" not in random.pretrained_cfg
    shapes = {k: v.shape for k, v in pretrained.state_dict().items()}
    assert {k: v.shape for k, v in random.state_dict().items()} == shapes
    assert weights_digest(random) != pretrained.pretrained_cfg["sha256"]


def test_checkpoint_path_loads_other_weights_of_the_architecture(tmp_path, pretrained):
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in pretrained.state_dict().items()}, str(path))
    again = create_backbone("swin_synthetic", checkpoint_path=str(path))
    assert weights_digest(again) == pretrained.pretrained_cfg["sha256"]
    with pytest.raises(ValueError, match="fixed architecture.*tiny_swin"):
        create_backbone("swin_synthetic", embed_dim=48)
    assert create_backbone("swin_synthetic", depths=[2, 2, 2, 2]).channels == [32, 64, 128, 256]  # same, as a list


def test_missing_or_altered_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="packaged weights of 'swin_synthetic' not found.*reinstall"):
        read_packaged_weights(tmp_path / "swin_synthetic.safetensors")
    state, provenance = read_packaged_weights()
    key = sorted(state)[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] += 1.0
    altered = tmp_path / "altered.safetensors"
    save_file(state, str(altered), metadata={METADATA_KEY: json.dumps(provenance)})
    with pytest.raises(ValueError, match="do not match their recorded sha256"):
        read_packaged_weights(altered)
    assert state_digest(state) != provenance["sha256"]


def test_package_data_ships_the_weights():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["degmix_tuning.backbones"]
    package_dir = WEIGHTS_FILE.parents[1]
    shipped = {p for pattern in patterns for p in package_dir.glob(pattern)}
    assert {WEIGHTS_FILE, PROVENANCE_FILE} <= shipped


def test_synthetic_demo_uses_swin_synthetic_unless_a_backbone_is_named():
    from degmix_tuning.training.recipe import build_parser, config_from_args

    def model(*argv, dataset="nyud"):
        cfg = config_from_args(build_parser(dataset).parse_args(list(argv)), dataset)
        return cfg.model.backbone, cfg.model.pretrained, cfg.train.output_dir

    assert model("--synthetic") == ("swin_synthetic", True, "runs/synthetic_nyud")
    assert model("--synthetic", dataset="pascal") == ("swin_synthetic", True, "runs/synthetic_pascal")
    assert model("--synthetic", "--backbone", "convnext_tiny") == ("convnext_tiny", False,
                                                                    "runs/synthetic_nyud_convnext_tiny")
    assert model("--synthetic", "--backbone", "swin_synthetic") == ("swin_synthetic", False,  # random init
                                                                     "runs/synthetic_nyud_swin_synthetic")
    assert model("--synthetic", "--pretrained") == ("swin_t", True, "runs/synthetic_nyud_swin_t")  # hub Swin-T
    assert model("--synthetic", "--set", "model.backbone=tiny_swin")[:2] == ("tiny_swin", False)
    assert model("--synthetic", "--preset", "degmix_tuning_tiny_nyud")[:2] == ("tiny_swin", False)
    assert model("--data-root", "/data/NYUDv2")[:2] == ("swin_t", False)  # real data: the preset's Swin-T


def test_pascal_demo_is_shorter_than_nyud_s():
    from degmix_tuning.training.recipe import SYNTHETIC_DEMO, build_parser, config_from_args

    steps = {d: config_from_args(build_parser(d).parse_args(["--synthetic"]), d).train.max_steps
             for d in ("nyud", "pascal")}
    assert steps["nyud"] == SYNTHETIC_DEMO["train.max_steps"] and steps["pascal"] < steps["nyud"]  # 4 tasks, not 2


def test_models_command_lists_it(capsys):
    from degmix_tuning.cli import main

    assert main(["models", "backbones"]) == 0
    assert "swin_synthetic" in capsys.readouterr().out


def test_architecture_is_tiny_swin_family():
    tiny = create_backbone("tiny_swin", **ARCHITECTURE)
    ours = create_backbone("swin_synthetic")
    assert {k: v.shape for k, v in tiny.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


def _pretrain_recipe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "recipes" / "pretrain_synthetic.py"
    spec = importlib.util.spec_from_file_location("pretrain_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_defaults_are_the_recorded_command(pretrained):
    """`python recipes/pretrain_synthetic.py` with no flag is what made the packaged weights."""
    recorded = pretrained.pretrained_cfg
    defaults = vars(_pretrain_recipe().build_parser().parse_args([]))
    assert recorded["command"] == "python recipes/pretrain_synthetic.py"
    assert recorded["arguments"] == {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}


def test_the_recipe_writes_weights_that_load_as_swin_synthetic(tmp_path, synthetic_cache, capsys):
    recipe = _pretrain_recipe()
    out = tmp_path / "weights"
    code = recipe.main(["--steps", "2", "--n-scenes", "8", "--size", "32", "48", "--batch-size", "2",
                        "--head-dim", "16", "--num-workers", "0", "--eval-every", "0",
                        "--output-dir", str(tmp_path / "run"), "--weights-out", str(out)])
    assert code == 0 and "swin_synthetic.safetensors" in capsys.readouterr().out
    state, provenance = read_packaged_weights(out / "swin_synthetic.safetensors")
    assert provenance["steps"] == 2 and provenance["data"]["n"] == 8 and set(provenance["val_metrics"]) == {
        "semseg", "human_parts", "sal", "normals"}
    assert json.loads((out / "swin_synthetic.json").read_text()) == provenance
    again = create_backbone("swin_synthetic", checkpoint_path=str(out / "swin_synthetic.safetensors"))
    assert weights_digest(again) == provenance["sha256"] == state_digest(state)
