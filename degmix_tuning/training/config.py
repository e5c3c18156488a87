"""Run configuration: `TrainConfig` (the official recipe as defaults) and `ExperimentConfig` (model + data + tuning + train).

The resolved `ExperimentConfig` is written as `config.json` in every run folder and inside every adapter file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import ConfigBase
from ..data.config import DataConfig
from ..models.factory import ModelConfig

MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class TrainConfig(ConfigBase):
    """Defaults follow the official recipe: SGD(0.9, wd 5e-4), lr 1e-3, poly(0.9) over 40k iterations, batch 8."""

    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    max_steps: int = 40_000
    batch_size: int = 8  # global batch (split over processes)
    eval_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    clip_grad_norm: float | None = None
    sync_bn: bool = True  # with several processes, BatchNorm statistics are synced (as the official recipe)
    freeze_bn: bool = False  # BatchNorm layers keep their running statistics while training (tiny per-process batches)
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16"
    seed: int = 0
    eval_every: int = 2_000  # steps; 0 = only at the end
    eval_at_start: bool = False  # also evaluate the untrained model (step 0), to see what training gained
    checkpoint_every: int = 5_000  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 20
    output_dir: str = "runs/degmix"
    trackers: tuple[str, ...] = ("tensorboard", "csv")
    max_eval_batches: int | None = None
    loss_weights: dict = field(default_factory=dict)  # {task: weight} overrides
    # --- fast path (training/fast_path.py, training/feature_cache.py) ---
    feature_cache: str = "off"  # "off" | "memory" | "disk": frozen-backbone features computed once per image
    feature_cache_dir: str | None = None  # disk cache folder; None -> <output_dir>/feature_cache
    channels_last: bool = False  # NHWC layout for conv weights and input images
    compile_head: bool = False  # torch.compile the head in place (first step pays the compile time)
    # --- end fast path ---

    def __post_init__(self):
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"train.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        for name in ("max_steps", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "momentum", "weight_decay", "poly_power"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"train.{name} must be a finite {'positive' if name == 'lr' else 'non-negative'} "
                                 f"number, got {value}")
        if self.clip_grad_norm is not None and not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ValueError(f"train.clip_grad_norm must be a finite positive number or null, got {self.clip_grad_norm}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0 (0: only at the end), got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1 (the newest is always kept), got "
                             f"{self.keep_checkpoints}")
        if self.feature_cache not in ("off", "memory", "disk"):  # fast path
            raise ValueError(f"train.feature_cache must be off, memory or disk, got {self.feature_cache!r}")
        known = {"tensorboard", "csv", "jsonl"}
        bad = set(self.trackers) - known
        if bad:
            raise ValueError(f"unknown trackers {sorted(bad)}; choose from {sorted(known)}")


@dataclass
class ExperimentConfig(ConfigBase):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tuning: str = "degmix"  # a registered tuning method (see `degmix-tuning report params`)
    tuning_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.model.dataset != self.data.dataset:
            raise ValueError(
                f"model.dataset={self.model.dataset!r} but data.dataset={self.data.dataset!r}; they must match"
            )
