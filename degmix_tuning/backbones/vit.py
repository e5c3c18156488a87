"""DeGMix's ViT slot: timm's ViT weights and modules, computing the official DeGMix ViT features.

The official DeGMix ViT (github yangyangxu0/DeGMix 36da078, src/model/backbones/vit.py) is an mmseg-style
VisionTransformer. Where it differs from timm's ViT run through `TimmBackbone`, this slot follows it:

1. Padding: the image is zero-padded at the bottom/right to a multiple of 16 only ("corner", vit.py l.314;
   model/utils.py l.203-225), never resized.
2. No patch-embedding bias (`patch_bias=False`, l.331) and no final norm (`final_norm=False`, l.333); LayerNorm
   eps 1e-5 (mmcv's `LN` = nn.LayerNorm defaults), timm's is 1e-6.
3. Position embedding: built for a 512x512 image (32x32 grid + cls); when the token count differs, the grid part is
   resized bicubic (align_corners=False, no antialias) to the token grid (l.508-567). timm's dynamic resize
   antialiases. As in the official code the resize happens only when the token COUNT differs.
4. Outputs: the tokens after layers 2, 5, 8, 11 (hard-coded `layer_num_sel`, l.606), cls token dropped, as four
   NCHW maps of `embed_dim` channels, all at stride 16 (no pyramid: the head's conv fusion upsamples them).
Stochastic depth: the official ViT uses none (drop_path_rate=0.0, l.325; vit_b() passes nothing, l.632-636); timm
also puts drop path on the attention branch, mmseg only on the FFN, which is the same at 0.0.

ViT-L is an inference: the official `vit_l()` builds an undefined `SwinTransformer` (l.654) and the ViT head's
FeatConv hard-codes 768 input channels, so no official ViT-L can run. Ours has timm's ViT-L sizes (24 layers, 1024
wide, 16 heads) and taps layers 5, 11, 17, 23 (the ViT-B taps at the same relative depths).

Weights: the mmseg UperNet-ViT file the official code freezes (`backbone.*` next to `neck.*` / `decode_head.*` /
`auxiliary_head.*`), an official DeGMix checkpoint's `backbone.*`, a timm / hub ViT (patch bias folded into the
position embedding: adding the bias to every patch token equals adding it to every grid entry of the position
embedding, and the bicubic resize keeps constants), or this slot's own state dict.
"""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import register_backbone
from .timm_backbone import TimmBackbone
from .weights import (
    describe_skipped, is_mmseg_swin, is_mmseg_vit, load_strict, logger, read_weights_file, rename_key,
    strip_wrappers,
)

OFFICIAL_IMG_SIZE = (512, 512)  # vit.py l.312: the position embedding's grid is 32x32
OFFICIAL_LN_EPS = 1e-5
VIT_B_OUT_LAYERS = (2, 5, 8, 11)  # vit.py l.606
# what vit_b() drops from the mmseg file with load_state_dict(strict=False): its model has neither
MMSEG_DROPPED = ("patch_embed.projection.bias", "ln1.weight", "ln1.bias")

_MMSEG_VIT_RENAMES = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^layers\.(\d+)\.attn\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
)
# the inverse, for exporting to (and describing in) the official layout
_TIMM_TO_MMSEG_VIT = (
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"^blocks\.(\d+)\.norm1\.", r"layers.\1.ln1."),
    (r"^blocks\.(\d+)\.norm2\.", r"layers.\1.ln2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"layers.\1.attn.attn.in_proj_\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attn.attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1."),
)


def mmseg_vit_to_timm(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """mmseg / official DeGMix ViT keys -> timm keys (q/k/v rows and head order are the same in both).
    -> (timm state, dropped keys: the patch bias and final norm the official model does not have)."""
    out, dropped = {}, []
    for key, value in sd.items():
        if key in MMSEG_DROPPED:
            dropped.append(key)
            continue
        out[rename_key(key, _MMSEG_VIT_RENAMES)] = value
    return out, dropped


def slot_to_mmseg_vit(slot_sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of `mmseg_vit_to_timm` for this slot's state (`model.*`): official DeGMix ViT keys."""
    out = {}
    for key, value in slot_sd.items():
        key = key[len("model."):] if key.startswith("model.") else key
        out[rename_key(key, _TIMM_TO_MMSEG_VIT)] = value
    return out


def vit_signature(sd: dict[str, Tensor]) -> tuple[int, int] | None:
    """(embed width, layers) of an mmseg / official ViT state dict; None for other layouts."""
    if not is_mmseg_vit(sd):
        return None
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))}
    cls = sd.get("cls_token")
    embed = int(cls.shape[-1]) if cls is not None else None
    return embed, len(layers)


class OfficialViTBackbone(TimmBackbone):
    """A timm VisionTransformer (blocks, attention and MLP modules unchanged, so every tuning method wraps them as for
    any timm ViT) whose forward is the official DeGMix ViT computation (module docstring).

    Args: `TimmBackbone`'s, plus `out_indices` (default: ViT-B's 2,5,8,11 for 12 layers, the same relative depths
    otherwise) and timm ViT kwargs (`embed_dim`, `depth`, `num_heads`, `mlp_ratio`) for other sizes.
    """

    def __init__(self, name: str, *, pretrained: bool = False, checkpoint_path: str | None = None,
                 out_indices: tuple[int, ...] | None = None, img_size=None, **kwargs):
        kwargs.setdefault("norm_layer", partial(nn.LayerNorm, eps=OFFICIAL_LN_EPS))
        img_size = tuple(img_size) if img_size is not None else OFFICIAL_IMG_SIZE
        depth = kwargs.get("depth") or (24 if "large" in name else 12)
        if out_indices is None:
            out_indices = tuple(depth * k // 4 - 1 for k in (1, 2, 3, 4))  # 12 -> 2, 5, 8, 11; 24 -> 5, 11, 17, 23
        kwargs.pop("stage_norms", None)
        kwargs.pop("pyramid", None)
        pretrained = pretrained and checkpoint_path is None  # a local file wins, as in TimmBackbone
        super().__init__(name, pretrained=pretrained, checkpoint_path=None, out_indices=tuple(out_indices),
                         img_size=img_size, stage_norms=False, pyramid=False, **kwargs)
        self.patch_size = self.model.patch_embed.patch_size[0]
        self.size_divisor = self.patch_size
        proj = self.model.patch_embed.proj
        if proj.bias is not None:
            if pretrained:  # hub weights (pos-embed already resampled to the 32x32 grid by timm): fold the bias
                with torch.no_grad():
                    self.model.pos_embed[:, self.model.num_prefix_tokens:] += proj.bias
                logger.info(f"{name}: patch-embedding bias folded into the position embedding (official ViT has none)")
            proj.register_parameter("bias", None)
        if checkpoint_path is not None:
            self.weights_source = str(checkpoint_path)
            sd, foreign = strip_wrappers(read_weights_file(checkpoint_path))
            self.load_slot_state(sd, str(checkpoint_path), foreign=foreign)

    # --- weights -------------------------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.name} (ViT embed {self.channels[0]}, {len(self.model.blocks)} layers)"

    def load_slot_state(self, sd: dict[str, Tensor], source: str, foreign: list[str] = ()) -> list[str]:
        """Any supported layout (module docstring), strictly; one info line says what was skipped or dropped
        (`foreign`: keys of other modules already removed). -> the keys dropped as the official code drops them."""
        skipped = f"skipped {len(foreign)} keys of other modules: {describe_skipped(list(foreign))}" if foreign else ""
        if skipped and not is_mmseg_vit(sd):
            logger.info(f"{source}: {skipped}")
        if all(k.startswith("model.") for k in sd):
            load_strict(self, sd, source, hint=f"Pass weights of {self.describe()}.")
            return []
        if is_mmseg_vit(sd):
            sig = vit_signature(sd)
            mine = (self.channels[0], len(self.model.blocks))
            if sig != mine:
                raise ValueError(
                    f"{source!r} holds an mmseg/official ViT with embed {sig[0]}, {sig[1]} layers, but the backbone "
                    f"is {self.describe()}; pass it to the ViT of that size "
                    f"({'vit_l' if sig[0] == 1024 else 'vit_b'}, or set model.backbone_kwargs "
                    "embed_dim/depth/num_heads)")
            self._check_official_keys(sd, source)
            timm_sd, dropped = mmseg_vit_to_timm(sd)
            if dropped or skipped:
                what = [skipped] if skipped else []
                if dropped:
                    what.append(f"dropped backbone.{', backbone.'.join(dropped)}, as the official vit_b() does "
                                "(load_state_dict strict=False: its ViT has no patch-embedding bias and no final "
                                "norm)")
                logger.info(f"{source}: {'; '.join(what)}")
            load_strict(self.model, timm_sd, source, hint=f"Pass weights of {self.describe()}.")
            return dropped
        if is_mmseg_swin(sd):
            raise ValueError(f"{source!r} holds mmseg/official Swin weights, not a ViT; pass it to a Swin backbone "
                             f"(swin_t/s/b/l), or give {self.name} a ViT file")
        self._load_timm_state(sd, source)
        return []

    def _check_official_keys(self, sd: dict[str, Tensor], source: str) -> None:
        """Missing / unexpected / mis-shaped entries named as the official file spells them (one line)."""
        own = slot_to_mmseg_vit(self.model.state_dict())
        given = {k: v for k, v in sd.items() if k not in MMSEG_DROPPED}
        problems = []
        for label, items in (
            ("missing", sorted(set(own) - set(given))),
            ("unexpected", sorted(set(given) - set(own))),
            ("shape differs (file vs model)", sorted(f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}"
                                                     for k in set(own) & set(given)
                                                     if given[k].shape != own[k].shape)),
        ):
            if items:
                more = f" ... (+{len(items) - 5} more)" if len(items) > 5 else ""
                problems.append(f"{label}: {', '.join(items[:5])}{more}")
        if problems:
            raise ValueError(f"ViT weights in {source!r} do not fit {self.describe()}: {'; '.join(problems)}. Pass "
                             "the official ViT file of this size (download it again if it may be incomplete)")

    def _load_timm_state(self, sd: dict[str, Tensor], source: str) -> None:
        """A timm / hub ViT file: timm's filter (pos-embed resample), classifier-side keys dropped, bias folded."""
        if is_mmseg_vit(sd) or is_mmseg_swin(sd) or all(k.startswith("model.") for k in sd):
            self.load_slot_state(sd, source)
            return
        from timm.models.vision_transformer import checkpoint_filter_fn

        sd = checkpoint_filter_fn(dict(sd), self.model)
        own = self.model.state_dict()
        extra = sorted(k for k in sd if k not in own and k.split(".")[0] in ("norm", "fc_norm", "head"))
        for k in extra:
            sd.pop(k)
        bias = sd.pop("patch_embed.proj.bias", None)
        if bias is not None and "pos_embed" in sd:
            sd["pos_embed"] = sd["pos_embed"].clone()
            sd["pos_embed"][:, self.model.num_prefix_tokens:] += bias
        notes = ([f"skipped {', '.join(extra)} (no final norm or classifier)"] if extra else []) + (
            ["patch-embedding bias folded into the position embedding"] if bias is not None else [])
        if notes:
            logger.info(f"{source}: {'; '.join(notes)}")
        load_strict(self.model, sd, source, hint=f"Pass weights of {self.describe()}.")

    # --- forward ---------------------------------------------------------------------------------------------------

    def position_embedding(self, gh: int, gw: int) -> Tensor:
        """[1, 1 + gh*gw, C]: the built-for-512 embedding, grid part resized bicubic when the token count differs."""
        pos = self.model.pos_embed
        ph, pw = self.model.patch_embed.grid_size
        if gh * gw == ph * pw:
            return pos
        grid = pos[:, -ph * pw:].reshape(1, ph, pw, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: Tensor) -> list[Tensor]:
        h, w = x.shape[-2:]
        p = self.patch_size
        x = F.pad(x, (0, (-w) % p, 0, (-h) % p))  # corner padding to a multiple of the patch
        net = self.model
        x = net.patch_embed.proj(x)
        b, c, gh, gw = x.shape
        x = net.patch_embed.norm(x.flatten(2).transpose(1, 2))
        x = torch.cat([net.cls_token.expand(b, -1, -1), x], dim=1)
        x = net.norm_pre(net.patch_drop(net.pos_drop(x + self.position_embedding(gh, gw))))
        taps = set(self.out_indices)
        out = []
        for i, block in enumerate(net.blocks):
            x = block(x)
            if i in taps:
                out.append(x[:, 1:].reshape(b, gh, gw, c).permute(0, 3, 1, 2).contiguous())
        self.native_sizes = [(gh, gw)] * len(out)
        return out


@register_backbone("vit_b")
def vit_b(*, tag: str | None = None, **kwargs) -> OfficialViTBackbone:
    """Official DeGMix ViT-B: 4 maps of 768 channels at stride 16 (layers 2, 5, 8, 11), mmseg computation."""
    return OfficialViTBackbone(f"vit_base_patch16_224.{tag}" if tag else "vit_base_patch16_224", **kwargs)


@register_backbone("vit_l")
def vit_l(*, tag: str | None = None, **kwargs) -> OfficialViTBackbone:
    """ViT-L in the DeGMix ViT slot, INFERRED (the official vit_l() cannot run): 4 maps of 1024 channels at stride 16
    (layers 5, 11, 17, 23), the ViT-B computation."""
    return OfficialViTBackbone(f"vit_large_patch16_224.{tag}" if tag else "vit_large_patch16_224", **kwargs)


__all__ = ["OfficialViTBackbone", "mmseg_vit_to_timm", "slot_to_mmseg_vit", "vit_signature"]
