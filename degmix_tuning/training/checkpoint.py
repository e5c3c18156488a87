"""Checkpoints: full training state (Accelerate, written atomically) and the small adapter file.

The adapter file is one `.safetensors` holding only what tuning changed (trainable parameters, plus the head's
buffers such as BatchNorm statistics) and the resolved `ExperimentConfig` as metadata. `load_tuned` rebuilds the
model around any copy of the frozen backbone and loads it strictly; an adapter holding NaN/inf is refused.

A checkpoint folder `checkpoints/step_<n>/` holds:

    adapter.safetensors    the trainable state (no frozen backbone), with the config and the frozen weights' digest
    optimizer.bin          the optimizer state (accelerate, torch.save), loaded with weights_only=True
    random_states_<r>.pkl  the RNG states of process r (accelerate, torch.save), loaded with weights_only=True
    training_state.json    step, lr schedule, best evaluation so far, and the health of the weights it was written
                           with (largest |weight|, last logged loss): what names the last good checkpoint
    config.json            the config it was written with: what a resume is checked against (resume.py)

Nothing in a checkpoint is unpickled with plain pickle: a file naming any other global (a crafted file that would
run code) is refused with one line (`UnsafeCheckpoint`). Checkpoints written before training_state.json existed
keep that state in accelerate's `custom_checkpoint_<i>.pkl`, read the same safe way.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
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
from .run_files import atomic_write_text, fsync_file, write_errors

ADAPTER_FORMAT = "degmix-tuning-adapter/1"
ADAPTER_NAME = "adapter.safetensors"
TRAINING_STATE = "training_state.json"
TRAINING_STATE_FORMAT = "degmix-tuning-training-state/1"
# a checkpoint whose largest |weight| exceeds this is not a "good" one to resume from (healthy heads stay far below)
WEIGHT_BOUND = 1e6


class UnsafeCheckpoint(ValueError):
    """A checkpoint file holds more than plain training state (a pickle naming code); never loaded."""


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
    with write_errors(path, cleanup=tmp):  # a full disk leaves no .tmp behind, and one line (errors.py)
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~current_umask())
        fsync_file(tmp)
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
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{str(path)!r} holds non-finite weights ({key}: {bad} of {tensor.numel()} values "
                             "NaN/inf), the result of a diverged run; use an earlier checkpoint's adapter "
                             "(<run>/checkpoints/step_<n>/adapter.safetensors) or train again with a lower train.lr")
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
        _load_checkpoint_adapters(accelerator, models, input_dir)
        models.clear()

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def _load_checkpoint_adapters(accelerator, models, input_dir) -> None:
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


def _checkpoint_adapter_name(index: int) -> str:
    return ADAPTER_NAME if index == 0 else ADAPTER_NAME.replace(".safetensors", f"_{index}.safetensors")


def save_state_atomically(accelerator, directory: str | Path, files: dict[str, str] | None = None) -> Path:
    """`accelerator.save_state` into `<dir>.tmp` plus `files` ({name: text}, main process), then rename, so a crash
    never leaves a half-written checkpoint; a failed write (full disk) removes `<dir>.tmp` and raises one OSError
    naming the checkpoint (run_files.write_errors)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    main = accelerator.is_main_process
    if main and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    with write_errors(directory, cleanup=tmp if main else None):
        accelerator.save_state(str(tmp))
        if main:
            for name, text in (files or {}).items():
                atomic_write_text(tmp / name, text)
        for f in tmp.iterdir():  # each process's files on the disk before the folder is renamed into place
            if f.is_file():
                fsync_file(f)
    accelerator.wait_for_everyone()
    if main:
        old = directory.with_name(directory.name + ".old")
        if directory.exists():  # the same step saved again (a resume): the old copy goes only after the new is in
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return directory


def training_state_json(objects: dict, health: dict) -> str:
    """training_state.json: the state_dicts of the registered objects (step, schedule, best evaluation) and the
    health of the weights (see `checkpoint_health`)."""
    state = {"format": TRAINING_STATE_FORMAT, "objects": {k: v.state_dict() for k, v in objects.items()},
             "health": health}
    return json.dumps(state, indent=1, default=float) + "\n"


def _torch_load_safely(path: Path, checkpoint: Path, **kwargs):
    """accelerate's loader (weights_only=True, numpy RNG arrays allowed); a file naming other globals is refused."""
    from accelerate.utils import load

    try:
        return load(str(path), **kwargs)
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"names {m.group(1)}" if m else "holds objects"
        raise UnsafeCheckpoint(
            f"checkpoint file {str(path)!r} {what}, which plain training state never holds: refused (loading it "
            f"could run code). Delete {str(checkpoint)!r} if you did not write it, or resume from another "
            "checkpoint (--resume <folder>)") from None


def load_checkpoint(accelerator, directory: str | Path, objects: dict) -> None:
    """Load a checkpoint written by `save_state_atomically` into the prepared model and optimizer, the RNGs and the
    registered `objects` ({name: object with load_state_dict}, in the order older checkpoints registered them).

    accelerate's `load_state` unpickles the custom objects with weights_only=False; here everything is read with
    weights_only=True (accelerate's own loader for the optimizer, scaler and RNG files), and the objects' state
    comes from training_state.json.
    """
    from accelerate.checkpointing import load_accelerator_state
    from accelerate.utils import DistributedType

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(directory)!r} does not exist")
    rng = directory / f"random_states_{accelerator.process_index}.pkl"
    if rng.is_file():  # accelerate ignores an unreadable RNG file silently: check it first
        _torch_load_safely(rng, directory)
    _load_checkpoint_adapters(accelerator, accelerator._models, directory)
    multi = (accelerator.num_processes > 1 and accelerator.multi_device
             and accelerator.distributed_type != DistributedType.MULTI_XPU)
    try:
        override = load_accelerator_state(
            str(directory), [], accelerator._optimizers, accelerator._schedulers, accelerator._dataloaders,
            accelerator.process_index, accelerator.scaler, "on_device" if multi else "cpu", {"weights_only": True})
    except pickle.UnpicklingError:
        for f in sorted(directory.iterdir()):  # name the file that refused
            if f.suffix in (".bin", ".pkl", ".pt"):
                _torch_load_safely(f, directory)
        raise
    if "step" in override:
        accelerator.step = override["step"]
    state_file = directory / TRAINING_STATE
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text())
            saved = state["objects"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{state_file} cannot be read ({exc})") from exc
        for name, obj in objects.items():
            if name not in saved:
                raise ValueError(f"{state_file} holds no {name!r} state (it holds {sorted(saved)})")
            obj.load_state_dict(saved[name])
        return
    legacy = sorted(directory.glob("custom_checkpoint_*.pkl"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if len(legacy) != len(objects):
        raise ValueError(f"checkpoint {str(directory)!r} holds {len(legacy)} state files for {len(objects)} objects "
                         f"({', '.join(objects)}) and no {TRAINING_STATE}")
    for (name, obj), path in zip(objects.items(), legacy):
        obj.load_state_dict(_torch_load_safely(path, directory, map_location="cpu"))


def weight_health(model: nn.Module) -> tuple[list[str], float]:
    """(names of the tensors holding NaN/inf, largest |value| over the finite trainable state and buffers); one
    copy to the host for all tensors (a checkpoint step waits for the device once)."""
    tensors = {k: v.detach() for k, v in trainable_state(model).items() if v.is_floating_point() and v.numel()}
    if not tensors:
        return [], 0.0
    finite = [torch.isfinite(v) for v in tensors.values()]
    stats = torch.stack([torch.stack([f.all().float(), v.abs().masked_fill(~f, 0).max().float()])
                         for f, v in zip(finite, tensors.values())]).cpu()
    bad = [k for k, ok in zip(tensors, stats[:, 0].tolist()) if not ok]
    return bad, float(stats[:, 1].max())


def checkpoint_health(checkpoint: Path) -> str | None:
    """None when `checkpoint` is a good one to resume from (weights finite and within WEIGHT_BOUND, its last logged
    loss finite), else why not. Read from its training_state.json, or (older checkpoints) from its adapter."""
    state_file = Path(checkpoint) / TRAINING_STATE
    health = None
    if state_file.is_file():
        try:
            health = json.loads(state_file.read_text()).get("health")
        except (OSError, ValueError):
            return f"{TRAINING_STATE} cannot be read"
    if health is None:
        try:
            tensors, _ = read_adapter(Path(checkpoint) / ADAPTER_NAME)
        except (OSError, ValueError):
            return "its weights are unreadable or not finite"
        largest = max((float(v.abs().max()) for v in tensors.values() if v.is_floating_point() and v.numel()),
                      default=0.0)
        health = {"max_abs_weight": largest, "loss": None}
    largest, loss = health.get("max_abs_weight"), health.get("loss")
    if largest is None or not math.isfinite(largest) or largest > WEIGHT_BOUND:
        return f"its weights reach {largest:.3g}" if isinstance(largest, float) else "its weights are not finite"
    if loss is not None and not math.isfinite(loss):
        return f"its last logged loss was {loss}"
    return None


def last_good_checkpoint(run_dir: str | Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint under `<run_dir>/checkpoints` that is good to resume from (`checkpoint_health`), and
    why each newer one is not."""
    skipped = []
    for ckpt in reversed(list_checkpoints(Path(run_dir) / "checkpoints")):
        why = checkpoint_health(ckpt)
        if why is None:
            return ckpt, skipped
        skipped.append(f"{ckpt.name}: {why}")
    return None, skipped


def describe_last_good(run_dir: str | Path) -> str:
    """For the divergence messages: "last good checkpoint: <path>" (noting newer unusable ones) or that none is."""
    good, skipped = last_good_checkpoint(run_dir)
    note = f" (not {'; '.join(skipped)})" if skipped else ""
    if good is None:
        return f"no good checkpoint to resume from{note}; start again in a new --output-dir"
    return f"last good checkpoint: {good}{note}"


def list_checkpoints(checkpoint_root: str | Path) -> list[Path]:
    """Complete checkpoints `step_<n>` under a run's `checkpoints/` folder, oldest first (`.tmp` ones are ignored)."""
    root = Path(checkpoint_root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))
