"""`--import` plugin modules are recorded in the run config, so evaluate / predict / resume find the backbone."""

from __future__ import annotations

import json
import subprocess
import sys

import degmix_tuning.runtime as runtime
from degmix_tuning.training.recipe import main as recipe_main

PLUGIN = '''
from torch import nn
from degmix_tuning.backbones import FeatureBackbone, FeatureInfo, register_backbone


class RecordedNet(FeatureBackbone):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.down = nn.Conv2d(8, 16, 2, stride=2)
        self.feature_info = (FeatureInfo(8, 4, "stem"), FeatureInfo(16, 8, "down"))
        self.pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

    def forward(self, x):
        a = self.stem(x)
        return [a, self.down(a)]


@register_backbone("recorded_net")
def recorded_net(**kwargs):
    return RecordedNet()
'''


def test_an_imported_backbone_is_found_again_by_evaluate_without_import(tmp_path, synthetic_cache, monkeypatch):
    monkeypatch.setattr(runtime, "IMPORTED_PLUGINS", [])  # this process's record starts empty
    module = tmp_path / "plugins" / "recorded_plugin.py"
    module.parent.mkdir()
    module.write_text(PLUGIN)
    out = tmp_path / "run"
    code = recipe_main("nyud", [
        "--synthetic", "--import", str(module), "--backbone", "recorded_net", "--head-dim", "16", "--max-steps", "2",
        "--batch-size", "2", "--output-dir", str(out), "--no-progress", "--set", "data.synthetic_n=24",
        "--set", "data.synthetic_size=48,64", "--set", "data.num_workers=0", "--set", "train.eval_at_start=false",
        "--set", "train.max_eval_batches=1", "--set", "train.checkpoint_every=0",
    ])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["imports"] == [str(module.resolve())]
    # a new process that was never told about the plugin, run from another folder
    result = subprocess.run([sys.executable, "-m", "degmix_tuning.cli", "evaluate", str(out), "--eval-workers", "1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**__import__("os").environ, "DEGMIX_CACHE": str(synthetic_cache)})
    assert result.returncode == 0, result.stderr
    assert "semseg" in result.stdout
