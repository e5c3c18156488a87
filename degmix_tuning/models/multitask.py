"""`MultiTaskModel`: the backbone slot + a multi-task head, with the frozen-backbone fast path.

When every backbone parameter is frozen, the backbone runs in eval mode (no dropout, drop-path or BN updates)
and under `torch.no_grad()`, so no activations are kept for it; `model.train()` never flips it back to train.

Input images are checked for NaN/inf on the CPU (where torchvision's deform_conv2d would crash the process on them,
and reading the answer costs nothing) and in eval mode; a GPU training step skips the check, which would make it
wait for the device (a NaN input then surfaces as a NaN loss, named by the training loop).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..backbones import FeatureBackbone, freeze_module, is_frozen

FINITE_INPUT_CHECK_DEVICES = ("cpu",)  # where a training forward checks its images: a free check there


class MultiTaskModel(nn.Module):
    def __init__(self, backbone: FeatureBackbone, head: nn.Module, freeze_backbone: bool = True):
        super().__init__()
        self.backbone = backbone
        self.head = head
        if freeze_backbone:
            freeze_module(self.backbone)

    @property
    def tasks(self) -> list[str]:
        return list(self.head.tasks)

    @property
    def backbone_frozen(self) -> bool:
        return is_frozen(self.backbone)

    freeze_bn: bool = False  # BatchNorm layers use and keep their running statistics in train mode too

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def extract_features(self, images: Tensor) -> list[Tensor]:
        if self.backbone_frozen:
            self.backbone.eval()
            with torch.no_grad():
                feats = [f.detach() for f in self.backbone(images)]
        else:
            feats = self.backbone(images)
        if hasattr(self.backbone, "check_features"):
            self.backbone.check_features(images, feats)  # the slot contract, enforced where the maps are consumed
        return feats

    def forward(self, images: Tensor, features: list[Tensor] | None = None) -> dict[str, Tensor]:
        """images: [B, 3, H, W] normalised -> {task: [B, C_task, H, W]}. `features` skips the backbone (cache)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        check = images.device.type in FINITE_INPUT_CHECK_DEVICES or not self.training
        if check and not torch.isfinite(images).all():  # torchvision's CPU deform_conv2d crashes on NaN/inf
            bad = int((~torch.isfinite(images)).sum())
            raise ValueError(f"input images hold {bad} NaN/inf values; fix or drop those images (the model needs "
                             "finite pixel values)")
        feats = self.extract_features(images) if features is None else features
        return self.head(feats, tuple(images.shape[-2:]))
