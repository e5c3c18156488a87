"""Configs: JSON round trip, typed CLI overrides, and clear errors for bad files and values."""

from __future__ import annotations

import json

import pytest

from degmix_tuning.training.config import ExperimentConfig, TrainConfig
from degmix_tuning.training.recipe import SYNTHETIC_DEMO, build_parser, config_from_args


def test_json_round_trip_keeps_every_field(tmp_path):
    cfg = ExperimentConfig().override(["model.tasks=semseg,depth,normals", "train.lr=0.02", "data.crop_size=64,96",
                                       "model.head.interaction=pixel", "train.clip_grad_norm=1.5"])
    path = cfg.save(tmp_path / "c.json")
    back = ExperimentConfig.load(path)
    assert back == cfg
    assert back.model.tasks == ("semseg", "depth", "normals")
    assert back.data.crop_size == (64, 96) and back.train.lr == 0.02 and back.model.head.interaction == "pixel"


def test_overrides_are_coerced_to_field_types():
    cfg = ExperimentConfig().override(["train.max_steps=12", "train.eval_at_start=yes", "train.clip_grad_norm=null"])
    assert cfg.train.max_steps == 12 and isinstance(cfg.train.max_steps, int)
    assert cfg.train.eval_at_start is True and cfg.train.clip_grad_norm is None
    with pytest.raises(ValueError, match="max_steps"):
        ExperimentConfig().override(["train.max_steps=1.5"])
    with pytest.raises(KeyError, match="no config field 'train.lrr'"):
        ExperimentConfig().override(["train.lrr=1"])
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")


def test_bad_config_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ExperimentConfig.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        ExperimentConfig.load(broken)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"model": {}, "nonsense": 1}))
    with pytest.raises(KeyError, match="nonsense"):
        ExperimentConfig.load(unknown)


def test_dataset_mismatch_is_refused():
    with pytest.raises(ValueError, match="model.dataset='nyud' but data.dataset='pascal'"):
        ExperimentConfig().override(["data.dataset=pascal"])


def test_recipe_flag_precedence(tmp_path):
    saved = ExperimentConfig().override(["train.lr=0.3", "train.seed=7"]).save(tmp_path / "run.json")
    args = build_parser("nyud").parse_args(
        ["--config", str(saved), "--synthetic", "--lr", "0.02", "--set", "train.seed=9", "--tasks", "depth"]
    )
    cfg = config_from_args(args, "nyud")
    assert SYNTHETIC_DEMO["train.lr"] != 0.02 and cfg.train.lr == 0.02  # explicit flag beats the demo and the file
    assert cfg.train.seed == 9  # --set beats the file
    assert cfg.train.max_steps == SYNTHETIC_DEMO["train.max_steps"] and cfg.data.synthetic  # demo beats the file
    assert cfg.model.tasks == ("depth",)


def test_cli_help_imports_no_torch():
    """`degmix-tuning --help` and every subcommand parser build without torch/timm (lazy imports): help is instant."""
    import subprocess
    import sys

    code = ("import sys, degmix_tuning, degmix_tuning.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_package_names_resolve_lazily():
    import degmix_tuning

    assert degmix_tuning.create_model.__name__ == "create_model"
    assert set(degmix_tuning.__all__) <= set(dir(degmix_tuning))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        degmix_tuning.nope  # noqa: B018


def test_models_table_is_not_cut_at_80_columns(monkeypatch, capsys):
    from degmix_tuning.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "--preset", "degmix_tuning_swin_b_pascal"]) == 0
    out = capsys.readouterr().out
    assert "degmix_tuning_swin_b_pascal" in out and "semseg,human_parts,sal,normals" in out


def test_models_methods_lists_every_registered_tuning_method(capsys):
    from degmix_tuning.cli import main
    from degmix_tuning.tuning import list_tuning_methods

    assert main(["models", "methods"]) == 0
    listed = capsys.readouterr().out.split(":", 1)[1].replace("\n", " ").split(",")
    assert [m.strip() for m in listed] == list_tuning_methods() and len(listed) >= 12


def test_synthetic_runs_of_other_backbones_get_their_own_folder():
    from degmix_tuning.training.recipe import build_parser, config_from_args

    def out(*argv):
        return config_from_args(build_parser("nyud").parse_args(list(argv)), "nyud").train.output_dir

    assert out("--synthetic") == "runs/synthetic_nyud"
    assert out("--synthetic", "--backbone", "convnext_tiny") == "runs/synthetic_nyud_convnext_tiny"
    assert out("--synthetic", "--backbone", "convnext_tiny", "--output-dir", "mine") == "mine"


@pytest.mark.parametrize("override", ["train.lr=nan", "train.lr=inf", "train.checkpoint_every=-1",
                                      "train.eval_every=-5", "train.keep_checkpoints=0", "train.momentum=nan"])
def test_non_finite_and_negative_train_values_are_refused(override):
    from degmix_tuning.training.config import ExperimentConfig

    with pytest.raises(ValueError, match=override.split("=")[0]):
        ExperimentConfig().override([override])


def test_non_finite_input_is_one_clear_error(tiny_model):
    import torch

    x = torch.randn(1, 3, 32, 32)
    x[0, 1, 5, 7] = float("nan")
    x[0, 2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="2 NaN/inf values"):
        tiny_model(x)


def test_data_paths_are_recorded_absolute(tmp_path, monkeypatch):
    from degmix_tuning.data.config import DataConfig

    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(root="data/NYUDv2")
    assert cfg.root == str(tmp_path / "data" / "NYUDv2")
    assert DataConfig.from_dict(cfg.to_dict()).root == cfg.root
