"""Any timm model as a backbone, through `forward_intermediates` (NCHW) and timm's own `feature_info`.

Weights come from a timm/hub name (`pretrained=True`), a local `.pth`/`.safetensors` file (loaded through the
model's own checkpoint filter, strictly), or random init. Inputs of any size are padded to the model's largest
stride and the maps are cropped back, so 425x560 gives the same 107x140 / 54x70 / 27x35 / 14x18 maps as
the official mmseg Swin.
"""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FeatureBackbone, FeatureInfo

# kwargs that only some timm families (Swin, ViT, ...) accept; CNNs take any input size without them
_SIZE_KWARGS = ("img_size", "strict_img_size", "dynamic_img_size")


def _create_timm_model(name: str, **kwargs) -> nn.Module:
    """`timm.create_model`, dropping each size kwarg that the architecture's constructor does not take."""
    while True:
        try:
            return timm.create_model(name, **kwargs)
        except TypeError as exc:
            rejected = [k for k in _SIZE_KWARGS if k in kwargs and f"'{k}'" in str(exc)]
            if not rejected:
                raise
            for k in rejected:
                kwargs.pop(k)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW map (the per-stage output norm of mmseg's Swin)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


def load_weights_file(path: str | Path) -> dict[str, Tensor]:
    """Read a `.pth`/`.pt`/`.bin`/`.safetensors` checkpoint into a flat state dict (unwrapping `state_dict`/`model`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint {str(path)!r} does not exist; pass an existing .pth or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - report the cause with the file name
            raise ValueError(f"could not read backbone checkpoint {str(path)!r}: {exc}") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"backbone checkpoint {str(path)!r} holds a {type(sd).__name__}, not a state dict")
    return sd


class TimmBackbone(FeatureBackbone):
    """Wraps `timm.create_model(name)`; returns the maps of `out_indices` in NCHW.

    Args:
        name: a timm model name, optionally with a weight tag (`swin_tiny_patch4_window7_224.ms_in1k`).
        pretrained: download/load timm's pretrained weights for `name` (needs the hub cache or network).
        checkpoint_path: a local weights file; loaded with the architecture's timm checkpoint filter.
        out_indices: which feature levels to return; default: the last 4 levels (or all when fewer).
        img_size: the input size the model is built for (Swin/ViT). Any other size still works; note that timm
            shrinks Swin windows for tiny sizes, which changes the parameter count.
        stage_norms: add a LayerNorm to every returned map (mmseg Swin style, as DeGMix's backbone does).
        pyramid: for plain ViTs whose maps all share one stride, resample them (parameter-free) to strides
            4/8/16/32 so multi-scale decoders see a pyramid. "auto" turns it on for single-stride models.
        model_kwargs: extra kwargs for `timm.create_model` (e.g. `embed_dim`, `depths`, `window_size`).
    """

    def __init__(
        self,
        name: str,
        *,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        out_indices: tuple[int, ...] | None = None,
        img_size: tuple[int, int] | None = None,
        stage_norms: bool = False,
        pyramid: str | bool = "auto",
        drop_path_rate: float | None = None,
        **model_kwargs,
    ):
        super().__init__()
        if not timm.is_model(name.split(".")[0]):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise KeyError(f"unknown backbone {name!r}: not a registered backbone nor a timm model. Similar timm models: {close}")
        kwargs = dict(num_classes=0, **model_kwargs)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        # any input size: Swin computes window masks per call, ViT interpolates its position embedding
        kwargs.update(strict_img_size=False, dynamic_img_size=True)
        if img_size is not None:
            kwargs["img_size"] = tuple(img_size)
        if checkpoint_path is not None:
            weights = Path(checkpoint_path)
            if not weights.is_file():
                raise FileNotFoundError(
                    f"backbone checkpoint {checkpoint_path!r} does not exist; pass an existing .pth or .safetensors file"
                )
            self.model = _create_timm_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), **kwargs)
        else:
            self.model = _create_timm_model(name, pretrained=pretrained, **kwargs)
        if not hasattr(self.model, "forward_intermediates"):
            raise TypeError(f"timm model {name!r} has no forward_intermediates(); it cannot serve as a dense backbone")
        infos = list(self.model.feature_info)
        if out_indices is None:
            if len({f["reduction"] for f in infos}) == 1 and len(infos) >= 4:  # plain ViT: evenly spaced blocks
                n = len(infos)
                out_indices = (n // 4 - 1, n // 2 - 1, 3 * n // 4 - 1, n - 1)
            else:
                dense = [i for i, f in enumerate(infos) if f["reduction"] >= 4] or list(range(len(infos)))
                out_indices = tuple(dense[-4:])
        self.out_indices = tuple(out_indices)
        self.name = name
        # drop the classifier-side layers that the returned maps do not need (timm's own pruning)
        self.model.prune_intermediate_layers(list(self.out_indices), prune_norm=True, prune_head=True)
        chans = [infos[i]["num_chs"] for i in self.out_indices]
        reds = [infos[i]["reduction"] for i in self.out_indices]
        self.pyramid = (len(set(reds)) == 1 and len(reds) > 1) if pyramid == "auto" else bool(pyramid)
        if self.pyramid:
            reds = [4 * 2**i for i in range(len(reds))]
        self._native_reduction = max(infos[i]["reduction"] for i in self.out_indices)
        self.feature_info = tuple(
            FeatureInfo(c, r, infos[i].get("module", str(i))) for c, r, i in zip(chans, reds, self.out_indices)
        )
        self.stage_norms = nn.ModuleList([LayerNorm2d(c) for c in chans]) if stage_norms else None
        cfg = dict(getattr(self.model, "pretrained_cfg", {}) or {})
        cfg.setdefault("mean", (0.485, 0.456, 0.406))
        cfg.setdefault("std", (0.229, 0.224, 0.225))
        self.pretrained_cfg = cfg
        self.size_divisor = self._native_reduction

    def forward(self, x: Tensor) -> list[Tensor]:
        h, w = x.shape[-2:]
        div = self.size_divisor
        ph, pw = math.ceil(h / div) * div - h, math.ceil(w / div) * div - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.model.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True)
        out = []
        for i, f in enumerate(feats):
            if self.pyramid:
                f = _resample_to_stride(f, self._native_reduction, self.feature_info[i].reduction)
            r = self.feature_info[i].reduction
            f = f[..., : math.ceil(h / r), : math.ceil(w / r)]
            if self.stage_norms is not None:
                f = self.stage_norms[i](f)
            out.append(f)
        return out


def _resample_to_stride(f: Tensor, native: int, target: int) -> Tensor:
    """Parameter-free simple feature pyramid: bilinear up for finer strides, max-pool for coarser ones."""
    if target == native:
        return f
    if target < native:
        return F.interpolate(f, scale_factor=native // target, mode="bilinear", align_corners=False)
    k = target // native
    return F.max_pool2d(f, kernel_size=k, stride=k, ceil_mode=True)
