"""Any timm model as a backbone, through `forward_intermediates` (NCHW) and timm's own `feature_info`.

Weights come from a timm/hub name (`pretrained=True`), a local `.pth`/`.safetensors` file (loaded through the
model's own checkpoint filter, strictly), or random init. Inputs of any size are padded to the model's largest
stride and the maps are cropped back, so 425x560 gives the same 107x140 / 54x70 / 27x35 / 14x18 maps as
the official mmseg Swin.

A few families run only at the input size they were built for (MLP-Mixer's token MLPs, LeViT's attention biases,
MaxViT's window grid, Hiera's mask units): `fixed_input_size` says so (found by one gradient-free try at another
size when the model is built), smaller inputs are padded up to it, larger ones are refused in one line that names
the `model.img_size` to build with.
"""

from __future__ import annotations

import inspect
import math
import sys

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor, nn

from .base import FeatureBackbone, FeatureInfo
from .weights import (
    describe_skipped, is_mmseg_swin, load_strict, logger, mmseg_swin_to_timm, read_weights_file, strip_wrappers,
)

# kwargs that only some timm families (Swin, ViT, ...) accept; CNNs take any input size without them
_SIZE_KWARGS = ("img_size", "strict_img_size", "dynamic_img_size")
# kwargs that only matter when the architecture has the feature (Inception-v3 has no stochastic depth)
_OPTIONAL_KWARGS = (*_SIZE_KWARGS, "drop_path_rate")


def _create_timm_model(name: str, **kwargs) -> nn.Module:
    """`timm.create_model`, dropping each optional kwarg that the architecture's constructor does not take; any
    other rejected kwarg (from `model.backbone_kwargs`) is one ValueError line."""
    while True:
        try:
            return timm.create_model(name, **kwargs)
        except TypeError as exc:
            rejected = [k for k in _OPTIONAL_KWARGS if k in kwargs and f"'{k}'" in str(exc)]
            if not rejected:
                given = [k for k in kwargs if f"'{k}'" in str(exc) and k not in ("pretrained", "num_classes")]
                if given:
                    raise ValueError(f"timm model {name!r} does not accept {given[0]!r} ({str(exc).strip()}); remove "
                                     "it from model.backbone_kwargs (this variant fixes or lacks it)") from exc
                raise
            if "drop_path_rate" in rejected:
                logger.info(f"{name} has no stochastic depth: drop_path_rate={kwargs['drop_path_rate']} is ignored")
            for k in rejected:
                kwargs.pop(k)


def _hub_weights_unreachable(name: str) -> bool:
    """True when the hub weights of `name` are not in the local cache and the hub's host does not even resolve.

    Saves the ~50 s of download retries that end in a generic hub error on a machine without network.
    """
    import os
    import socket
    from urllib.parse import urlparse

    cfg = timm.models.get_pretrained_cfg(name.split(".")[0] if "." not in name else name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False  # not a hub model, or the hub library already fails fast
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


def _create_pretrained(name: str, **kwargs) -> nn.Module:
    """`timm.create_model(pretrained=True)` with one clear error when the weights cannot be had."""
    fix = ("put the weights in the Hugging Face hub cache (HF_HOME) on a machine with network, or download the file "
           "and pass --checkpoint-path FILE instead of --pretrained")
    if _hub_weights_unreachable(name):
        raise ValueError(f"pretrained weights of {name!r} are not in the local hub cache and the hub is unreachable; {fix}")
    try:
        return _create_timm_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub, file and format errors all mean "no weights": say what to do
        if isinstance(exc, TypeError):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"could not load the pretrained weights of {name!r} ({reason}); {fix}") from exc


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW map (the per-stage output norm of mmseg's Swin)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class TimmBackbone(FeatureBackbone):
    """Wraps `timm.create_model(name)`; returns the maps of `out_indices` in NCHW.

    Args:
        name: a timm model name, optionally with a weight tag (`swin_tiny_patch4_window7_224.ms_in1k`).
        pretrained: download/load timm's pretrained weights for `name` (needs the hub cache or network).
        checkpoint_path: a local weights file in any layout `backbones.weights` reads (timm, original release,
            mmseg / official DeGMix Swin, this slot's own; whole-model files are unwrapped), loaded strictly.
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
        self.name = name
        self.weights_source = None
        file_state: dict[str, Tensor] | None = None
        if checkpoint_path is not None:
            file_state, foreign = strip_wrappers(read_weights_file(checkpoint_path))
            if foreign:
                logger.info(f"{checkpoint_path}: skipped {len(foreign)} keys of other modules: {describe_skipped(foreign)}")
            self.weights_source = str(checkpoint_path)
        if pretrained and checkpoint_path is None:
            self.model = _create_pretrained(name, **kwargs)
        else:
            self.model = _create_timm_model(name, **kwargs)
        whole_slot = file_state is not None and (_is_slot_layout(file_state) or is_mmseg_swin(file_state))
        if file_state is not None and not whole_slot:
            self._load_timm_state(file_state, str(checkpoint_path))  # before pruning: the file has the final norm
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
        cfg.setdefault("mean", IMAGENET_DEFAULT_MEAN)
        cfg.setdefault("std", IMAGENET_DEFAULT_STD)
        self.pretrained_cfg = cfg
        self.size_divisor = self._native_reduction
        self.fixed_input_size = self._fixed_size(img_size)
        self.native_sizes: list[tuple[int, int]] = []  # map sizes of the last forward before resampling/cropping
        if file_state is not None and not whole_slot and self.stage_norms is not None:
            logger.info(f"{checkpoint_path}: has no stage output norms; they keep their LayerNorm init (weight 1, bias 0)")
        if whole_slot:
            self.load_slot_state(file_state, str(checkpoint_path))

    def _fixed_size(self, img_size) -> tuple[int, int] | None:
        """The one input size the model runs at, or None when any size works.

        Only models that take `img_size` but not `dynamic_img_size` can be fixed (MLP-Mixer, LeViT, MaxViT, Hiera):
        those are tried once, without gradients, at a small other size; a failure there means "fixed".
        """
        taken = {name for cls in type(self.model).__mro__ if "__init__" in vars(cls)
                 for name in inspect.signature(cls.__init__).parameters}  # LevitDistilled passes *args on
        if "img_size" not in taken or "dynamic_img_size" in taken:
            return None
        default = (self.model.pretrained_cfg or {}).get("input_size", (3, 224, 224))[-2:]
        built = tuple(int(v) for v in (img_size if img_size is not None else default))
        s = self._native_reduction
        other = (2 * s, 3 * s) if built != (2 * s, 3 * s) else (3 * s, 4 * s)
        was_training = self.model.training
        try:
            with torch.no_grad():
                self.model.eval()
                self.model.forward_intermediates(torch.zeros(1, 3, *other), indices=list(self.out_indices),
                                                 intermediates_only=True)
            return None
        except Exception:  # noqa: BLE001 - any failure at another size: the model only runs at its built size
            return built
        finally:
            self.model.train(was_training)

    def _load_timm_state(self, sd: dict[str, Tensor], source: str) -> None:
        """A timm or original-release file (e.g. Microsoft Swin): the architecture's own timm filter, then strict."""
        filter_fn = getattr(sys.modules.get(type(self.model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            sd = filter_fn(sd, self.model)
        classifier = self.model.pretrained_cfg.get("classifier") or ()
        skipped = []
        for prefix in (classifier,) if isinstance(classifier, str) else classifier:
            for key in [k for k in sd if k.startswith(prefix + ".") and k not in self.model.state_dict()]:
                skipped.append(key)
                sd.pop(key)
        if skipped:
            logger.info(f"{source}: skipped the classifier ({', '.join(skipped)}); the backbone has none")
        load_strict(self.model, sd, source, hint=f"Pass weights of {self.name} (same size, depths and window).")

    def load_slot_state(self, sd: dict[str, Tensor], source: str) -> None:
        """Our own slot layout (`model.*`, `stage_norms.*`) or an mmseg / official DeGMix Swin state dict."""
        if not is_mmseg_swin(sd):
            load_strict(self, sd, source)
            return
        model_sd, norms, index = mmseg_swin_to_timm(sd)
        buffers = dict(self.model.named_buffers())
        for key, value in index.items():  # fixed tables: they must agree, they are not loaded
            if key in buffers and not (buffers[key].shape == value.shape and bool((buffers[key] == value).all())):
                raise ValueError(f"{source!r}: {key} differs from the relative position index of {self.name}")
        slot_sd = {f"model.{k}": v for k, v in model_sd.items()}
        for level, state in norms.items():
            for name, value in state.items():
                slot_sd[f"stage_norms.{level}.{name}"] = value
        load_strict(self, slot_sd, source, hint=(
            f"It is an mmseg/official Swin file; pass it to the backbone of the same size ({self.name} now: "
            f"channels {self.channels}, window {self.model.layers[-1].blocks[0].attn.window_size[0]})."
            if hasattr(self.model, "layers") else "mmseg Swin weights need a Swin backbone such as swin_t."
        ))

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an h x w input is zero-padded to (bottom/right) before the network runs."""
        if self.fixed_input_size is not None:
            fh, fw = self.fixed_input_size
            if h > fh or w > fw:
                need = self.img_size_for((h, w))
                raise ValueError(
                    f"backbone {self.name!r} runs only at the input size it was built for ({fh}x{fw}) and got "
                    f"{h}x{w}; build it for the crop size: --set model.img_size={need[0]},{need[1]}")
            return fh, fw
        div = self.size_divisor
        return math.ceil(h / div) * div, math.ceil(w / div) * div

    def forward(self, x: Tensor) -> list[Tensor]:
        h, w = x.shape[-2:]
        ph, pw = (a - b for a, b in zip(self.padded_size(h, w), (h, w)))
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.model.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True)
        self.native_sizes = [tuple(f.shape[-2:]) for f in feats]
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


def _is_slot_layout(sd: dict[str, Tensor]) -> bool:
    """A state dict saved from a TimmBackbone itself (`model.*` plus `stage_norms.*`)."""
    return all(k.startswith(("model.", "stage_norms.")) for k in sd)


def _resample_to_stride(f: Tensor, native: int, target: int) -> Tensor:
    """Parameter-free simple feature pyramid: bilinear up for finer strides, max-pool for coarser ones.

    Integer ratios scale by the ratio; others (a patch-14 ViT to strides 4/8/16/32) resample to the size the padded
    input has at `target`: ceil(map * native / target).
    """
    if target == native:
        return f
    if target < native and native % target == 0:
        return F.interpolate(f, scale_factor=native // target, mode="bilinear", align_corners=False)
    if target > native and target % native == 0:
        k = target // native
        return F.max_pool2d(f, kernel_size=k, stride=k, ceil_mode=True)
    size = tuple(-(-n * native // target) for n in f.shape[-2:])
    if target < native:
        return F.interpolate(f, size=size, mode="bilinear", align_corners=False)
    return F.adaptive_max_pool2d(f, size)
