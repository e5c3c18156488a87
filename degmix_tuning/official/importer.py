"""Turn a released official DeGMix checkpoint into a run folder that `evaluate`, `predict` and `load_tuned` read.

Run folder written here:
    <out>/adapter.safetensors   weights + the resolved ExperimentConfig (metadata), as a trained run writes it
    <out>/config.json           the same ExperimentConfig
    <out>/imported_from.json    source file name, sha256, Lightning version / epoch / global_step, what was skipped
    <out>/backbone.safetensors  only for frozen-backbone (DeGMix-Tuning) presets: the backbone in our slot's layout,
                                recorded as `model.checkpoint_path` so `load_tuned` rebuilds it
Full DeGMix presets (`freeze_backbone=False`) import with tuning "full", so the adapter holds every parameter.
No metrics, training log or summary are written: nothing was trained or evaluated here.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..data.config import DataConfig
from ..data.info import get_dataset_info
from ..models.factory import ModelConfig, create_model
from ..models.presets import get_preset
from .checkpoint_file import NON_MODEL_PREFIXES, OfficialCheckpoint, read_official_checkpoint
from .fit import check_fit, check_head_version, head_facts
from .head_keys import HeadMismatch, convert_head_state, unused_official_keys

BACKBONE_FILE = "backbone.safetensors"
PROVENANCE_FILE = "imported_from.json"
# the official computation (what the released models were trained and evaluated with, one image per GPU)
OFFICIAL_HEAD = {"interaction": "official", "query_attention": "pixel"}


@dataclass
class ImportResult:
    run_dir: Path
    tuning: str
    backbone_params: int
    head_params: int
    source: dict


def resolve_model_config(config: str | ModelConfig) -> tuple[ModelConfig, str | None]:
    """A preset name or a ModelConfig -> (ModelConfig running the official computation, preset name or None)."""
    if isinstance(config, str):
        cfg, preset = get_preset(config), config
    elif isinstance(config, ModelConfig):
        cfg, preset = copy.deepcopy(config), None
    else:
        raise TypeError(f"config must be a preset name or a ModelConfig, got {type(config).__name__}")
    data = cfg.to_dict()
    linear_queries = data["head"].get("query_attention") == "linear"  # the ViT head's own query module: kept
    data["head"].update(OFFICIAL_HEAD)
    if linear_queries:
        data["head"]["query_attention"] = "linear"
    data["pretrained"] = False  # every backbone weight comes from the checkpoint
    data["checkpoint_path"] = None
    return ModelConfig.from_dict(data), preset


# --- the checkpoint's parts ---------------------------------------------------------------------------------------

def split_parts(ckpt: OfficialCheckpoint) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    """-> (backbone entries, head entries, skipped non-model keys); any other top-level module is an error."""
    unknown = [k for k in ckpt.state_dict if not k.startswith(("backbone.", "head.") + NON_MODEL_PREFIXES)]
    skipped = [k for k in ckpt.state_dict if k.startswith(NON_MODEL_PREFIXES)]
    source = str(ckpt.path)
    if unknown:
        more = f" (+{len(unknown) - 4} more)" if len(unknown) > 4 else ""
        raise ValueError(
            f"{source!r}: state_dict entries outside backbone.* / head.*: {', '.join(unknown[:4])}{more}; pass a "
            f"checkpoint of the official DeGMix/DeMTG model (src/model/pl_model.py MultiTaskModel)"
        )
    backbone, head = ckpt.part("backbone."), ckpt.part("head.")
    if not head:
        raise ValueError(
            f"{source!r} has no 'head.*' entries, so it is not a DeGMix model checkpoint (backbone-only weights go to "
            f"`--checkpoint-path` of a training run instead)"
        )
    if not backbone:
        raise ValueError(f"{source!r} has no 'backbone.*' entries; pass the full released checkpoint")
    return backbone, head, skipped


def _unused_param_count(head_sd: dict[str, Tensor]) -> int:
    """Parameters of the unused official modules dropped on import (the ViT head's linear1; buffers not counted)."""
    return sum(head_sd[k].numel() for k in unused_official_keys(head_sd) if k.startswith("linear1."))


def official_computation(cfg: ModelConfig, dropped_params: int = 0) -> str:
    """What the imported model runs, in one phrase (printed by the CLI and recorded in imported_from.json)."""
    h = cfg.head
    if h.fusion == "conv_pyramid":
        dropped = f"; dropped the head's linear1 ({dropped_params:,d} parameters, never used in the official forward)"
        return (f"official DeGMix ViT head (interaction={h.interaction}, query_attention={h.query_attention}, "
                f"FeatConv fusion, bottleneck {h.bottleneck_channels}), official ViT padding and position embedding"
                + (dropped if dropped_params else ""))
    return f"official (interaction={h.interaction}, query_attention={h.query_attention}, official Swin padding)"


def _param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tuning_for(cfg: ModelConfig) -> str:
    return "degmix" if cfg.freeze_backbone else "full"


def import_official(
    checkpoint: str | Path,
    config: str | ModelConfig,
    out_dir: str | Path,
    data_overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
) -> ImportResult:
    """Convert an official DeGMix checkpoint into a run folder (see the module docstring for its files).

    Args:
        checkpoint: the released `.ckpt` (PyTorch-Lightning 1.1 file of the official `MultiTaskModel`).
        config: a preset name (`degmix_swin_t_nyud`, `degmix_tuning_swin_l_pascal`, ...) or a `ModelConfig`.
        out_dir: the run folder to write.
        data_overrides: `data.*` assignments recorded in the run's config (e.g. `data.root=/data/NYUDv2`).
        overwrite: replace an existing import in `out_dir`.
    """
    from ..backbones.weights import load_backbone_state
    from ..training.checkpoint import ADAPTER_NAME, save_adapter
    from ..training.config import ExperimentConfig, TrainConfig
    from ..tuning import apply_tuning

    out = Path(out_dir).absolute()
    _check_out_dir(out, overwrite)
    cfg, preset = resolve_model_config(config)
    data = _data_config(cfg.dataset, data_overrides)

    ckpt = read_official_checkpoint(checkpoint)
    source = str(ckpt.path)
    backbone_sd, head_sd, skipped = split_parts(ckpt)
    check_head_version(head_sd, source)
    facts = head_facts(head_sd)
    check_fit(cfg, facts, backbone_sd, preset, source)

    model = create_model(cfg)
    tasks = facts.tasks
    try:
        head_state = convert_head_state(head_sd, model.head.state_dict(), tasks)
    except HeadMismatch as exc:
        given = f"--preset {preset}" if preset else "the --config head settings (e.g. mixer_depth, gate_hidden)"
        raise ValueError(
            f"{source!r} does not fit the DeGMix head: {exc}; check {given} against the file, or download it again if "
            f"it is incomplete"
        ) from None
    model.head.load_state_dict(head_state, strict=True)
    foreign = load_backbone_state(model.backbone, backbone_sd, source)

    tuning = _tuning_for(cfg)
    apply_tuning(model, tuning)
    out.mkdir(parents=True, exist_ok=True)
    backbone_file = out / BACKBONE_FILE
    if tuning == "degmix":
        backbone_state = {k: v.detach().contiguous().cpu() for k, v in model.backbone.state_dict().items()}
        _save_atomically(backbone_state, backbone_file)
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "checkpoint_path": str(backbone_file)})
        model.config = cfg
    elif backbone_file.exists():
        backbone_file.unlink()  # left by an earlier frozen-backbone import into this folder; the adapter holds it now
    exp = ExperimentConfig(model=cfg, data=data, train=TrainConfig(output_dir=str(out)), tuning=tuning)

    provenance = {
        **ckpt.provenance(),
        "reader": ckpt.reader,
        "preset": preset,
        "tuning": tuning,
        "official_tasks": tasks,
        "dropped_unused_head_buffers": ["head." + k for k in unused_official_keys(head_sd)],
        "computation": official_computation(cfg, _unused_param_count(head_sd)),
        "skipped_non_model_entries": skipped,
        "skipped_backbone_entries": list(foreign),
        "imported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    save_adapter(model, out / ADAPTER_NAME, exp.to_dict(), {"imported_from": provenance})
    _verify_reload(model, out)
    exp.save(out / "config.json")
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return ImportResult(out, tuning, _param_count(model.backbone), _param_count(model.head), provenance)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    from ..training.checkpoint import ADAPTER_NAME

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; pass a folder for the run")
    trained = [name for name in ("metrics.jsonl", "summary.json", "checkpoints") if (out / name).exists()]
    if trained:
        raise ValueError(
            f"{str(out)!r} holds a training run ({', '.join(trained)}); import into a new folder so its records "
            f"keep describing the weights they came from"
        )
    if (out / ADAPTER_NAME).exists() and not overwrite:
        raise ValueError(f"{str(out)!r} already holds {ADAPTER_NAME}; choose another --out or pass --overwrite")


def _verify_reload(model: torch.nn.Module, out: Path) -> None:
    """Rebuild the run folder the way evaluate/predict will (`load_tuned`) and require identical tensors."""
    from ..training.checkpoint import ADAPTER_NAME, load_tuned

    reloaded, _ = load_tuned(out)
    expected, got = model.state_dict(), reloaded.state_dict()
    differ = sorted(k for k in expected if k not in got or not torch.equal(expected[k], got[k]))
    if differ or set(got) != set(expected):
        (out / ADAPTER_NAME).unlink()
        raise RuntimeError(
            f"the run folder {str(out)!r} does not rebuild the imported model (differs: {differ[:5]}); this is a bug "
            f"in degmix_tuning, please report it"
        )


def _data_config(dataset: str, overrides) -> DataConfig:
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith("data.")]
    if bad:
        raise ValueError(
            f"--set {bad[0]!r}: only data.* fields can be set here; the model comes from --preset/--config and the "
            f"checkpoint"
        )
    get_dataset_info(dataset)
    base = DataConfig(dataset=dataset)
    if not overrides:
        return base
    # DataConfig.override expects keys relative to itself
    return base.override([o.strip()[len("data."):] for o in overrides])


def _save_atomically(state: dict[str, Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


__all__ = ["BACKBONE_FILE", "ImportResult", "OFFICIAL_HEAD", "PROVENANCE_FILE", "import_official"]
