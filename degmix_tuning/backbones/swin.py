"""DeGMix's Swin slot: timm's Swin weights and modules, computing the official (mmseg) Swin features.

timm's Swin and the mmseg Swin that the official DeGMix code freezes hold the same weights but differ at every
input size that is not a multiple of 32 (and at some that are):

1. Padding. The official code pads the image only to a multiple of the patch size (4); each block pads its
   normalised map with zeros at the bottom/right to a multiple of the window, attends (the zeros are keys and values,
   not masked), and crops back. Padding the image to 32 instead turns padding into real tokens.
2. Order. The official block pads, then rolls by -window//2, and builds the shift mask on the padded size; timm
   rolls the unpadded map, then pads.
3. Shift. timm built for 224 turns the shift off in a stage whose nominal map is no larger than the window (Swin-T
   stage 3: 7x7, window 7); the official code shifts every odd block at any size.

`SwinBackbone` keeps timm's parameter layout (hub names, `--pretrained`, timm/Microsoft files) and swaps each
block's class for `OfficialSwinBlock`, whose forward is the official computation; blocks stay ordinary modules,
so LoRA, task streams and the other tuning methods wrap them as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from timm.models.swin_transformer import SwinTransformerBlock

from .timm_backbone import TimmBackbone


def _partition(x: Tensor, ws: int) -> Tensor:
    """[B, H, W, C] (H, W multiples of ws) -> [B * nW, ws * ws, C], windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _merge(windows: Tensor, ws: int, b: int, h: int, w: int) -> Tensor:
    """Inverse of `_partition`: [B * nW, ws * ws, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shift_mask(h: int, w: int, ws: int, shift: int, device, dtype) -> Tensor:
    """[nW, ws*ws, ws*ws]: 0 within a region of the rolled map, -100 across regions (official values and regions)."""
    region = torch.zeros(1, h, w, 1, device=device, dtype=dtype)
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, rows in enumerate(bounds):
        for j, cols in enumerate(bounds):
            region[:, rows, cols, :] = 3 * i + j
    ids = _partition(region, ws).squeeze(-1)  # [nW, ws*ws]
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class OfficialSwinBlock(SwinTransformerBlock):
    """A timm Swin block whose forward follows the official code: pad -> roll -> window attention -> unroll -> crop.

    The shift is `window // 2` for odd blocks at every map size (timm's `target_shift_size`), never switched off.
    """

    def window_attention(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.attn.window_size[0]
        shift = self.target_shift_size[0]
        x = F.pad(x, (0, 0, 0, (-w) % ws, 0, (-h) % ws))
        hp, wp = x.shape[1:3]
        mask = None
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = shift_mask(hp, wp, ws, shift, x.device, x.dtype)
        out = _merge(self.attn(_partition(x, ws), mask=mask), ws, b, hp, wp)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out[:, :h, :w, :]

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, H, W, C] -> [B, H, W, C] (residual attention, then residual MLP)."""
        x = x + self.drop_path1(self.window_attention(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class SwinBackbone(TimmBackbone):
    """A timm Swin with per-stage output LayerNorms that computes the official DeGMix backbone features.

    Accepts the `TimmBackbone` arguments plus timm's Swin kwargs (`embed_dim`, `depths`, `num_heads`,
    `window_size`, ...). Images are zero-padded at the bottom/right to a multiple of the patch size only, so
    425x560 gives 107x140 / 54x70 / 27x35 / 14x18 maps as in the official code.
    """

    def __init__(self, name: str, *, stage_norms: bool = True, **kwargs):
        kwargs.setdefault("always_partition", True)  # keep the nominal window everywhere (official)
        super().__init__(name, stage_norms=stage_norms, **kwargs)
        for module in self.model.modules():
            if type(module) is SwinTransformerBlock:
                module.__class__ = OfficialSwinBlock
                if tuple(module.window_size) != tuple(module.attn.window_size):
                    raise ValueError(f"{name}: timm shrank a window to {module.window_size}; build it with always_partition")
        # pad to the patch size only; blocks pad to their window themselves
        self.size_divisor = self.model.patch_embed.patch_size[0]


__all__ = ["OfficialSwinBlock", "SwinBackbone", "shift_mask"]
