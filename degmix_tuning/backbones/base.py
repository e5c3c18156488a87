"""The contract of the backbone slot: a module that maps images to a list of NCHW feature maps.

Consumers (the DeGMix fusion, baseline decoders) size themselves from `feature_info`, never from channel
tables typed by hand.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FeatureInfo:
    """One returned feature map: its channels, its stride w.r.t. the input and the module that makes it."""

    num_chs: int
    reduction: int
    name: str = ""

    def __post_init__(self):
        if not (isinstance(self.num_chs, int) and self.num_chs > 0 and isinstance(self.reduction, int) and self.reduction > 0):
            raise ValueError(f"FeatureInfo needs positive integer channels and stride, got {self}")


def check_feature_info(name: str, infos: tuple[FeatureInfo, ...]) -> None:
    """The slot contract every consumer relies on: at least one map, strides never decreasing (as timm enforces)."""
    if not infos:
        raise TypeError(f"backbone {name!r} declares no feature maps (feature_info is empty)")
    reductions = [f.reduction for f in infos]
    if any(b < a for a, b in zip(reductions, reductions[1:])):
        raise TypeError(f"backbone {name!r} declares decreasing strides {reductions}; order its maps fine to coarse")


class FeatureBackbone(nn.Module):
    """Base class for everything that can sit in the backbone slot.

    Subclasses set `feature_info` (one entry per returned map, reductions never decreasing) and
    `pretrained_cfg` (at least `mean` and `std`, timm's keys) and implement `forward(x) -> list[Tensor]`.
    """

    feature_info: tuple[FeatureInfo, ...] = ()
    pretrained_cfg: Mapping[str, Any] = {}

    @property
    def channels(self) -> list[int]:
        return [f.num_chs for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f.reduction for f in self.feature_info]

    def check_features(self, x: Tensor, feats: list[Tensor]) -> None:
        """Raise a clear error when a backbone breaks the slot contract (wrong count, channels or layout)."""
        if len(feats) != len(self.feature_info):
            raise RuntimeError(f"{type(self).__name__} returned {len(feats)} maps but declares {len(self.feature_info)}")
        for i, (f, info) in enumerate(zip(feats, self.feature_info)):
            if f.ndim != 4 or f.shape[1] != info.num_chs:
                raise RuntimeError(
                    f"{type(self).__name__} map {i} has shape {tuple(f.shape)}; expected NCHW with {info.num_chs} channels"
                )


def freeze_module(module: nn.Module) -> nn.Module:
    """Stop gradients for every parameter of `module` and put it in eval mode (no dropout/drop-path/BN updates)."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    return module


def is_frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


@torch.no_grad()
def state_fingerprint(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter and buffer, for bit-identity checks."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def state_digest(state: Mapping[str, Tensor], values: bool = True) -> str:
    """sha256 over tensors (name, dtype, shape, logical-order bytes): any changed weight changes it.
    `values=False` hashes names, dtypes and shapes only: the architecture, whatever the weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if values and tensor.numel():
            t = tensor.detach().cpu().contiguous()
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_digest(module: nn.Module) -> str:
    """`state_digest` of every parameter and buffer of `module` (feature-cache keys, adapter records)."""
    return state_digest(module.state_dict())
