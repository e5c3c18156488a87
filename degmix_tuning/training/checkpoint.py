"""Checkpoints: full training state (Accelerate, written atomically) and the small adapter file.

The adapter file is one `.safetensors` holding only what tuning changed (trainable parameters, plus the head's
buffers such as BatchNorm statistics) and the resolved `ExperimentConfig` as metadata. `load_tuned` rebuilds the
model around any copy of the frozen backbone and loads it strictly.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save, save_file
from torch import nn

from ..backbones.base import state_digest
from ..runtime import current_umask
from ..tuning.state import key_mismatch, load_trainable_state, trainable_state

ADAPTER_FORMAT = "degmix-tuning-adapter/1"
ADAPTER_NAME = "adapter.safetensors"


class FrozenBackboneMismatch(ValueError):
    """The rebuilt frozen backbone is not the one an adapter or checkpoint was trained on (architecture or weights)."""


def save_adapter(model: nn.Module, path: str | Path, config: dict, extra: dict | None = None) -> Path:
    """Write the adapter file atomically (tmp file + rename). `config` is the resolved ExperimentConfig as a dict."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state, meta = _adapter_payload(model, config, extra)
    save_shared_safetensors(state, path, meta)
    return path


def save_shared_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (tmp file + rename), readable like any file the user writes: safetensors
    itself writes 0600, and adapters and exports are meant to be shared."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


def adapter_file_bytes(model: nn.Module, config: dict) -> int:
    """The exact size `save_adapter(model, ..., config)` writes (tensors + metadata), serialised in memory."""
    state, meta = _adapter_payload(model, config, None)
    return len(save(state, metadata=meta))


def _adapter_payload(model: nn.Module, config: dict, extra: dict | None) -> tuple[dict, dict]:
    """(tensors, metadata) of an adapter file: the trainable state and what a reload needs to check."""
    state = {k: v.contiguous().cpu() for k, v in trainable_state(model).items()}
    rebuilt = _not_in_adapter(model, state)
    meta = {
        "format": ADAPTER_FORMAT,
        "config": json.dumps(config),
        "backbone_channels": json.dumps(list(getattr(model.backbone, "channels", []))),
        # what load_tuned must rebuild (the frozen weights): recorded so a different rebuild is refused, not used
        "rebuilt_state_sha256": json.dumps(state_digest(rebuilt)),
        "rebuilt_layout_sha256": json.dumps(layout_digest(rebuilt)),  # the frozen architecture: names and shapes
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
    }
    return state, meta


def _not_in_adapter(model: nn.Module, adapter_state: dict) -> dict[str, torch.Tensor]:
    """The model's tensors that the adapter file does not hold: the frozen weights a reload has to rebuild."""
    return {k: v for k, v in model.state_dict().items() if k not in adapter_state}


def layout_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors' names, dtypes and shapes only: equal for the same architecture, whatever the weights."""
    return state_digest(state, values=False)


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """-> (tensors, metadata with JSON values decoded). Errors name the file and what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / ADAPTER_NAME
    if not path.is_file():
        raise FileNotFoundError(f"adapter file {str(path)!r} does not exist; runs write it as <run>/{ADAPTER_NAME}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - report the cause with the file name
        raise ValueError(f"{str(path)!r} is not a readable safetensors adapter file: {exc}") from exc
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{str(path)!r} is not a degmix-tuning adapter (format {meta.get('format')!r})")
    decoded = {k: (json.loads(v) if k != "format" else v) for k, v in meta.items()}
    return tensors, decoded


def load_tuned(path: str | Path, backbone: nn.Module | str | None = None, map_location: str = "cpu",
               allow_backbone_mismatch: bool = False):
    """Rebuild a tuned model from an adapter file.

    Args:
        path: the adapter file (or the run folder holding `adapter.safetensors`).
        backbone: a `FeatureBackbone` instance (e.g. with pretrained weights you loaded), a backbone name, or None to
            build the one recorded in the file's config (its `pretrained` / `checkpoint_path` settings).
        allow_backbone_mismatch: load even if the frozen weights differ from those the adapter was trained on
            (a warning instead of an error); a different architecture is always an error.
    Returns:
        (model, ExperimentConfig)
    """
    from ..backbones import FeatureBackbone, create_backbone
    from ..models.factory import assemble_model
    from ..tuning import apply_tuning
    from .config import ExperimentConfig

    tensors, meta = read_adapter(path)
    cfg = ExperimentConfig.from_dict(meta["config"])
    mcfg = cfg.model
    if mcfg.imports:  # the run's `--import` plugins: its backbone may be registered there
        from ..backbones import import_plugins

        import_plugins(mcfg.imports)
    random_init = backbone is None and not mcfg.pretrained and not mcfg.checkpoint_path
    # training builds the model right after seeding with train.seed, so a random-init backbone is rebuilt the same way
    with torch.random.fork_rng(devices=[]):
        if random_init:
            torch.manual_seed(cfg.train.seed)
        if isinstance(backbone, FeatureBackbone):
            bb = backbone
        else:
            bb = create_backbone(
                backbone or mcfg.backbone, pretrained=mcfg.pretrained if backbone is None else False,
                checkpoint_path=mcfg.checkpoint_path if backbone is None else None, img_size=mcfg.img_size,
                **mcfg.backbone_kwargs,
            )
    recorded = meta.get("backbone_channels")
    if recorded and list(bb.channels) != list(recorded):
        raise ValueError(
            f"adapter {str(path)!r} was trained on a backbone with channels {recorded}, but the given backbone has "
            f"{list(bb.channels)}; pass the same architecture ({mcfg.backbone!r})"
        )
    model = assemble_model(mcfg, bb)
    apply_tuning(model, cfg.tuning, **cfg.tuning_kwargs)
    origin = (f"random init with seed {cfg.train.seed}" if random_init else
              f"{mcfg.checkpoint_path!r}" if backbone is None and mcfg.checkpoint_path else
              f"pretrained {mcfg.backbone!r}" if backbone is None else "the backbone you passed")
    load_adapter_state(model, tensors, meta, path, origin, allow_backbone_mismatch)
    return model.to(map_location), cfg


def load_adapter_state(model: nn.Module, tensors: dict[str, torch.Tensor], meta: dict, path: str | Path,
                       origin: str = "the rebuilt backbone", allow_backbone_mismatch: bool = False) -> None:
    """Load an adapter's tensors into a model built from its config, after checking that they fit exactly and that
    the model's frozen part is the one the adapter was trained on (same architecture always; same weights unless
    `allow_backbone_mismatch`, which warns). Used by `load_tuned` and by resuming from a checkpoint."""
    mismatch = key_mismatch(trainable_state(model), tensors)
    if mismatch:
        raise ValueError(f"adapter {str(path)!r} does not fit the rebuilt model: {mismatch}")
    rebuilt = _not_in_adapter(model, tensors)
    layout = meta.get("rebuilt_layout_sha256")
    if layout is not None and layout_digest(rebuilt) != layout:
        raise FrozenBackboneMismatch(
            f"adapter {str(path)!r} was trained on another frozen backbone architecture than {origin}; pass the "
            f"backbone it was trained on ({meta.get('config', {}).get('model', {}).get('backbone')!r})"
        )
    digest = meta.get("rebuilt_state_sha256")
    if digest is not None and state_digest(rebuilt) != digest:
        if not allow_backbone_mismatch:
            raise FrozenBackboneMismatch(
                f"adapter {str(path)!r} was trained on other frozen backbone weights than the rebuilt ones ({origin}); "
                f"pass the backbone it was trained on (load_tuned(..., backbone=...), or the same --checkpoint-path / "
                f"--pretrained weights and timm version), or accept the difference with --allow-backbone-mismatch"
            )
        warnings.warn(f"adapter {str(path)!r} was trained on other frozen backbone weights than {origin}; loaded "
                      "anyway (allow_backbone_mismatch): its metrics will differ from the run's", stacklevel=2)
    load_trainable_state(model, tensors)


def use_adapter_checkpoints(accelerator, config: dict, step_of) -> None:
    """Make `accelerator.save_state` / `load_state` store the model as its adapter file, not as a full state dict.

    A checkpoint then holds the trainable state (+ config + the frozen weights' fingerprint), the optimizer, the
    scheduler and the RNG states: the frozen backbone (126 MB for Swin-T) is rebuilt from the config, and loading
    verifies it against the recorded fingerprint (`load_adapter_state`). Accelerate's documented hook pair: the save
    hook writes the file and empties `weights`, the load hook reads it and empties `models`. `step_of()` gives the
    step recorded in the file.
    """

    def save(models, weights, output_dir):
        if accelerator.is_main_process:
            for i, model in enumerate(models):
                save_adapter(accelerator.unwrap_model(model), Path(output_dir) / _checkpoint_adapter_name(i), config,
                             {"step": step_of()})
        weights.clear()

    def load(models, input_dir):
        for i, model in enumerate(models):
            path = Path(input_dir) / _checkpoint_adapter_name(i)
            tensors, meta = read_adapter(path)
            try:
                load_adapter_state(accelerator.unwrap_model(model), tensors, meta, path)
            except FrozenBackboneMismatch:
                raise FrozenBackboneMismatch(
                    f"checkpoint {str(input_dir)!r} was trained on another frozen backbone than the one rebuilt from "
                    "this config (its fingerprint differs); resume with the run's own model.backbone, "
                    "checkpoint_path, pretrained and train.seed (its config.json)") from None
        models.clear()

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def _checkpoint_adapter_name(index: int) -> str:
    return ADAPTER_NAME if index == 0 else ADAPTER_NAME.replace(".safetensors", f"_{index}.safetensors")


def save_state_atomically(accelerator, directory: str | Path) -> Path:
    """`accelerator.save_state` into `<dir>.tmp`, then rename, so a crash never leaves a half-written checkpoint."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    accelerator.wait_for_everyone()
    return directory


def list_checkpoints(checkpoint_root: str | Path) -> list[Path]:
    """Complete checkpoints `step_<n>` under a run's `checkpoints/` folder, oldest first (`.tmp` ones are ignored)."""
    root = Path(checkpoint_root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))
