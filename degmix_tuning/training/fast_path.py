"""Speed switches for training that never change what the model computes (only how): channels_last memory
layout, an in-place `torch.compile` of the head, and autocast / frozen-backbone helpers used by the benchmarks.

Semantics are kept: parameter names and counts do not change (`nn.Module.compile` compiles in place, so
adapter files and checkpoints keep their keys), and channels_last only changes strides.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D parameter/buffer (conv weights) as channels_last, in place; returns the model."""
    return model.to(memory_format=torch.channels_last)


def channels_last_images(images: Tensor) -> Tensor:
    """[B, C, H, W] images in channels_last layout (same values, NHWC strides)."""
    if images.ndim != 4:
        raise ValueError(f"channels_last needs [B, C, H, W] images, got shape {tuple(images.shape)}")
    return images.contiguous(memory_format=torch.channels_last)


def compile_head(model: nn.Module, **compile_kwargs) -> nn.Module:
    """`torch.compile` the head in place (`nn.Module.compile`): state_dict keys stay `head.*`. The first step
    pays the compile time (minutes on a small CPU); worth it only for long runs.

    Training and evaluation compile separate graphs (grad mode and BN mode are guarded). With torchvision's deform
    op ("auto" on GPU) the head is one graph; the CPU default (grid_sample) breaks it at the data-dependent branch
    of `deform_ops._normalised_grid` in every deformable conv. A compiled CPU step measured no faster than eager."""
    head = getattr(model, "head", None)
    if head is None:
        raise TypeError("compile_head expects a MultiTaskModel (with .head)")
    head.compile(**compile_kwargs)
    return model


def autocast(precision: str = "no", device: str = "cpu"):
    """A torch.autocast context for "bf16"/"fp16", or a no-op for "no"."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {tuple(AUTOCAST_DTYPES)}, got {precision!r}")
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def frozen_features_inference_mode(model: nn.Module, images: Tensor) -> list[Tensor]:
    """The frozen backbone under `torch.inference_mode()`; the maps are cloned outside it so autograd can save
    them for the head's backward (inference tensors cannot be saved). Same values as `model.extract_features`."""
    if any(p.requires_grad for p in model.backbone.parameters()):
        raise ValueError("frozen_features_inference_mode needs a frozen backbone; this one has trainable parameters")
    model.backbone.eval()
    with torch.inference_mode():
        feats = model.backbone(images)
    return [f.clone() for f in feats]


def apply_fast_path(model: nn.Module, train_cfg) -> nn.Module:
    """Apply `train_cfg.channels_last` and `train_cfg.compile_head` (TrainConfig) to a built model, in place."""
    if getattr(train_cfg, "channels_last", False):
        to_channels_last(model)
    if getattr(train_cfg, "compile_head", False):
        compile_head(model)
    return model


def prepare_images(images: Tensor, train_cfg) -> Tensor:
    """The batch's images in the layout the fast path wants (channels_last when `train_cfg.channels_last`)."""
    return channels_last_images(images) if getattr(train_cfg, "channels_last", False) else images


__all__ = [
    "AUTOCAST_DTYPES", "apply_fast_path", "autocast", "channels_last_images", "compile_head",
    "frozen_features_inference_mode", "prepare_images", "to_channels_last",
]
