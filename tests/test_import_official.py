"""`import-official`: released official DeGMix checkpoints -> run folders, checked against the official code's outputs.

The fixture (tests/fixtures/official_degmix, see its README) was produced by running the official DeMTG code: a
Lightning-layout checkpoint of a tiny Swin + DemtHead and the float64 outputs of that model on three images.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from degmix_tuning.cli import main
from degmix_tuning.models import DeGMixConfig, DeGMixHead, ModelConfig
from degmix_tuning.official import convert_head_state, import_official, official_tasks, read_official_checkpoint
from degmix_tuning.training.checkpoint import load_tuned

FIXTURE = Path(__file__).parent / "fixtures" / "official_degmix"
CKPT = FIXTURE / "demtg_tiny_nyud.ckpt"
TAGS = ("85x112", "64x96", "97x131")
TOL = 1e-8


def fixture_model_config(freeze_backbone: bool = False) -> ModelConfig:
    """The model the fixture was generated with (fixture README, "Model")."""
    return ModelConfig(
        backbone="tiny_swin", backbone_kwargs={"depths": [2, 2, 2, 2]}, dataset="nyud", tasks=("semseg", "depth"),
        head=DeGMixConfig(dim=32, interaction="official", query_attention="pixel"), freeze_backbone=freeze_backbone,
    )


@pytest.fixture(scope="module")
def official():
    return load_file(str(FIXTURE / "inputs_outputs.safetensors"))


@pytest.fixture(scope="module")
def official_state():
    return torch.load(CKPT, map_location="cpu", weights_only=True)


def _max_diffs(model_head: DeGMixHead, run, official, tag: str) -> dict[str, float]:
    """Max abs differences of the pre-upsampling logits and the outputs; `run(image)` returns the model outputs."""
    grids = {}
    hooks = [model_head.heads[t].logits.register_forward_hook(lambda m, i, o, t=t: grids.__setitem__(t, o))
             for t in model_head.tasks]
    try:
        with torch.no_grad():
            out = run(official[f"{tag}/image"])
    finally:
        for h in hooks:
            h.remove()
    return {
        "semseg_grid": (grids["semseg"] - official[f"{tag}/semseg_grid"]).abs().max().item(),
        "depth_grid": (grids["depth"] - official[f"{tag}/depth_grid"]).abs().max().item(),
        "semseg_sel": (out["semseg"][:, [0, 39]] - official[f"{tag}/semseg_sel"]).abs().max().item(),
        "depth": (out["depth"] - official[f"{tag}/depth"]).abs().max().item(),
    }


# --- the head conversion alone, on the official backbone features --------------------------------------------------

@pytest.fixture(scope="module")
def converted_head(official_state):
    head_sd = {k[len("head."):]: v for k, v in official_state["state_dict"].items() if k.startswith("head.")}
    head = DeGMixHead([16, 32, 64, 128], {"semseg": 40, "depth": 1}, fixture_model_config().head)
    head.load_state_dict(convert_head_state(head_sd, head.state_dict(), official_tasks(head_sd)), strict=True)
    return head.double().eval()


@pytest.mark.parametrize("tag", TAGS)
def test_converted_head_reproduces_the_official_head(converted_head, official, tag):
    feats = [official[f"{tag}/features.{i}"] for i in range(4)]
    diffs = _max_diffs(converted_head, lambda image: converted_head(feats, tuple(image.shape[-2:])), official, tag)
    assert max(diffs.values()) <= TOL, diffs  # measured: <= 7.2e-15
    assert official[f"{tag}/semseg_grid"].abs().max() > 1  # the comparison is not between near-zero maps


def test_tasks_are_matched_by_the_checkpoints_order_not_the_configs(official_state, official):
    """defor_mixers.0 / task_querys.0 belong to the first task of the official list, whatever order we build."""
    head_sd = {k[len("head."):]: v for k, v in official_state["state_dict"].items() if k.startswith("head.")}
    assert official_tasks(head_sd) == ["semseg", "depth"]
    head = DeGMixHead([16, 32, 64, 128], {"depth": 1, "semseg": 40}, fixture_model_config().head)
    head.load_state_dict(convert_head_state(head_sd, head.state_dict(), official_tasks(head_sd)), strict=True)
    head = head.double().eval()
    feats = [official[f"64x96/features.{i}"] for i in range(4)]
    diffs = _max_diffs(head, lambda image: head(feats, tuple(image.shape[-2:])), official, "64x96")
    assert max(diffs.values()) <= TOL, diffs


# --- end to end: checkpoint -> run folder -> load_tuned -> outputs ---------------------------------------------------

@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "run"
    tiny_synthetic = ["data.synthetic_n=4", "data.synthetic_size=48,64"]
    import_official(CKPT, fixture_model_config(), out, data_overrides=tiny_synthetic)
    return out


@pytest.fixture(scope="module")
def reloaded(imported_run):
    model, cfg = load_tuned(imported_run)
    return model.double().eval(), cfg


@pytest.mark.parametrize("tag", TAGS)
def test_imported_run_reproduces_the_official_model(reloaded, official, tag):
    model, _ = reloaded
    diffs = _max_diffs(model.head, model, official, tag)
    assert max(diffs.values()) <= TOL, diffs  # measured: <= 1.5e-14


def test_run_folder_records_the_official_computation_and_the_source(imported_run, reloaded):
    _, cfg = reloaded
    saved = json.loads((imported_run / "config.json").read_text())
    assert saved["model"]["head"]["interaction"] == "official" and saved["model"]["head"]["query_attention"] == "pixel"
    assert saved["tuning"] == "full" and saved["model"]["freeze_backbone"] is False
    assert cfg.model.head.interaction == "official"
    source = json.loads((imported_run / "imported_from.json").read_text())
    assert source["file"] == CKPT.name
    assert source["sha256"] == hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert (source["pytorch-lightning_version"], source["epoch"], source["global_step"]) == ("1.1.8", 39, 40000)
    assert len(source["dropped_unused_head_buffers"]) == 4  # ChlSpl.offset of 2 tasks x 2 blocks
    with safe_open(str(imported_run / "adapter.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["imported_from"]) == source
        keys = list(f.keys())
    assert any(k.startswith("backbone.") for k in keys)  # tuning "full": the adapter holds the backbone too
    # nothing was trained or evaluated, so no training records
    written = sorted(p.name for p in imported_run.iterdir())
    assert written == ["adapter.safetensors", "config.json", "imported_from.json"]


def test_frozen_backbone_config_writes_the_backbone_file(tmp_path, official):
    out = tmp_path / "tuning_run"
    import_official(CKPT, fixture_model_config(freeze_backbone=True), out)
    saved = json.loads((out / "config.json").read_text())
    assert saved["tuning"] == "degmix"
    assert saved["model"]["checkpoint_path"] == str((out / "backbone.safetensors").absolute())
    with safe_open(str(out / "adapter.safetensors"), framework="pt") as f:
        assert not any(k.startswith("backbone.") for k in f.keys())
    model, _ = load_tuned(out)
    model = model.double().eval()
    diffs = _max_diffs(model.head, model, official, "97x131")
    assert max(diffs.values()) <= TOL, diffs


def test_cli_import_then_evaluate_on_synthetic_data(tmp_path, synthetic_cache, capsys):
    config = tmp_path / "model.json"
    fixture_model_config().save(config)
    run = tmp_path / "cli_run"
    code = main([
        "import-official", str(CKPT), "--config", str(config), "--out", str(run),
        "--set", "data.synthetic_n=4", "--set", "data.synthetic_size=48,64",
    ])
    printed = capsys.readouterr().out.strip()
    assert code == 0
    assert len(printed.splitlines()) == 1 and "official" in printed and str(run) in printed
    assert "backbone 574,072 + head 184,727 parameters" in printed
    metrics_file = tmp_path / "metrics.json"
    assert main(["evaluate", str(run), "--synthetic", "--max-samples", "2", "--out", str(metrics_file)]) == 0
    metrics = json.loads(metrics_file.read_text())["metrics"]
    assert 0.0 <= metrics["semseg"]["miou"] <= 1.0 and metrics["depth"]["rmse"] > 0


def _official_layout(model) -> dict[str, torch.Tensor]:
    """Our model's weights written the way the official code names them (the table read backwards)."""
    from degmix_tuning.backbones.weights import slot_to_mmseg_swin
    from degmix_tuning.official.head_keys import CONV1D_TO_LINEAR, QKV_ROWS, RULES, official_key_for

    head, tasks, state = model.head.state_dict(), list(model.head.tasks), {}
    for key, value in head.items():
        rule = next(r for r in RULES if r.ours_re.fullmatch(key))
        if rule.transform == QKV_ROWS:
            value = torch.cat([head[re.sub(r"\.[qkv]_proj\.", f".{x}_proj.", key)] for x in "qkv"])
        elif rule.transform == CONV1D_TO_LINEAR:
            value = value[..., None]
        state["head." + official_key_for(key, tasks)] = value
    state.update({f"backbone.{k}": v for k, v in slot_to_mmseg_swin(model.backbone.state_dict()).items()})
    return state


def test_five_task_pascal_model_survives_export_and_import(tmp_path):
    """Task indices, per-task modules and PASCAL class counts for all five tasks (the fixture has two)."""
    from degmix_tuning.models import create_model

    tasks = ("semseg", "human_parts", "sal", "normals", "edge")
    cfg = ModelConfig(backbone="tiny_swin", dataset="pascal", tasks=tasks, head=DeGMixConfig(dim=32),
                      freeze_backbone=False)
    model = create_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    path = tmp_path / "pascal.ckpt"
    torch.save({"state_dict": _official_layout(model)}, path)
    import_official(path, cfg, tmp_path / "run")
    rebuilt, saved = load_tuned(tmp_path / "run")
    assert saved.model.head.interaction == "official" and saved.data.dataset == "pascal"
    expected, got = model.state_dict(), rebuilt.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


# --- reading files safely ------------------------------------------------------------------------------------------

_FAKE_PL = (
    "pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint",
    "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing",
)


def _save_lightning_style(path: Path, state: dict, extra: dict | None = None) -> None:
    """A Lightning 1.1-style file: callbacks keyed by a class, AttributeDict hyper-parameters (fake modules)."""
    modules = {name: types.ModuleType(name) for name in _FAKE_PL}
    model_checkpoint = type("ModelCheckpoint", (), {"__module__": _FAKE_PL[2]})
    attribute_dict = type("AttributeDict", (dict,), {"__module__": _FAKE_PL[4]})
    modules[_FAKE_PL[2]].ModelCheckpoint = model_checkpoint
    modules[_FAKE_PL[4]].AttributeDict = attribute_dict
    sys.modules.update(modules)
    try:
        torch.save({
            **state,
            "callbacks": {model_checkpoint: {"best_model_score": torch.tensor(0.47), "best_model_path": "/x/l.ckpt"}},
            "optimizer_states": [{"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 1e-3}]}],
            "lr_schedulers": [{"last_epoch": 40000, "_last_lr": [0.0]}],
            "hyper_parameters": attribute_dict(lr=1e-3, tasks=["semseg", "depth"]),
            **(extra or {}),
        }, path)
    finally:
        for name in _FAKE_PL:
            sys.modules.pop(name, None)


def test_lightning_file_with_foreign_globals_imports(tmp_path, official_state, imported_run):
    path = tmp_path / "lightning.ckpt"
    _save_lightning_style(path, official_state)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what a plain safe load does with such a file
    ckpt = read_official_checkpoint(path)
    assert ckpt.reader == "restricted" and ckpt.facts["global_step"] == 40000
    assert not any(name.startswith("pytorch_lightning") for name in sys.modules)
    out = tmp_path / "run"
    import_official(path, fixture_model_config(), out)
    assert json.loads((out / "imported_from.json").read_text())["reader"] == "restricted"
    mine, reference = load_file(str(out / "adapter.safetensors")), load_file(str(imported_run / "adapter.safetensors"))
    assert mine.keys() == reference.keys() and all(torch.equal(mine[k], reference[k]) for k in mine)


class _CopiesAFileWhenUnpickled:
    """Unpickling this calls shutil.copyfile: a stand-in for any code a malicious file could run."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return shutil.copyfile, (str(CKPT), str(self.target))


def test_reader_never_runs_code_named_by_the_file(tmp_path, official_state):
    marker = tmp_path / "code_ran"
    path = tmp_path / "hostile.ckpt"
    _save_lightning_style(path, official_state, extra={"payload": _CopiesAFileWhenUnpickled(marker)})
    ckpt = read_official_checkpoint(path)
    assert not marker.exists()
    assert len(ckpt.state_dict) == len(official_state["state_dict"])


def test_ddp_module_prefixes_are_removed(tmp_path, official_state):
    path = tmp_path / "ddp.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official_state["state_dict"].items()}}, path)
    assert list(read_official_checkpoint(path).state_dict) == list(official_state["state_dict"])


# --- user errors: one line on stderr, exit code 1 -------------------------------------------------------------------

def _run_cli_error(capsys, args: list[str]) -> str:
    code = main(["import-official", *args])
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _edited_checkpoint(tmp_path: Path, official_state: dict, edit) -> Path:
    state = dict(official_state["state_dict"])
    edit(state)
    path = tmp_path / "edited.ckpt"
    torch.save({**official_state, "state_dict": state}, path)
    return path


@pytest.mark.parametrize("edit, expected", [
    (lambda sd: sd.pop("head.smlp.1.bias"), "missing head.smlp.1.bias"),
    (lambda sd: sd.__setitem__("head.smlp.2.weight", torch.zeros(32)), "unexpected head.smlp.2.weight"),
    (lambda sd: sd.__setitem__("head.task_querys.1.in_proj_weight", torch.zeros(90, 32)),
     "head.task_querys.1.in_proj_weight [90,32] (expected [96,32])"),
    (lambda sd: sd.__setitem__("head.gmlps.gating.0.fn.sgu_0.proj.weight", torch.zeros(256, 256)),
     "head.gmlps.gating.0.fn.sgu_0.proj.weight [256,256] (expected [256,256,1])"),
    (lambda sd: sd.pop("backbone.stages.1.blocks.0.norm1.weight"), "missing: model.layers.1.blocks.0.norm1.weight"),
    (lambda sd: sd.__setitem__("decoder.conv.weight", torch.zeros(1)),
     "outside backbone.* / head.*: decoder.conv.weight"),
    (lambda sd: sd.__setitem__("head.patch_embed.projection.weight", torch.zeros(1)), "2025 DeGMix head code"),
])
def test_checkpoint_that_does_not_fit_names_the_key(tmp_path, capsys, official_state, edit, expected):
    path = _edited_checkpoint(tmp_path, official_state, edit)
    config = fixture_model_config().save(tmp_path / "model.json")
    err = _run_cli_error(capsys, [str(path), "--config", str(config), "--out", str(tmp_path / "run")])
    assert expected in err and str(path) in err
    assert not (tmp_path / "run" / "adapter.safetensors").exists()


def test_wrong_preset_names_what_the_checkpoint_holds(tmp_path, capsys):
    err = _run_cli_error(capsys, [str(CKPT), "--preset", "degmix_swin_t_nyud", "--out", str(tmp_path / "run")])
    assert "tasks semseg,depth, 40 semseg classes, head d=32" in err
    assert "Swin embed 16, depths 2,2,2,2, window 4" in err
    assert "preset 'degmix_swin_t_nyud' has tasks semseg,depth,normals,edge" in err
    assert "no preset fits" in err and "--config" in err


def test_wrong_preset_suggests_the_one_that_fits(tmp_path, capsys, official_state):
    # drop the second block of every stage: now the backbone is tiny_swin's default (depths 1,1,1,1)
    path = _edited_checkpoint(
        tmp_path, official_state,
        lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("backbone.stages.") and ".blocks.1." in k],
    )
    err = _run_cli_error(capsys, [str(path), "--preset", "degmix_swin_t_nyud", "--out", str(tmp_path / "run")])
    assert "use --preset degmix_tuning_tiny_nyud" in err
    out = tmp_path / "run"
    assert main(["import-official", str(path), "--preset", "degmix_tuning_tiny_nyud", "--out", str(out)]) == 0
    assert (out / "backbone.safetensors").is_file()  # a DeGMix-Tuning preset: frozen backbone file


@pytest.mark.parametrize("content, expected", [
    (b"not a checkpoint at all\n", "is not a PyTorch checkpoint (neither a zip archive nor a pickle)"),
    (CKPT.read_bytes()[: CKPT.stat().st_size // 2], "is not a readable PyTorch checkpoint"),
    (None, "has no 'state_dict' entry (top-level keys: 'epoch')"),
])
def test_unreadable_files_give_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "broken.ckpt"
    if content is None:
        torch.save({"epoch": 3}, path)
    else:
        path.write_bytes(content)
    err = _run_cli_error(capsys, [str(path), "--preset", "degmix_swin_t_nyud", "--out", str(tmp_path / "run")])
    assert expected in err and str(path) in err and "download it again" in err


def test_only_data_fields_can_be_set(tmp_path, capsys):
    err = _run_cli_error(capsys, [str(CKPT), "--preset", "degmix_swin_t_nyud", "--out", str(tmp_path / "run"),
                                  "--set", "model.head.dim=32"])
    assert "only data.* fields" in err


def test_existing_run_folder_is_not_overwritten_silently(tmp_path, capsys, imported_run):
    err = _run_cli_error(capsys, [str(CKPT), "--preset", "degmix_swin_t_nyud", "--out", str(imported_run)])
    assert "already holds adapter.safetensors" in err and "--overwrite" in err


def test_help_says_which_files_it_takes(capsys):
    with pytest.raises(SystemExit):
        main(["import-official", "--help"])
    text = capsys.readouterr().out
    assert "DeGMix README" in text and ".ckpt" in text and "--preset" in text and "--config" in text
