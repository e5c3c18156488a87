"""What may change when a run is resumed, and the run folder's history of starts and resumes.

A checkpoint's state only makes sense for the model, tuning method, tasks and data it was trained on; the recipe
around it (schedule length, learning rate, intervals, logging, speed options) may change. `resume_changes` compares
the config given now with the config the checkpoint was written with (its own `config.json`; a checkpoint written
before checkpoints carried one: the config in its adapter file, else the run's `config.json`, said in a note):
changed recipe fields are returned so they can be applied and recorded; any other changed field refuses the resume,
listing every difference. The run's `config.json` is not trusted for this: it can be edited or deleted.
`history.jsonl` gets one line per start or resume, so `config.json` (always the config that runs now) and the
history together tell what ran when. The resume itself: which checkpoints to try (`resume_candidates`), the newest
that loads (`load_newest_readable`: a corrupt one is named and the previous tried; a refused config or a tampered
file stops), and the changed recipe applied from the resumed step on (`apply_changed_recipe`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .checkpoint import FrozenBackboneMismatch, UnsafeCheckpoint, list_checkpoints, load_checkpoint
from .config import ExperimentConfig
from .optim import CosineSchedule, effective_lr
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
    "train.epochs", "train.eval_every_epochs", "train.eval_offset", "train.eval_offset_epochs",
    "train.warmup_epochs", "train.warmup_lr", "train.min_lr",
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


def resume_candidates(run_dir: Path, resume_from: str | None) -> list[Path]:
    """Checkpoints to try, best first: the named one, or (latest) every complete one newest first."""
    if not resume_from:
        return []
    if resume_from == "latest":
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {str(run_dir / 'checkpoints')!r}")
        return found[::-1]
    path = Path(resume_from)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder {resume_from!r} does not exist")
    return [path]


def load_newest_readable(accelerator, candidates: list[Path], objects: dict, check_config) -> Path:
    """`load_checkpoint` of the first candidate that loads; each unreadable one is named on the way (never
    silently). `check_config(path)` checks the config given now against that checkpoint's before it is loaded."""
    for i, path in enumerate(candidates):
        try:
            if i:
                check_config(path)  # candidates[0] was checked before the model was built
            load_checkpoint(accelerator, path, objects)
            return path
        except (FrozenBackboneMismatch, ResumeRefused, UnsafeCheckpoint):
            raise  # the config, not the file, is wrong; or a file was tampered with: stop, do not fall back
        except Exception as exc:  # noqa: BLE001 - a corrupt or truncated checkpoint: say so, try the previous one
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            if i + 1 == len(candidates):
                raise ValueError(f"checkpoint {str(path)!r} cannot be loaded ({reason}), and no older one is left; "
                                 "start a new run (another --output-dir)") from exc
            accelerator.print(f"[degmix-tuning] checkpoint {path} cannot be loaded ({reason}); "
                              f"falling back to {candidates[i + 1]}")
    raise AssertionError("unreachable")


def apply_changed_recipe(accelerator, optimizer, scheduler, cfg: ExperimentConfig, step: int) -> None:
    """After a resume, the config given now rules: lr, momentum, weight decay and schedule length take effect from
    the resumed step (the poly schedule is re-anchored on the new lr and max_steps), and the change is printed."""
    tc = cfg.train
    if isinstance(scheduler, CosineSchedule):  # a function of the step: rebuild it from the config given now
        before = scheduler.get_last_lr()[0]
        for g in optimizer.param_groups:
            g.update(betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay if g["weight_decay"] else 0.0)
        scheduler.__init__(tc, optimizer, scheduler.steps_per_epoch)
        scheduler.load_state_dict({"updates": step})
        now = scheduler.get_last_lr()[0]
        if now != before:
            accelerator.print(f"[degmix-tuning] resumed with a changed recipe: lr at step {step} {before:.3g} -> "
                              f"{now:.3g}")
        return
    group = optimizer.param_groups[0]
    lr = effective_lr(tc)
    changes = []
    if scheduler.base_lrs[0] != lr:
        changes.append(f"lr {scheduler.base_lrs[0]:g} -> {lr:g}")
    if scheduler.total_iters != tc.max_steps:
        changes.append(f"max_steps {scheduler.total_iters} -> {tc.max_steps}")
    if scheduler.power != tc.poly_power:
        changes.append(f"poly_power {scheduler.power} -> {tc.poly_power}")
    if group.get("momentum") != tc.momentum:
        changes.append(f"momentum {group.get('momentum')} -> {tc.momentum}")
    if group.get("weight_decay") != tc.weight_decay:
        changes.append(f"weight_decay {group.get('weight_decay')} -> {tc.weight_decay}")
    if not changes:
        return
    scheduler.base_lrs = [lr for _ in optimizer.param_groups]
    scheduler.total_iters, scheduler.power = tc.max_steps, tc.poly_power
    now = lr * (1.0 - min(step, tc.max_steps) / tc.max_steps) ** tc.poly_power
    for g in optimizer.param_groups:
        g.update(lr=now, initial_lr=lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    scheduler._last_lr = [now for _ in optimizer.param_groups]
    accelerator.print(f"[degmix-tuning] resumed with a changed recipe: {', '.join(changes)} (lr now {now:.3g})")
