"""Optimizer and learning-rate schedule of a run, built from `TrainConfig` (the protocol decides which).

- `degmix` protocol (the official DeMTG recipe): SGD (momentum, weight decay on every parameter) and
  lr * (1 - t / max_steps) ** poly_power, stepped after every optimizer step (torch's `PolynomialLR`).
- `mtlora` protocol (the MTLoRA / DiTASK code): AdamW with no weight decay on 1-d tensors and `.bias` only (their
  keyword lists are never consulted: MTLoRA optimizer.py l.33-37, 71-86 gets the multi-task wrapper, which has no
  `no_weight_decay()`, so relative position tables ARE decayed), lr, warm-up lr and min lr scaled linearly with the
  batch (main.py l.577-593), linear warm-up then cosine over the remaining steps, per optimizer step (timm's
  `CosineLRScheduler` with warmup_prefix, lr_scheduler.py l.25-45), wrapped so it steps like a torch scheduler.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def effective_lr(tc: TrainConfig, value: float | None = None) -> float:
    """The lr the optimizer uses: `value` (default train.lr) times batch x accumulation / lr_scale_batch if set."""
    value = tc.lr if value is None else value
    if tc.lr_scale_batch is None:
        return value
    return value * tc.batch_size * tc.gradient_accumulation_steps / tc.lr_scale_batch


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """AdamW's exempt parameters, as MTLoRA's code decides them: 1-d tensors (norm weights, biases) and `.bias`."""
    return param.ndim == 1 or name.endswith(".bias")


def build_optimizer(tc: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The trainable parameters of `model` under the config's optimizer (one group, or decay / no-decay groups)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the tuning method left no trainable parameters")
    lr = effective_lr(tc)
    if tc.optimizer == "sgd":
        return torch.optim.SGD([p for _, p in named], lr=lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    decay = [p for n, p in named if not no_weight_decay(n, p)]
    exempt = [p for n, p in named if no_weight_decay(n, p)]
    groups = [{"params": decay}, {"params": exempt, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(tc.betas), eps=tc.eps,
                             weight_decay=tc.weight_decay)


def total_steps(tc: TrainConfig, steps_per_epoch: int | None) -> int:
    """Optimizer steps of the run: epochs x steps per epoch when train.epochs is set, else max_steps."""
    if tc.epochs is None:
        return tc.max_steps
    if not steps_per_epoch:
        raise ValueError("train.epochs is set but the number of optimizer steps per epoch is unknown")
    return tc.epochs * steps_per_epoch


class CosineSchedule:
    """timm's `CosineLRScheduler` (warm-up + cosine, counted in optimizer updates) behind torch's scheduler calls:
    `step()` after each optimizer step, `get_last_lr()` (the lr of the next step), and a `state_dict` that is just
    the update count.

    As in MTLoRA's loop (main.py l.341-353), optimizer step i runs at the schedule's value for update max(i-1, 0):
    timm's constructor sets the warm-up lr, and `step_update(i)` is called after step i. So steps 0 and 1 both run
    at the warm-up lr and the peak is first used at step warmup + 1; the cosine spans total - warmup updates.
    """

    def __init__(self, tc: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int | None):
        from timm.scheduler import CosineLRScheduler

        self.optimizer, self.steps_per_epoch = optimizer, steps_per_epoch
        for group in optimizer.param_groups:  # timm reads the peak lr from here; set it so a rebuild takes a new lr
            group["initial_lr"] = effective_lr(tc)
        epoch_steps = steps_per_epoch or 0
        self.total = total_steps(tc, steps_per_epoch)
        warmup = int(tc.warmup_epochs * epoch_steps)
        self._timm = CosineLRScheduler(
            optimizer, t_initial=self.total - warmup, lr_min=effective_lr(tc, tc.min_lr),
            warmup_lr_init=effective_lr(tc, tc.warmup_lr), warmup_t=warmup, warmup_prefix=True, cycle_limit=1,
            t_in_epochs=False,
        )
        self.updates = 0  # optimizer steps taken

    def step(self) -> None:
        self._timm.step_update(self.updates)  # the value of update i, used by step i + 1
        self.updates += 1

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self._timm.step_update(max(self.updates - 1, 0))


def build_scheduler(tc: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int | None = None):
    """The config's schedule, stepped once after every optimizer step (`scheduler.step()`)."""
    if tc.schedule == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps(tc, steps_per_epoch),
                                                     power=tc.poly_power)
    return CosineSchedule(tc, optimizer, steps_per_epoch)
