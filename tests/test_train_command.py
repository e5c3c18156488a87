"""`degmix-tuning train <dataset>` (commands/train.py) is the recipe's run: same weights, same one-line errors and
exit codes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from degmix_tuning.cli import main as cli_main
from degmix_tuning.errors import EXIT_RECIPE
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.recipe import main as recipe_main

TINY = [
    "model.backbone=tiny_swin", "model.head.dim=16", "model.tasks=semseg,depth", "data.synthetic=true",
    "data.synthetic_n=24", "data.synthetic_size=48,64", "data.num_workers=0", "train.batch_size=4",
    "train.eval_batch_size=6", "train.lr=0.05", "train.max_steps=3", "train.eval_every=0", "train.checkpoint_every=0",
    "train.eval_at_start=false",
]


def test_train_subcommand_trains_exactly_what_the_recipe_trains(tmp_path, synthetic_cache):
    config = ExperimentConfig().override(TINY).save(tmp_path / "tiny.json")
    flags = ["--config", str(config), "--no-progress"]
    assert cli_main(["train", "nyud", *flags, "--output-dir", str(tmp_path / "cli")]) == 0
    assert recipe_main("nyud", [*flags, "--output-dir", str(tmp_path / "recipe")]) == 0
    via_cli, via_recipe = (load_file(tmp_path / name / "adapter.safetensors") for name in ("cli", "recipe"))
    assert via_cli.keys() == via_recipe.keys() and len(via_cli) > 10
    assert all(torch.equal(via_cli[k], via_recipe[k]) for k in via_cli)
    given = ExperimentConfig.load(config)
    assert ExperimentConfig.load(tmp_path / "cli" / "config.json").train.max_steps == given.train.max_steps


@pytest.mark.parametrize("entry", ["cli", "recipe"])
def test_missing_data_is_one_line_with_the_recipe_exit_code(tmp_path, capsys, entry):
    args = ["--output-dir", str(tmp_path / "run")]
    code = cli_main(["train", "pascal", *args]) if entry == "cli" else recipe_main("pascal", args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_RECIPE and len(err) == 1
    assert "data validate --dataset pascal" in err[0] and "--synthetic" in err[0]
    assert err[0].startswith("degmix-tuning train: error:" if entry == "cli" else "tune_pascal: error:")
    assert not (tmp_path / "run").exists()  # nothing recorded for a run that did not happen
    with pytest.raises(FileNotFoundError):
        cli_main(["train", "pascal", *args, "--debug"])
