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
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (self.num_chs, self.reduction))
        if not ok:
            raise ValueError(f"FeatureInfo needs positive integer channels and stride, got {self}")


def check_feature_info(name: str, infos) -> None:
    """The slot contract every consumer relies on (timm's FeatureInfo asserts): at least one map, each a `FeatureInfo`
    (positive channels and stride), strides never decreasing."""
    infos = tuple(infos)
    if not infos:
        raise ValueError(f"backbone {name!r} declares no feature maps (feature_info is empty); declare one "
                         "FeatureInfo(channels, stride, module) per returned map")
    bad = [i for i in infos if not isinstance(i, FeatureInfo)]
    if bad:
        raise ValueError(f"backbone {name!r}: feature_info holds {type(bad[0]).__name__}, not FeatureInfo; declare "
                         "FeatureInfo(channels, stride, module) per returned map")
    reductions = [f.reduction for f in infos]
    if any(b < a for a, b in zip(reductions, reductions[1:])):
        raise ValueError(f"backbone {name!r} declares decreasing strides {reductions}; order its maps fine to coarse")


def expected_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """The slot's map size for an input `size` at `stride`: ceil(size / stride) on each side."""
    return -(-size[0] // stride), -(-size[1] // stride)


class FeatureBackbone(nn.Module):
    """Base class for everything that can sit in the backbone slot.

    Subclasses set `feature_info` (one entry per returned map, reductions never decreasing; checked when it is set)
    and `pretrained_cfg` (at least `mean` and `std`, timm's keys) and implement `forward(x) -> list[Tensor]`, where
    map i has `feature_info[i].num_chs` channels and ceil(H / stride) x ceil(W / stride) pixels for any H x W input.
    A backbone that only runs at one input size sets `fixed_input_size = (H, W)`.
    """

    feature_info: tuple[FeatureInfo, ...] = ()
    pretrained_cfg: Mapping[str, Any] = {}
    fixed_input_size: tuple[int, int] | None = None

    def __setattr__(self, name: str, value) -> None:
        if name == "feature_info":  # the contract holds from construction on, whoever builds the backbone
            value = tuple(value)
            check_feature_info(type(self).__name__, value)
        super().__setattr__(name, value)

    @property
    def channels(self) -> list[int]:
        return [f.num_chs for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f.reduction for f in self.feature_info]

    def probe_size(self) -> tuple[int, int]:
        """A small input size this backbone runs at, for structure checks: 3 x 4 of its largest stride (>= 96 px),
        or its fixed input size."""
        if self.fixed_input_size is not None:
            return tuple(self.fixed_input_size)
        s = max(self.strides)
        n = max(3, -(-96 // s))
        return n * s, (n + 1) * s

    def img_size_for(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The `model.img_size` to build this backbone with so that `size` inputs run, or None when any size runs
        (a fixed-size backbone is built for `size` rounded up to its largest stride)."""
        if self.fixed_input_size is None:
            return None
        div = int(getattr(self, "size_divisor", max(self.strides)))
        return -(-size[0] // div) * div, -(-size[1] // div) * div

    def check_features(self, x: Tensor | None, feats: list[Tensor]) -> None:
        """Raise one clear line when a backbone breaks the slot contract: wrong count, channels, layout, or a map
        whose size is not ceil(input / stride) (checked once per input size; `x` None skips the size check)."""
        who = getattr(self, "name", type(self).__name__)
        if len(feats) != len(self.feature_info):
            raise ValueError(f"backbone {who!r} returned {len(feats)} maps but declares {len(self.feature_info)}; "
                             "make feature_info list exactly the returned maps")
        for i, (f, info) in enumerate(zip(feats, self.feature_info)):
            if f.ndim != 4 or f.shape[1] != info.num_chs:
                raise ValueError(f"backbone {who!r} map {i} has shape {tuple(f.shape)}; expected NCHW with "
                                 f"{info.num_chs} channels (fix its feature_info or its forward)")
        if x is None:
            return
        size = tuple(x.shape[-2:])
        checked = self.__dict__.setdefault("_checked_sizes", set())
        if size in checked:
            return
        for i, (f, info) in enumerate(zip(feats, self.feature_info)):
            want = expected_size(size, info.reduction)
            if tuple(f.shape[-2:]) != want:
                raise ValueError(
                    f"backbone {who!r} map {i} is {f.shape[-2]}x{f.shape[-1]} for a {size[0]}x{size[1]} input, but "
                    f"its declared stride {info.reduction} needs {want[0]}x{want[1]} (ceil(input / stride)): its "
                    "layers shrink or misalign the maps (e.g. unpadded convolutions), so it cannot fill the dense "
                    "slot; choose a backbone whose maps keep ceil(input / stride), or fix its feature_info")
        checked.add(size)


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
