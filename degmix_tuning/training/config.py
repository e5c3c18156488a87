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
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine")
LOSS_NORMALIZATIONS = ("image", "batch")
SELECTIONS = ("last", "best")


@dataclass
class TrainConfig(ConfigBase):
    """Defaults follow the official recipe: SGD(0.9, wd 5e-4), lr 1e-3, poly(0.9) over 40k iterations, batch 8.

    The `mtlora` protocol (training/protocols.py) switches to AdamW + warm-up/cosine counted in epochs; the optimizer
    and schedule are built from these fields by training/optim.py.
    """

    optimizer: str = "sgd"  # "sgd" (momentum, weight_decay) | "adamw" (betas, weight_decay; no decay on norms/biases)
    lr: float = 1e-3  # base lr; the lr used is lr * batch_size * gradient_accumulation_steps / lr_scale_batch if set
    lr_scale_batch: int | None = None  # linear lr scaling reference batch (MTLoRA: 512); None = lr as given
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 5e-4
    schedule: str = "poly"  # "poly": lr * (1 - t/T)^poly_power | "cosine": linear warm-up, then cosine to min_lr
    poly_power: float = 0.9
    warmup_epochs: float = 0.0  # cosine: warm-up length in epochs (linear from warmup_lr)
    warmup_lr: float = 0.0  # cosine: lr at step 0 of the warm-up (scaled like lr)
    min_lr: float = 0.0  # cosine: final lr (scaled like lr)
    max_steps: int = 40_000
    epochs: int | None = None  # when set, the run is epochs x optimizer steps per epoch (max_steps is derived)
    loss_normalization: str = "image"  # "image": per-image means averaged over the global batch (official DDP)
    select: str = "last"  # which evaluation the run reports: "last" (official) or "best" (MTLoRA: best Δm)
    eval_every_epochs: int | None = None  # when set, eval_every is derived from it (with epochs)
    eval_offset_epochs: int | None = None  # when set, eval_offset is derived from it (MTLoRA: 1, its 0-based epoch % 5)
    batch_size: int = 8  # global batch (split over processes)
    eval_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    # how gradients of the accumulated batches combine: "mean" (Accelerate's: the loss is divided by the steps) | "sum" (MTLoRA's loop)
    accumulation: str = "mean"
    clip_grad_norm: float | None = None
    sync_bn: bool = True  # with several processes, BatchNorm statistics are synced (as the official recipe)
    freeze_bn: bool = False  # BatchNorm layers keep their running statistics while training (tiny per-process batches)
    # "no" | "fp16" | "bf16"; None (not set): the launcher's choice (`accelerate launch --mixed_precision`, `accelerate
    # config`: ACCELERATE_MIXED_PRECISION), recorded here in config.json, else "no" (summary.json: the one used)
    mixed_precision: str | None = None
    seed: int = 0
    eval_every: int = 2_000  # steps; 0 = only at the end
    eval_offset: int = 0  # steps: evaluate at eval_offset + k * eval_every (k >= 0), and at the end
    eval_at_start: bool = False  # also evaluate the untrained model (step 0), to see what training gained
    checkpoint_every: int = 5_000  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 20
    output_dir: str = "runs/degmix"
    trackers: tuple[str, ...] = ("tensorboard", "csv")
    max_eval_batches: int | None = None
    loss_weights: dict = field(default_factory=dict)  # {task: weight} overrides
    edge_pos_weight: float | None = None  # edge loss positive-class weight; None: the dataset's official value (NYUD 0.8, PASCAL 0.95)
    # --- fast path (training/fast_path.py, training/feature_cache.py) ---
    feature_cache: str = "off"  # "off" | "memory" | "disk": frozen-backbone features computed once per image
    feature_cache_dir: str | None = None  # disk cache folder; None -> <output_dir>/feature_cache
    channels_last: bool = False  # NHWC layout for conv weights and input images
    compile_head: bool = False  # torch.compile the head in place (first step pays the compile time)
    # --- end fast path ---

    def __post_init__(self):
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"train.mixed_precision must be one of {MIXED_PRECISION} or null (the launcher's "
                             f"choice), got {self.mixed_precision!r}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("loss_normalization", LOSS_NORMALIZATIONS), ("select", SELECTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.accumulation not in ("mean", "sum"):
            raise ValueError(f"train.accumulation must be mean or sum, got {self.accumulation!r}")
        if self.eval_offset < 0 or (self.eval_offset_epochs is not None and self.eval_offset_epochs < 0):
            raise ValueError("train.eval_offset and train.eval_offset_epochs must be >= 0")
        for name in ("epochs", "eval_every_epochs", "lr_scale_batch"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive or null, got {getattr(self, name)}")
        if self.edge_pos_weight is not None and not 0.0 <= self.edge_pos_weight <= 1.0:
            raise ValueError(f"train.edge_pos_weight must be in [0, 1] or null, got {self.edge_pos_weight}")
        for name in ("warmup_epochs", "warmup_lr", "min_lr", "eps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"train.{name} must be a finite non-negative number, got {value}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
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
        from ..losses import check_loss_weights

        check_loss_weights(self.loss_weights)  # at config time, so --print-config and resume refuse them too
        known = {"tensorboard", "csv", "jsonl"}
        bad = set(self.trackers) - known
        if bad:
            raise ValueError(f"unknown trackers {sorted(bad)}; choose from {sorted(known)}")


    def is_eval_step(self, step: int) -> bool:
        """Whether optimizer step `step` (1-based) evaluates: eval_offset + k * eval_every, and the last step."""
        if step == self.max_steps:
            return True
        return bool(self.eval_every) and step >= self.eval_offset and (step - self.eval_offset) % self.eval_every == 0


@dataclass
class ExperimentConfig(ConfigBase):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tuning: str = "degmix"  # a registered tuning method (see `degmix-tuning report params`)
    tuning_kwargs: dict = field(default_factory=dict)
    protocol: str = "degmix"  # the named recipe the defaults came from (training/protocols.py)
    protocol_overrides: dict = field(default_factory=dict)  # {field: [protocol value, value used]}, as resolved
    random_backbone: bool = False  # train on frozen random-init backbone weights on purpose (real data)

    def __post_init__(self):
        from .protocols import PROTOCOLS

        PROTOCOLS.get(self.protocol)  # unknown name -> one line with the known ones
        if self.model.dataset != self.data.dataset:
            raise ValueError(
                f"model.dataset={self.model.dataset!r} but data.dataset={self.data.dataset!r}; they must match"
            )
