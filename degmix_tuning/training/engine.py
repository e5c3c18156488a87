"""The training loop, with Accelerate: one CPU process, one GPU, or many GPUs with DDP, mixed precision optional.

`train(cfg)` builds model + data from an `ExperimentConfig`, trains for `train.max_steps` optimizer steps
(SGD + poly decay), evaluates, checkpoints atomically, writes the run folder:

    <output_dir>/config.json            the resolved ExperimentConfig (of the last start or resume; a resume is
                                        checked against the checkpoint's own copy, not this file)
    <output_dir>/history.jsonl          one line per start / resume, with the config changes (training/resume.py)
    <output_dir>/metrics.jsonl          one line per evaluation: {"step", "metrics": {task: {metric: value}}}
    <output_dir>/log.csv, tensorboard/  Accelerate trackers
    <output_dir>/checkpoints/step_<n>/  training state (accelerator.save_state): adapter file, optimizer, RNG, plus
                                        training_state.json and config.json (checkpoint.py); the frozen backbone is
                                        rebuilt and checked by fingerprint on resume
    <output_dir>/adapter.safetensors    trainable parameters + config only (see checkpoint.load_tuned)
    <output_dir>/summary.json           parameter counts, adapter and full-model sizes, final metrics, median step
                                        time and step memory (training/step_stats.py)

Every file is written atomically or appended whole and fsynced (training/run_files.py), so a kill at any moment
leaves every file readable. SIGTERM/SIGINT write a checkpoint before stopping (training/stop_signals.py). A start
that fails before its first step removes the run folder it created (never one that held anything before), and the
run folder's `.lock` is removed on every exit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import IMAGENET_MEAN, IMAGENET_STD, build_dataset
from ..data.info import get_dataset_info
from ..data.seeded import SeededSamples  # moved to data/; importable from here too
from ..losses import MultiTaskLoss, NonFiniteLossError
from ..metrics import MultiTaskEvaluator, summary_line
from ..models import create_model
from ..params import count_parameters
from ..tuning import apply_tuning
from .checkpoint import (
    ADAPTER_NAME, TRAINING_STATE, describe_last_good, last_good_checkpoint, list_checkpoints, save_adapter,
    save_state_atomically, training_state_json, use_adapter_checkpoints, weight_health,
)
from . import backbone_weights
from .config import ExperimentConfig, TrainConfig
from .optim import build_optimizer, build_scheduler, effective_lr
from .protocols import headline_metric, protocol_differences
from .recipe import LAUNCHER_PRECISION, launcher_mixed_precision, resolve_mixed_precision
from .selection import BEST_ADAPTER_NAME, BestEvaluation, published_reference
from .fast_path import apply_fast_path, prepare_images  # fast path
from .feature_cache import build_train_feature_cache  # fast path
from .resume import (
    CHECKPOINT_CONFIG, apply_changed_recipe, load_newest_readable, record_history, resume_candidates,
    resume_changes,
)
from .run_folder import drop_logged_after, first_missing, logged_metrics, prepare_run_dir, remove_created
from .run_files import atomic_write_text
from .run_lock import RunFolderLock, is_main_launch_process
from .stop_signals import StopSignals
from .step_stats import StepStats
from .trackers import CSVTracker, append_jsonl, flatten_metrics


class TrainingDiverged(RuntimeError):
    """A task loss became NaN/inf; the message names the step, the task and the last good checkpoint."""


class TrainingProgress:
    """Optimizer steps done so far; saved in every checkpoint's training_state.json (checkpoint.load_checkpoint)."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


@dataclass
class RunResult:
    run_dir: Path
    step: int
    initial_metrics: dict | None
    final_metrics: dict | None
    adapter_path: Path | None
    summary: dict = field(default_factory=dict)
    main_process: bool = True  # False on the other ranks of a multi-process job: they print and write nothing


def build_model(cfg: ExperimentConfig):
    """ModelConfig + tuning method -> model with exactly the method's parameters trainable."""
    model = create_model(cfg.model)
    apply_tuning(model, cfg.tuning, **cfg.tuning_kwargs)
    return model


def _mean_std(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = getattr(model.backbone, "pretrained_cfg", {}) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def _make_accelerator(cfg: ExperimentConfig, run_dir: Path):
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    mp, launcher = cfg.train.mixed_precision or "no", launcher_mixed_precision()
    if mp == "fp16" and not torch.cuda.is_available():
        who = f"the launcher's ({LAUNCHER_PRECISION})" if launcher == "fp16" else "train.mixed_precision"
        raise ValueError(f"mixed precision fp16 ({who}) needs a CUDA GPU; on CPU use bf16 or no")
    if AcceleratorState._shared_state.get("_mixed_precision", mp) != mp:  # an earlier run of this process chose
        AcceleratorState._reset_state()  # another precision: accelerate would refuse to change it
    trackers = []
    if "tensorboard" in cfg.train.trackers:
        trackers.append("tensorboard")
    if "csv" in cfg.train.trackers:
        trackers.append(CSVTracker(run_name=run_dir.name, logging_dir=run_dir))
    # no head mode leaves parameters out of the graph: the "official" interaction's q/k projections do not affect
    # the output but get exact-zero gradients (MultiHeadAttention.value_only), so DDP needs no unused-param search
    unused = False
    from accelerate.utils import ProjectConfiguration

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # lets `accelerate launch --multi_gpu` / torchrun form a gloo job on CPU
        mixed_precision=mp,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tensorboard")),
        # non_blocking: the batch's copy to the GPU does not wait for the device (fully async from pinned memory)
        dataloader_config=DataLoaderConfiguration(even_batches=False, use_seedable_sampler=True, non_blocking=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
        step_scheduler_with_optimizer=False,
    )
    if launcher == mp:
        why = f"the launcher's choice ({LAUNCHER_PRECISION})"
    elif launcher:
        why = f"set by train.mixed_precision, which wins over the launcher's {launcher} ({LAUNCHER_PRECISION})"
    else:
        why = "train.mixed_precision; the launcher chose none"
    accelerator.print(f"[degmix-tuning] mixed precision {mp}: {why}")
    return accelerator


def evaluate(model, loader, evaluator: MultiTaskEvaluator, accelerator=None, max_batches: int | None = None) -> dict:
    """Metrics over the whole loader (pooled, summed across processes)."""
    if accelerator is not None:
        # DDP's forward syncs buffers collectively; with uneven eval shards a rank would wait forever
        model = accelerator.unwrap_model(model)
        if accelerator.num_processes > 1:
            # every rank evaluates the model rank 0 saves: its BatchNorm statistics (per process without SyncBN)
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
    was_training = model.training
    model.eval()
    evaluator.reset()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            out = model(batch["image"])
            evaluator.update({t: v.float() for t, v in out.items()}, batch)
    if accelerator is not None and accelerator.num_processes > 1:
        evaluator.to(accelerator.device)  # a process that saw no batch still holds its (empty) state on the CPU
        evaluator.reduce_(lambda t: accelerator.reduce(t.contiguous(), reduction="sum"))
    metrics = evaluator.compute()
    model.train(was_training)
    return metrics


def optimizer_steps_per_epoch(cfg: ExperimentConfig, n_train: int) -> int:
    """Optimizer steps in one pass over the train split (incomplete last batches are dropped; one step is
    `gradient_accumulation_steps` batches, as MTLoRA's `len(loader) // ACCUMULATION_STEPS`)."""
    return n_train // cfg.train.batch_size // cfg.train.gradient_accumulation_steps


def resolve_run_length(cfg: ExperimentConfig) -> ExperimentConfig:
    """A run counted in epochs (the MTLoRA protocol) as optimizer steps: max_steps = epochs x steps per epoch, and
    eval_every from eval_every_epochs; recorded so config.json says how many steps ran."""
    tc = cfg.train
    if tc.epochs is None and tc.eval_every_epochs is None and tc.eval_offset_epochs is None:
        return cfg
    n_train = len(build_dataset(cfg.data, cfg.data.train_split, list(cfg.model.tasks), train=True))
    per_epoch = optimizer_steps_per_epoch(cfg, n_train)
    if per_epoch == 0:
        raise ValueError(f"the train split has {n_train} samples, fewer than one batch ({tc.batch_size})")
    derived = []
    if tc.epochs is not None:
        derived.append(f"train.max_steps={tc.epochs * per_epoch}")
    if tc.eval_every_epochs is not None:
        derived.append(f"train.eval_every={tc.eval_every_epochs * per_epoch}")
    if tc.eval_offset_epochs is not None:
        derived.append(f"train.eval_offset={tc.eval_offset_epochs * per_epoch}")
    return cfg.override(derived)


def resolve_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config a run trains with: precision not set -> the launcher's, the run length in steps, and the protocol
    values it overrides (what config.json records and --print-config shows)."""
    cfg = resolve_run_length(resolve_mixed_precision(cfg))
    return dataclasses.replace(cfg, protocol_overrides=protocol_differences(resolve_mixed_precision(cfg, "no")))


def build_criterion(tc: TrainConfig, tasks: list[str], info) -> MultiTaskLoss:
    """The run's loss: the dataset's loss settings (edge positive weight) unless train.edge_pos_weight names one."""
    if tc.edge_pos_weight is not None:
        info = dataclasses.replace(info, edge_pos_weight=tc.edge_pos_weight)
    return MultiTaskLoss(tasks, info, tc.loss_weights or None, per_image=tc.loss_normalization == "image")


def build_model_for_crop(cfg: ExperimentConfig, say=print) -> tuple[ExperimentConfig, torch.nn.Module]:
    """`build_model`, and a backbone that runs at one input size (MLP-Mixer, LeViT, MaxViT, Hiera) rebuilt for the
    crop size, recorded as model.img_size."""
    model = build_model(cfg)
    need = model.backbone.img_size_for(cfg.data.resolved_crop_size())
    if cfg.model.img_size is None and need is not None and tuple(need) != model.backbone.fixed_input_size:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, img_size=tuple(need)))
        say(f"[degmix-tuning] {cfg.model.backbone} runs at one input size: built for {need[0]}x{need[1]}")
        model = build_model(cfg)
    return cfg, model


def _check_finite_weights(model, step: int, run_dir: Path) -> float:
    """A checkpoint must never hold NaN/inf: diverged weights (e.g. BatchNorm running_var = inf) stop the run.
    Returns the largest |weight| (recorded in the checkpoint: what makes it a good one to resume from or not)."""
    bad, largest = weight_health(model)
    if bad:
        raise TrainingDiverged(
            f"weights became non-finite by step {step} ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
            f"{describe_last_good(run_dir)}. Lower train.lr or enable train.clip_grad_norm, then --resume it"
        )
    return largest


def train(
    cfg: ExperimentConfig,
    resume_from: str | None = None,
    stop_after: int | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Run (or resume) a training job. `stop_after` ends the process early at that step (used to test resume).

    The run folder is locked for the whole run (`run_lock.py`): a second run on it stops at once with one line.
    SIGTERM/SIGINT stop it after the current step with a checkpoint (`stop_signals.py`, TrainingInterrupted). A
    start that fails before training removes the folders it created, never a folder that existed before.
    """
    backbone_weights.require_real_weights(cfg)  # before the run folder exists: frozen weights never random by accident
    run_dir = Path(cfg.train.output_dir)
    main = is_main_launch_process()
    created = first_missing(run_dir) if main else None  # what a failed start may remove: only what it created
    started = []
    try:
        with StopSignals() as signals, RunFolderLock(run_dir, enabled=main):
            return _train(cfg, resume_from, stop_after, show_progress, signals, started)
    except BaseException:
        if created is not None and not started:
            remove_created(created, run_dir)
        raise


@dataclass
class _Run:
    """What `_setup` builds and the per-step functions share, so each of them takes one argument."""

    cfg: ExperimentConfig
    run_dir: Path
    accelerator: Any
    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped in a multi-process job)
    params: list[torch.nn.Parameter]  # the trainable ones: the optimizer's and the gradient clipping's
    optimizer: Any
    scheduler: Any
    criterion: MultiTaskLoss
    evaluator: MultiTaskEvaluator
    train_ds: SeededSamples
    val_ds: Dataset
    train_loader: Any
    val_loader: Any
    feature_cache: Any  # fast path: None when train.feature_cache is off
    progress: TrainingProgress
    bar: _ProgressBar
    step_stats: StepStats
    initial_metrics: dict | None = None
    final_metrics: dict | None = None
    last_ckpt: Path | None = None  # the newest checkpoint of this run (a stop signal does not write it twice)
    last_ckpt_step: int | None = None
    checkpoint_objects: dict = field(default_factory=dict)  # saved in training_state.json: schedule, step, best
    last_loss: float | None = None  # the last logged loss: recorded in each checkpoint's health
    resumed_step: int | None = None
    adapter_step: int | None = None  # the step whose adapter.safetensors this run wrote last (written once)
    weights_info: dict = field(default_factory=dict)  # which weights the backbone started from (backbone_weights.py)
    best: BestEvaluation | None = None  # train.select=best: the best evaluation so far (selection.py)
    step_start: float = field(default_factory=time.perf_counter)  # images/s since the last log line
    imgs_since: int = 0


def _train(cfg: ExperimentConfig, resume_from: str | None, stop_after: int | None, show_progress: bool,
           signals: StopSignals, started: list) -> RunResult:
    """The loop of accelerate's complete_cv_example.py: epochs of batches, `train_step` on each batch,
    `on_step_end` after each optimizer step (a step is `gradient_accumulation_steps` batches). A stop signal is
    honoured after the step it arrives in: checkpoint, adapter and summary, then TrainingInterrupted."""
    run = _setup(cfg, resume_from, show_progress)
    started.append(True)  # from here on the run folder holds this run's record: never removed
    cfg = run.cfg  # resolved: run length from train.epochs, protocol overrides
    tc, accelerator, progress = cfg.train, run.accelerator, run.progress
    stopping = False

    def stop_requested(step: int) -> bool:
        if accelerator.num_processes == 1:
            return signals.requested is not None
        if step % tc.log_every:  # agreed on logging steps only: a collective there costs nothing extra
            return False
        flag = torch.tensor([0 if signals.requested is None else int(signals.requested)], device=accelerator.device)
        flag = accelerator.reduce(flag, reduction="sum")  # any process signalled: all stop at this step
        if signals.requested is None and int(flag.item()):
            signals.requested = int(signal.SIGTERM)
        return bool(flag.item())

    def done(step: int) -> bool:
        return step >= tc.max_steps or (stop_after is not None and step >= stop_after)

    signals.in_loop = True
    try:
        with run.bar:
            while progress.step < tc.max_steps:
                # epoch and position in it follow from the step, so a resume continues mid-epoch
                epoch, skip = divmod(progress.step * tc.gradient_accumulation_steps, len(run.train_loader))
                run.train_ds.set_epoch(epoch)
                run.train_loader.set_epoch(epoch)
                loader = accelerator.skip_first_batches(run.train_loader, skip) if skip else run.train_loader
                for batch in loader:
                    loss, parts = train_step(run, batch)
                    if not accelerator.sync_gradients:  # accumulating: no optimizer step yet
                        continue
                    progress.step += 1
                    on_step_end(run, loss, parts)
                    if stop_requested(progress.step):
                        stopping = True
                    if done(progress.step) or stopping:
                        break
                if done(progress.step) or stopping:
                    break
        if stopping:
            _check_deferred(run)
            if run.last_ckpt_step != progress.step:  # the state of this step, unless just written
                largest = _check_finite_weights(accelerator.unwrap_model(run.model), progress.step, run.run_dir)
                _write_adapter(run, progress.step)
                _checkpoint(run, progress.step, largest)
    finally:
        signals.in_loop = False
        accelerator.end_training()
    if run.feature_cache is not None:  # fast path
        st = run.feature_cache.cache.stats
        accelerator.print(f"[degmix-tuning] feature cache ({tc.feature_cache}): {st.hits} hits, {st.misses} "
                          f"computed, {st.invalidated} invalidated")
    adapter_path, summary = _write_summary(run) if accelerator.is_main_process else (None, {})
    if stopping:
        raise signals.stop_message(progress.step, run.last_ckpt)
    return RunResult(run.run_dir, progress.step, run.initial_metrics, run.final_metrics, adapter_path, summary,
                     accelerator.is_main_process)


def _setup(cfg: ExperimentConfig, resume_from: str | None, show_progress: bool) -> _Run:
    """Everything the loop needs, from the config: model, data, optimizer, accelerate, the resumed state, and the
    evaluation at step 0 (a fresh run with train.eval_at_start). Raises before training on any config problem."""
    from accelerate.utils import set_seed

    run_dir = prepare_run_dir(cfg, resume=bool(resume_from))
    candidates = resume_candidates(run_dir, resume_from)
    cfg = resolve_config(cfg)  # launcher's precision, train.epochs -> max_steps, protocol overrides
    accelerator = _make_accelerator(cfg, run_dir)
    # before the model is built: a resume may change the recipe, never the model, tuning, tasks or data; checked
    # against the config the checkpoint was written with (config.json of the run folder can be edited or deleted)
    config_changes = (resume_changes(run_dir, cfg.to_dict(), candidates[0], accelerator.print)
                      if candidates else {})
    tc = cfg.train
    set_seed(tc.seed)
    if cfg.protocol_overrides:
        accelerator.print(f"[degmix-tuning] protocol {cfg.protocol}, overridden: " + ", ".join(
            f"{k} {old!r} -> {new!r}" for k, (old, new) in cfg.protocol_overrides.items()))
    else:
        accelerator.print(f"[degmix-tuning] protocol {cfg.protocol}, no value overridden")

    cfg, model = build_model_for_crop(cfg, accelerator.print)
    weights_info = backbone_weights.describe(cfg, model.backbone)
    accelerator.print(f"[degmix-tuning] {backbone_weights.one_line(weights_info)}")
    model.freeze_bn = tc.freeze_bn
    if tc.sync_bn and accelerator.num_processes > 1:  # the official recipe syncs BatchNorm statistics across GPUs
        if accelerator.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            accelerator.print(f"[degmix-tuning] train.sync_bn: SyncBatchNorm needs CUDA; on {accelerator.device.type} "
                              "each process keeps its own BatchNorm statistics")
    apply_fast_path(model, tc)  # fast path: channels_last / compiled head (train.channels_last, train.compile_head)
    info = get_dataset_info(cfg.model.dataset)
    tasks = list(cfg.model.tasks)
    mean, std = _mean_std(model)
    train_ds = SeededSamples(
        build_dataset(cfg.data, cfg.data.train_split, tasks, train=True, mean=mean, std=std), tc.seed
    )
    val_ds = build_dataset(cfg.data, cfg.data.val_split, tasks, train=False, mean=mean, std=std)
    if cfg.data.pipeline == "atrc":  # native-size evaluation: now, not at the first evaluation thousands of steps later
        val_ds.check_fits(cfg.data.resolved_crop_size())
    # fast path: frozen-backbone features computed once per image (train.feature_cache); None when off
    feature_cache = build_train_feature_cache(cfg, model, run_dir, accelerator.autocast)

    world = accelerator.num_processes * tc.gradient_accumulation_steps
    if tc.batch_size % world:
        raise ValueError(
            f"train.batch_size={tc.batch_size} must be divisible by processes x accumulation steps = {world}"
        )
    per_device = tc.batch_size // world
    if len(train_ds) < per_device * accelerator.num_processes:
        raise ValueError(f"the train split has {len(train_ds)} samples, fewer than one batch ({tc.batch_size})")
    generator = torch.Generator().manual_seed(tc.seed)
    pin = accelerator.device.type == "cuda"  # page-locked batches: the non-blocking copy to the GPU overlaps compute
    train_loader = DataLoader(train_ds, batch_size=per_device, shuffle=True, drop_last=True,
                              num_workers=cfg.data.num_workers, generator=generator,
                              persistent_workers=False, pin_memory=pin)
    val_loader = DataLoader(val_ds, batch_size=tc.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                            pin_memory=pin)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"tuning method {cfg.tuning!r} left no trainable parameters")
    optimizer = build_optimizer(tc, model)
    scheduler = build_scheduler(tc, optimizer, optimizer_steps_per_epoch(cfg, len(train_ds)))
    criterion = build_criterion(tc, tasks, info)
    evaluator = MultiTaskEvaluator(tasks, info)

    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    progress = TrainingProgress()
    # saved in training_state.json (JSON, never unpickled); the order is that of older checkpoints' .pkl files
    objects = {"scheduler": scheduler, "progress": progress}
    best = None
    if tc.select == "best":
        best = BestEvaluation(cfg.protocol, *published_reference(cfg.model.backbone, cfg.model.dataset, tasks))
        objects["best"] = best
    use_adapter_checkpoints(accelerator, cfg.to_dict(), lambda: progress.step)  # no frozen backbone in checkpoints
    report = count_parameters(accelerator.unwrap_model(model))
    accelerator.print(f"[degmix-tuning] {cfg.tuning} on {cfg.model.backbone}: {report}")

    initial_metrics = final_metrics = None
    resume_path = None
    if candidates:
        def check_config(path: Path) -> None:
            config_changes.clear()
            config_changes.update(resume_changes(run_dir, cfg.to_dict(), path, accelerator.print))

        resume_path = load_newest_readable(accelerator, candidates, objects, check_config)
        accelerator.print(f"[degmix-tuning] resumed from {resume_path} at step {progress.step}")
        apply_changed_recipe(accelerator, optimizer, scheduler, cfg, progress.step)
        if config_changes:
            accelerator.print("[degmix-tuning] config changed on resume (recorded in history.jsonl): " + ", ".join(
                f"{k} {old!r} -> {new!r}" for k, (old, new) in config_changes.items()))
        initial_metrics, final_metrics = logged_metrics(run_dir, progress.step)  # until it evaluates again
    # the start succeeded: from here on this run writes its record
    if accelerator.is_main_process:
        atomic_write_text(run_dir / "config.json", cfg.to_json() + "\n")
        # rows after the checkpoint (or, for a start over a run stopped before its first checkpoint, every row)
        # belong to a trajectory that is replaced: every step is logged once
        drop_logged_after(run_dir, progress.step if candidates else -1)
        if candidates:
            record_history(run_dir, "resume", progress.step, checkpoint=str(resume_path), changes=config_changes,
                           backbone_weights=weights_info)
        else:
            record_history(run_dir, "start", 0, backbone_weights=weights_info)  # recorded before any step runs
    accelerator.init_trackers(run_dir.name, config=_tracker_config(cfg))
    if not candidates and tc.eval_at_start:
        initial_metrics = evaluate(model, val_loader, evaluator, accelerator, tc.max_eval_batches)
        _record_eval(accelerator, run_dir, 0, initial_metrics)

    steps_per_epoch = len(train_loader) // tc.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise ValueError("the train split is smaller than one optimizer step's worth of batches")
    model.train()
    bar = _ProgressBar(show_progress and accelerator.is_main_process, tc.max_steps, progress.step, tasks)
    return _Run(
        cfg=cfg, run_dir=run_dir, accelerator=accelerator, model=model, params=params, optimizer=optimizer,
        scheduler=scheduler, criterion=criterion, evaluator=evaluator, train_ds=train_ds, val_ds=val_ds,
        train_loader=train_loader, val_loader=val_loader, feature_cache=feature_cache, progress=progress, bar=bar,
        step_stats=StepStats(accelerator.device.type),  # summary.json: median step time, step memory
        initial_metrics=initial_metrics, final_metrics=final_metrics, last_ckpt=resume_path,
        last_ckpt_step=progress.step if resume_path else None, weights_info=weights_info, best=best,
        checkpoint_objects=objects, resumed_step=progress.step if resume_path else None,
    )


def train_step(run: _Run, batch: dict) -> tuple[torch.Tensor, dict]:
    """One batch: forward, loss, backward; the optimizer steps when accelerate closes the accumulation window.

    Returns the loss and the per-task losses. Timed into `run.step_stats` (summary.json's step time and memory).
    """
    tc, accelerator, model = run.cfg.train, run.accelerator, run.model
    run.step_stats.begin()
    with accelerator.accumulate(model):
        images = prepare_images(batch["image"], tc)  # fast path
        feats = run.feature_cache.features({**batch, "image": images}) if run.feature_cache else None
        out = model(images, features=feats)
        loss, parts = run.criterion(out, batch, check_finite=False)
        try:  # NaN/inf raises here where reading it is free (CPU), else at the next log/eval/checkpoint step
            run.criterion.watch.record(run.progress.step + 1, parts)
        except NonFiniteLossError as exc:
            raise _diverged(run, exc) from exc
        # Accelerate divides by the accumulation steps (a mean); MTLoRA's loop adds the micro-batches' gradients
        accelerator.backward(loss * tc.gradient_accumulation_steps if tc.accumulation == "sum" else loss)
        if accelerator.sync_gradients and tc.clip_grad_norm:
            accelerator.clip_grad_norm_(run.params, tc.clip_grad_norm)
        run.optimizer.step()
        if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    run.step_stats.end(accelerator.sync_gradients)
    run.imgs_since += batch["image"].shape[0] * accelerator.num_processes
    return loss, parts


def _diverged(run: _Run, exc: NonFiniteLossError) -> TrainingDiverged:
    return TrainingDiverged(
        f"loss became {exc.value} at step {exc.step} in task {exc.task!r}; {describe_last_good(run.run_dir)}. "
        "Lower train.lr, enable train.clip_grad_norm, or use mixed_precision=no/bf16 instead of fp16, then --resume it"
    )


def _check_deferred(run: _Run) -> None:
    """The checks a step defers so that it never waits for the GPU: the first NaN/inf task loss since the start
    (losses.LossWatch; the earliest over all processes) and the feature cache's changed images."""
    def reduce_min(t: torch.Tensor) -> None:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)

    try:
        run.criterion.watch.check(reduce_min if run.accelerator.num_processes > 1 else None)
    except NonFiniteLossError as exc:
        raise _diverged(run, exc) from exc
    if run.feature_cache is not None:  # fast path
        run.feature_cache.check()


def on_step_end(run: _Run, loss: torch.Tensor, parts: dict) -> None:
    """After optimizer step `run.progress.step`: log and progress bar, then when due check the weights, evaluate,
    save the final adapter and checkpoint, in this order (the adapter before the checkpoint that may fail)."""
    tc, accelerator, model, bar = run.cfg.train, run.accelerator, run.model, run.bar
    step = run.progress.step
    is_last = step == tc.max_steps
    due_eval = tc.is_eval_step(step)
    due_ckpt = bool(tc.checkpoint_every and step % tc.checkpoint_every == 0) or is_last
    due_log = step % tc.log_every == 0 or is_last
    if due_log or due_eval or due_ckpt:  # only these steps wait for the device (a GPU): the deferred checks too
        _check_deferred(run)
    if due_log:
        if accelerator.num_processes > 1:  # log the global batch's losses (its mean over processes), not rank 0's
            loss = accelerator.reduce(loss.detach(), reduction="mean")
            parts = {t: accelerator.reduce(v.detach(), reduction="mean") for t, v in parts.items()}
        elapsed = time.perf_counter() - run.step_start
        ips = run.imgs_since / max(elapsed, 1e-9)
        run.last_loss = float(loss.detach())
        logs = {"train/loss": run.last_loss, "train/lr": run.scheduler.get_last_lr()[0],
                "train/images_per_s": ips}
        logs.update({f"train/loss_{t}": float(v) for t, v in parts.items()})
        accelerator.log(logs, step=step)
        run.step_start, run.imgs_since = time.perf_counter(), 0
        bar.update(step, {t: float(v) for t, v in parts.items()}, ips)
    else:
        bar.update(step, None, None)
    largest = None
    if due_eval or due_ckpt:  # never evaluate or save diverged weights
        largest = _check_finite_weights(accelerator.unwrap_model(model), step, run.run_dir)
    if due_eval:
        bar.note(f"step {step}: evaluating ({len(run.val_ds)} val images)")
        run.final_metrics = evaluate(model, run.val_loader, run.evaluator, accelerator, tc.max_eval_batches)
        _record_eval(accelerator, run.run_dir, step, run.final_metrics)
        if run.best is not None and run.best.offer(step, run.final_metrics) and accelerator.is_main_process:
            save_adapter(accelerator.unwrap_model(model), run.run_dir / BEST_ADAPTER_NAME, run.cfg.to_dict(),
                         {"step": step})
    if is_last:  # the small result first: a failing checkpoint (e.g. a full disk) must not take the adapter with it
        _write_adapter(run, step)
    if due_ckpt:
        bar.note(f"step {step}: writing checkpoint")
        _checkpoint(run, step, largest)


def _write_adapter(run: _Run, step: int) -> None:
    """adapter.safetensors with the weights of `step` (main process), written once per step."""
    if run.accelerator.is_main_process and run.adapter_step != step:
        save_adapter(run.accelerator.unwrap_model(run.model), run.run_dir / ADAPTER_NAME, run.cfg.to_dict(),
                     {"step": step})
    run.adapter_step = step

def _write_summary(run: _Run) -> tuple[Path, dict]:
    """Main process, after training: the adapter of the last step (if the loop did not write it) and summary.json."""
    cfg, accelerator, step = run.cfg, run.accelerator, run.progress.step
    unwrapped = accelerator.unwrap_model(run.model)
    adapter_path = run.run_dir / ADAPTER_NAME
    summary_path = run.run_dir / "summary.json"
    if run.resumed_step == step and adapter_path.exists() and summary_path.exists():
        # a resume that trained nothing (the run was already at its max_steps): its record stays as it was
        accelerator.print(f"[degmix-tuning] the run is already at step {step}: nothing trained, summary.json kept")
        import json

        return adapter_path, json.loads(summary_path.read_text())
    _write_adapter(run, step)  # stopped early (stop_after): the adapter of this step, unless already written
    summary = {
        "step": step,
        "protocol": cfg.protocol,
        "protocol_overrides": cfg.protocol_overrides,
        "backbone_weights": run.weights_info,
        "effective_lr": effective_lr(cfg.train),
        "mixed_precision": accelerator.mixed_precision,  # the precision used (config.json: train.mixed_precision)
        "processes": accelerator.num_processes,
        "params": count_parameters(unwrapped).as_dict(),
        "adapter_bytes": adapter_path.stat().st_size,
        "full_model_bytes": sum(t.numel() * t.element_size() for t in unwrapped.state_dict().values()),
        "initial_metrics": run.initial_metrics,
        "final_metrics": run.final_metrics,
        # the protocol's result keys (e.g. saliency per_image_miou under mtlora) of the reported evaluation
        "headline_metrics": _headline(cfg, run.best.metrics if run.best else run.final_metrics),
        "selected": run.best.summary() if run.best else {"rule": "last", "step": step},
        **run.step_stats.summary(),  # this process's steps only (a resumed run: those after the resume)
    }
    import json

    atomic_write_text(summary_path, json.dumps(summary, indent=2, default=float) + "\n")
    accelerator.print(
        f"[degmix-tuning] adapter {adapter_path} = {summary['adapter_bytes'] / 1e6:.2f} MB "
        f"(full model {summary['full_model_bytes'] / 1e6:.1f} MB)"
    )
    return adapter_path, summary


def _headline(cfg: ExperimentConfig, metrics: dict | None) -> dict | None:
    if not metrics:
        return None
    keys = {t: headline_metric(cfg.protocol, t) for t in metrics}
    return {t: {keys[t]: m.get(keys[t])} for t, m in metrics.items()}


def _tracker_config(cfg: ExperimentConfig) -> dict:
    """The config as {"model.backbone": "swin_t", ...} with scalar values (what trackers accept)."""
    flat = ExperimentConfig.flat_fields(cfg.to_dict())
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}


def _record_eval(accelerator, run_dir: Path, step: int, metrics: dict) -> None:
    accelerator.log(flatten_metrics(metrics), step=step)
    if accelerator.is_main_process:
        append_jsonl(run_dir / "metrics.jsonl", {"step": step, "metrics": metrics})
        accelerator.print(f"[degmix-tuning] step {step} eval: {summary_line(metrics)}")  # missing: with reason


def _checkpoint(run: _Run, step: int, largest: float) -> Path:
    """checkpoints/step_<step> (with the adapter file, training_state.json, config.json), then the oldest beyond
    train.keep_checkpoints are removed, except the newest good one (checkpoint.checkpoint_health): a run whose
    weights blew up keeps a checkpoint to go back to."""
    accelerator, cfg, run_dir = run.accelerator, run.cfg, run.run_dir
    files = {TRAINING_STATE: training_state_json(run.checkpoint_objects,
                                                 {"step": step, "loss": run.last_loss, "max_abs_weight": largest}),
             CHECKPOINT_CONFIG: cfg.to_json() + "\n"}
    ckpt = save_state_atomically(accelerator, run_dir / "checkpoints" / f"step_{step}", files)
    if accelerator.is_main_process:
        keep, _ = last_good_checkpoint(run_dir)
        for old in list_checkpoints(run_dir / "checkpoints")[: -cfg.train.keep_checkpoints]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    run.last_ckpt, run.last_ckpt_step = ckpt, step
    return ckpt


class _ProgressBar:
    """Training progress on the main process: a rich bar in a terminal, plain periodic lines in a log file.

    The bar shows step, elapsed and remaining time, and the per-task losses; a non-terminal stdout (a log file, a
    job scheduler) gets one line per `train.log_every` steps instead of a bar that only shows its last frame.
    """

    def __init__(self, enabled: bool, total: int, start: int, tasks: list[str]):
        self.enabled = enabled and os.environ.get("DEGMIX_NO_PROGRESS") != "1"
        self.total, self.start, self.tasks = total, start, tasks
        self._progress = None
        self._task = None
        self._text = ""
        self._t0 = time.perf_counter()
        self.plain = False

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
            )

            self.plain = not Console().is_terminal
            if self.plain:
                return self
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, completed=self.start, info="first step")
        return self

    def update(self, step: int, losses: dict | None, ips: float | None) -> None:
        if losses is not None:
            parts = " ".join(f"{t[:6]} {v:.3f}" for t, v in losses.items() if math.isfinite(v))
            self._text = f"{parts} | {ips:.1f} img/s"
        if self.plain and self.enabled and losses is not None:
            done = max(step - self.start, 1)
            elapsed = time.perf_counter() - self._t0
            eta = elapsed / done * (self.total - step)
            print(f"[degmix-tuning] step {step}/{self.total} {self._text} | elapsed {elapsed:.0f}s, eta {eta:.0f}s",
                  flush=True)
        if not self._progress:
            return
        self._progress.update(self._task, completed=step, info=self._text)

    def note(self, what: str) -> None:
        """Say what a long pause is (evaluation, checkpoint): in the bar, or as a line in a log file."""
        if self._progress:
            self._progress.update(self._task, info=what)
        elif self.plain and self.enabled:
            print(f"[degmix-tuning] {what}", flush=True)

    def __exit__(self, *exc):
        if self._progress:
            self._progress.__exit__(*exc)
        return False
