"""Backbone weights from the files users actually have, loaded strictly into the slot.

A file may hold our slot's own state dict, a timm or Microsoft Swin state dict, an mmseg / official DeGMix Swin
(`stages.N.blocks.M.attn.w_msa.qkv`, `ffn.layers.0.0`, merging at the END of a stage, `norm0..3`), or a whole
segmentation model or Lightning checkpoint around one of those. Containers (`state_dict`, `model`, `module`) and
`module.` / `backbone.` prefixes are unwrapped; keys of other top-level modules next to `backbone.*` (mmseg's
`decode_head` / `auxiliary_head`, DeGMix's `head`) are skipped and reported in one info line. Everything else is
strict: a missing, unexpected or differently shaped key is a `ValueError` that names the keys.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Mapping

from torch import Tensor, nn

from ..restricted_pickle import load_untrusted

logger = logging.getLogger("degmix_tuning")

_CONTAINERS = ("state_dict", "model", "module")


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """Read a `.pth`/`.pt`/`.bin`/`.ckpt`/`.safetensors` file into a flat {name: tensor} dict (containers unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone checkpoint {str(path)!r} does not exist; pass an existing .pth or .safetensors file"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd, _ = load_untrusted(path)  # Lightning files name callback classes: read without importing them
    except Exception as exc:  # noqa: BLE001 - report the cause with the file name
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"could not read backbone checkpoint {str(path)!r} ({reason}); is the file complete? Download it again"
        ) from exc
    while isinstance(sd, dict):
        inner = next((sd[k] for k in _CONTAINERS if isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"backbone checkpoint {str(path)!r} holds no state dict of tensors")
    return dict(sd)


def strip_wrappers(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Drop `module.` (DDP) prefixes; keep only `backbone.*` when present. -> (state, skipped foreign keys)."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("backbone.") for k in sd):
        foreign = sorted(k for k in sd if not k.startswith("backbone."))
        return {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}, foreign
    return sd, []


def describe_skipped(keys: list[str]) -> str:
    """'decode_head.* (10), auxiliary_head.* (8)': skipped keys grouped by their top-level module."""
    counts = Counter(k.split(".")[0] for k in keys)
    return ", ".join(f"{prefix}.* ({n})" for prefix, n in counts.items())


def load_strict(module: nn.Module, sd: Mapping[str, Tensor], source: str, hint: str = "") -> None:
    """`load_state_dict(strict=True)` with one readable error naming missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(sd) if sd[k].shape != own[k].shape
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape differs (file vs model)", shapes)):
        if items:
            more = f" ... (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems and is_mmseg_vit(sd):  # never reached by the ViT slot, which converts the layout first
        raise ValueError(f"{source!r} holds mmseg/official ViT weights, not {type(module).__name__}'s; pass it to a "
                         "ViT backbone (vit_b, vit_l)")
    if problems:
        raise ValueError(
            f"weights in {source!r} do not fit {type(module).__name__}: {'; '.join(problems)}. "
            f"{hint or 'Pass weights of the same architecture (backbone name, size and window).'}"
        )
    module.load_state_dict(sd, strict=True)


def load_backbone_state(backbone: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> list[str]:
    """Load a backbone state dict in any supported layout into `backbone`, strictly. -> skipped foreign keys.

    `TimmBackbone`s (the Swin slot included) convert mmseg / official Swin and timm / original-release layouts;
    any other backbone must get its own `state_dict()` layout.
    """
    sd, foreign = strip_wrappers(state_dict)
    if foreign:
        logger.info(f"{source}: skipped {len(foreign)} keys of other modules: {describe_skipped(foreign)}")
    if hasattr(backbone, "load_slot_state"):
        if all(k.startswith(("model.", "stage_norms.")) for k in sd) or is_mmseg_swin(sd):
            backbone.load_slot_state(sd, source)
        else:
            backbone._load_timm_state(sd, source)
    else:
        load_strict(backbone, sd, source)
    return foreign


# --- mmseg / official DeGMix Swin layout -> timm layout --------------------------------------------------

_MMSEG_RENAMES = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.", r"layers.\1.blocks.\2.attn."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.", r"layers.\1.blocks.\2.mlp.fc1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.", r"layers.\1.blocks.\2.mlp.fc2."),
    (r"^stages\.(\d+)\.blocks\.", r"layers.\1.blocks."),
)


def rename_key(key: str, renames) -> str:
    """`key` with the first (pattern, replacement) of `renames` that matches applied (unchanged if none does)."""
    for pattern, repl in renames:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def is_mmseg_swin(sd: Mapping[str, Tensor]) -> bool:
    """True for the layout of mmseg's Swin (what the official DeGMix code loads and saves)."""
    if is_mmseg_vit(sd):
        return False
    return any(k.startswith("stages.") and ".attn.w_msa." in k for k in sd) or "patch_embed.projection.weight" in sd


def is_mmseg_vit(sd: Mapping[str, Tensor]) -> bool:
    """True for the layout of mmseg's VisionTransformer (the official DeGMix ViT: `layers.N.attn.attn.in_proj_*`)."""
    return any(re.match(r"layers\.\d+\.attn\.attn\.in_proj_weight$", k) for k in sd)


def unfold_to_timm_order(t: Tensor, channels: int) -> Tensor:
    """Reorder the last axis of a PatchMerging weight from nn.Unfold's order to timm's.

    mmseg merges a 2x2 neighbourhood with nn.Unfold: feature index c*4 + 2*dh + dw. timm concatenates the four
    shifted maps: index (2*dw + dh)*C + c. Same numbers, permuted input features of the LayerNorm and Linear.
    """
    mm = t.reshape(*t.shape[:-1], channels, 2, 2)  # [..., c, dh, dw]
    return mm.permute(*range(t.ndim - 1), t.ndim + 1, t.ndim, t.ndim - 1).reshape(t.shape)  # [..., dw, dh, c]


def mmseg_swin_to_timm(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[int, dict[str, Tensor]], dict]:
    """-> (timm SwinTransformer state, {stage: output-norm state}, {key: relative_position_index}) from mmseg keys."""
    model, norms, index = {}, {}, {}
    for key, value in sd.items():
        m = re.match(r"^norm(\d+)\.(weight|bias)$", key)
        if m:
            norms.setdefault(int(m.group(1)), {})[m.group(2)] = value
            continue
        m = re.match(r"^stages\.(\d+)\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)$", key)
        if m:
            stage, name = int(m.group(1)), m.group(2)
            # merging closes stage N in mmseg and opens stage N+1 in timm
            channels = value.shape[-1] // 4
            model[f"layers.{stage + 1}.downsample.{name}"] = unfold_to_timm_order(value, channels)
            continue
        new = rename_key(key, _MMSEG_RENAMES)
        if new.endswith("relative_position_index"):
            index[new] = value
            continue
        model[new] = value
    return model, norms, index


def slot_to_mmseg_swin(slot_sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of the mmseg import: a Swin slot's state (`model.*`, `stage_norms.*`) in mmseg / official keys.

    For exporting to the official code, for describing a slot in the official terms, and for tests.
    """
    out = {}
    for key, value in slot_sd.items():
        m = re.match(r"^stage_norms\.(\d+)\.(weight|bias)$", key)
        if m:
            out[f"norm{m.group(1)}.{m.group(2)}"] = value
            continue
        key = key[len("model."):]
        m = re.match(r"^layers\.(\d+)\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)$", key)
        if m:
            channels = value.shape[-1] // 4
            t = value.reshape(*value.shape[:-1], 2, 2, channels)  # [..., dw, dh, c]
            t = t.permute(*range(value.ndim - 1), value.ndim + 1, value.ndim, value.ndim - 1).reshape(value.shape)
            out[f"stages.{int(m.group(1)) - 1}.downsample.{m.group(2)}"] = t
            continue
        new = key.replace("patch_embed.proj.", "patch_embed.projection.")
        new = re.sub(r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.", r"stages.\1.blocks.\2.attn.w_msa.", new)
        new = re.sub(r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.", r"stages.\1.blocks.\2.ffn.layers.0.0.", new)
        new = re.sub(r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.", r"stages.\1.blocks.\2.ffn.layers.1.", new)
        new = re.sub(r"^layers\.(\d+)\.blocks\.", r"stages.\1.blocks.", new)
        out[new] = value
    return out


__all__ = [
    "describe_skipped", "is_mmseg_swin", "is_mmseg_vit", "load_backbone_state", "load_strict", "mmseg_swin_to_timm",
    "read_weights_file",
    "slot_to_mmseg_swin", "strip_wrappers", "unfold_to_timm_order",
]
