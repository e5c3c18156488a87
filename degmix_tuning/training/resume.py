"""What may change when a run is resumed, and the run folder's history of starts and resumes.

A checkpoint's state only makes sense for the model, tuning method, tasks and data it was trained on; the recipe
around it (schedule length, learning rate, intervals, logging, speed options) may change. `resume_changes` compares
the config given now with the config the checkpoint was written with (its own `config.json`; a checkpoint written
before checkpoints carried one: the config in its adapter file, else the run's `config.json`, said in a note):
changed recipe fields are returned so they can be applied and recorded; any other changed field refuses the resume,
listing every difference. The run's `config.json` is not trusted for this: it can be edited or deleted.
`history.jsonl` gets one line per start or resume, so `config.json` (always the config that runs now) and the
history together tell what ran when.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import ExperimentConfig
from .run_files import append_text

CHECKPOINT_CONFIG = "config.json"  # inside checkpoints/step_<n>/: the config that checkpoint was written with


class ResumeRefused(ValueError):
    """The config given now changes what the checkpoint's state means (model, tuning, tasks, data)."""


def checkpoint_config(checkpoint: Path, run_dir: Path, say=print) -> tuple[dict | None, Path | None]:
    """(the config `checkpoint` was written with, the file it came from); (None, None) when nothing records it."""
    checkpoint = Path(checkpoint)
    own = checkpoint / CHECKPOINT_CONFIG
    if own.is_file():
        return _read_config(own), own
    from .checkpoint import ADAPTER_NAME

    adapter = checkpoint / ADAPTER_NAME
    try:
        from safetensors import safe_open

        with safe_open(str(adapter), framework="pt") as f:
            recorded = (f.metadata() or {}).get("config")
        if recorded:
            say(f"[degmix-tuning] checkpoint {checkpoint} has no {CHECKPOINT_CONFIG} (written by an older version): "
                f"the resume is checked against the config recorded in its {ADAPTER_NAME}")
            return json.loads(recorded), adapter
    except Exception:  # noqa: BLE001 - an unreadable adapter is reported when the checkpoint is loaded
        pass
    fallback = Path(run_dir) / "config.json"
    if fallback.is_file():
        say(f"[degmix-tuning] checkpoint {checkpoint} records no config (written by an older version): the resume is "
            f"checked against the run's {fallback}, which may have been edited since")
        return _read_config(fallback), fallback
    return None, None


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read ({exc}); it records what the run trained, so resuming cannot be "
                         "checked: restore it from the checkpoint's adapter file or start a new run") from exc

# Fields a resume may change: they shape what happens next, not what the checkpointed state means.
SAFE_ON_RESUME = frozenset({
    "train.max_steps", "train.lr", "train.momentum", "train.weight_decay", "train.poly_power", "train.clip_grad_norm",
    "train.eval_every", "train.eval_at_start", "train.eval_batch_size", "train.max_eval_batches",
    "train.checkpoint_every", "train.keep_checkpoints", "train.log_every", "train.trackers", "train.output_dir",
    "train.mixed_precision", "train.feature_cache", "train.feature_cache_dir", "train.channels_last",
    "train.compile_head", "data.num_workers", "model.head.deform_impl",
    # the schedule is a function of the step, re-anchored on resume; the overrides follow from the fields above
    "train.epochs", "train.eval_every_epochs", "train.eval_offset", "train.eval_offset_epochs", "train.warmup_epochs", "train.warmup_lr", "train.min_lr",
    "train.betas", "train.eps", "train.lr_scale_batch", "train.select",
})
DERIVED = frozenset({"protocol_overrides"})  # follows from the other fields: never a change of its own
# unset now, resolved at the start from the data (a fixed-size backbone built for the crop size): the resume resolves
# it again to the same value
RESOLVED_WHEN_UNSET = frozenset({"model.img_size"})


def resume_changes(run_dir: Path, config: dict, checkpoint: Path | None = None, say=print) -> dict[str, list]:
    """{field: [old, new]} of the safe fields that differ from the config `checkpoint` was written with (see
    `checkpoint_config`; without a checkpoint: the run's config.json); ResumeRefused naming every other differing
    field. Nothing recording the config (a very old run) compares nothing."""
    if checkpoint is not None:
        recorded, path = checkpoint_config(checkpoint, run_dir, say)
    else:
        path = Path(run_dir) / "config.json"
        recorded = _read_config(path) if path.is_file() else None
    if recorded is None:
        return {}
    before = ExperimentConfig.flat_fields(recorded)
    now = ExperimentConfig.flat_fields(json.loads(json.dumps(config)))  # tuples -> lists, as in the file
    # a field the run's config.json does not hold was added to the config after the run started: not a change
    differing = {k: [before.get(k), now.get(k)] for k in sorted(set(before) | set(now))
                 if k in before and k not in DERIVED and before.get(k) != now.get(k)
                 and not (k in RESOLVED_WHEN_UNSET and now.get(k) is None)}
    refused = {k: v for k, v in differing.items() if k not in SAFE_ON_RESUME}
    if refused:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ResumeRefused(f"cannot resume {str(run_dir)!r} with a different model, tuning method, tasks or data "
                         f"({shown}); the checkpoint was trained with the old values ({path}). Resume with "
                         f"that config (--config {path}), or start a new run in another --output-dir")
    return differing


def record_history(run_dir: Path, event: str, step: int, **details) -> None:
    """Append one line to `<run_dir>/history.jsonl`: what started, at which step, with which config changes."""
    line = {"event": event, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **details}
    append_text(Path(run_dir) / "history.jsonl", json.dumps(line, default=str) + "\n")
