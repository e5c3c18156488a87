"""Official `DemtHead` state-dict keys -> our `DeGMixHead` keys, as one table read in both directions.

Placeholders: `{i}` official task index (position in the official task list), `{t}` task name, `{b}` mixer
block, `{p}` a parameter/buffer name (weight, bias, BN statistics), `{qkv}` one of q/k/v. The official code
indexes per-task modules by list position (`defor_mixers.0`) and by name elsewhere (`bottleneck.semseg`); the
task list comes from the checkpoint itself (`official_tasks`). The table is used both ways so every error can
name the key as it is spelled in the user's file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor

_PLACEHOLDERS = {
    "i": r"\d+",
    "b": r"\d+",
    "t": r"[A-Za-z_][A-Za-z0-9_]*",
    "p": r"weight|bias|running_mean|running_var|num_batches_tracked",
    "qkv": r"q|k|v",
}

# How a tensor changes on the way to our layout.
SAME = "same"
QKV_ROWS = "qkv_rows"  # nn.MultiheadAttention in_proj_*: q, k, v stacked by rows -> one of the three blocks
CONV1D_TO_LINEAR = "conv1d_to_linear"  # Conv1d(C, C, 1) weight [C, C, 1] -> Linear weight [C, C]

# (official key, our key, transform) -- one row per module.
HEAD_KEY_TABLE: tuple[tuple[str, str, str], ...] = (
    # fusion at 1/4: per-pixel Linear + LayerNorm
    ("linear1.0.{p}", "fusion.proj.{p}", SAME),
    ("linear1.1.{p}", "fusion.norm.{p}", SAME),
    # deformable mixer of task i, block b: [1x1 conv, GELU, BN] then Residual([deform conv, GELU, BN])
    ("defor_mixers.{i}.blocks.{b}.0.{p}", "mixers.{t}.{b}.channel_mix.0.{p}", SAME),
    ("defor_mixers.{i}.blocks.{b}.2.{p}", "mixers.{t}.{b}.channel_mix.2.{p}", SAME),
    ("defor_mixers.{i}.blocks.{b}.3.fn.0.{p}", "mixers.{t}.{b}.spatial_mix.0.{p}", SAME),
    ("defor_mixers.{i}.blocks.{b}.3.fn.0.get_offset.p_conv.{p}",
     "mixers.{t}.{b}.spatial_mix.0.offsets.proposal.{p}", SAME),
    ("defor_mixers.{i}.blocks.{b}.3.fn.0.get_offset.opt.{p}",
     "mixers.{t}.{b}.spatial_mix.0.offsets.to_offsets.{p}", SAME),
    ("defor_mixers.{i}.blocks.{b}.3.fn.2.{p}", "mixers.{t}.{b}.spatial_mix.2.{p}", SAME),
    # task interaction: MultiheadAttention (fused q/k/v) + Linear + LayerNorm
    ("task_fusion.in_proj_weight", "task_interaction.attn.{qkv}_proj.weight", QKV_ROWS),
    ("task_fusion.in_proj_bias", "task_interaction.attn.{qkv}_proj.bias", QKV_ROWS),
    ("task_fusion.out_proj.{p}", "task_interaction.attn.out_proj.{p}", SAME),
    ("smlp.0.{p}", "task_interaction.proj.{p}", SAME),
    ("smlp.1.{p}", "task_interaction.norm.{p}", SAME),
    # task query of task i: MultiheadAttention + Linear + LayerNorm
    ("task_querys.{i}.in_proj_weight", "task_query.queries.{t}.attn.{qkv}_proj.weight", QKV_ROWS),
    ("task_querys.{i}.in_proj_bias", "task_query.queries.{t}.attn.{qkv}_proj.bias", QKV_ROWS),
    ("task_querys.{i}.out_proj.{p}", "task_query.queries.{t}.attn.out_proj.{p}", SAME),
    ("smlp2.{i}.0.{p}", "task_query.queries.{t}.proj.{p}", SAME),
    ("smlp2.{i}.1.{p}", "task_query.queries.{t}.norm.{p}", SAME),
    # gated MLP shared by all tasks (one layer, wrapped in a Residual)
    ("gmlps.gating.0.fn.ln1_0.{p}", "task_query.gated_mlp.norm.{p}", SAME),
    ("gmlps.gating.0.fn.fc1_0.{p}", "task_query.gated_mlp.fc_in.{p}", SAME),
    ("gmlps.gating.0.fn.sgu_0.ln.{p}", "task_query.gated_mlp.gate_norm.{p}", SAME),
    ("gmlps.gating.0.fn.sgu_0.proj.weight", "task_query.gated_mlp.gate.weight", CONV1D_TO_LINEAR),
    ("gmlps.gating.0.fn.sgu_0.proj.bias", "task_query.gated_mlp.gate.bias", SAME),
    ("gmlps.gating.0.fn.fc2_0.{p}", "task_query.gated_mlp.fc_out.{p}", SAME),
    # task heads: ConvBNReLU (conv, bn) + 1x1 logits
    ("bottleneck.{t}.conv.weight", "heads.{t}.bottleneck.0.weight", SAME),
    ("bottleneck.{t}.bn.{p}", "heads.{t}.bottleneck.1.{p}", SAME),
    ("final_logits.{t}.{p}", "heads.{t}.logits.{p}", SAME),
    # --- official DeGMix ViT head (DemtViTHead) only: FeatConv fusion and softmax-free AnyAttention queries ---
    ("featconv.head2.{b}.{p}", "fusion.levels.0.{b}.{p}", SAME),
    ("featconv.head3.{b}.{p}", "fusion.levels.1.{b}.{p}", SAME),
    ("featconv.head4.{b}.{p}", "fusion.levels.2.{b}.{p}", SAME),
    ("featconv.head5.{b}.{p}", "fusion.levels.3.{b}.{p}", SAME),
    ("featconv.head6.{b}.{p}", "fusion.merge.{b}.{p}", SAME),
    ("task_querys.{i}.norm_{qkv}.{p}", "task_query.queries.{t}.attn.norm_{qkv}.{p}", SAME),
    ("task_querys.{i}.to_{qkv}.weight", "task_query.queries.{t}.attn.{qkv}_proj.weight", SAME),
    ("task_querys.{i}.proj.{p}", "task_query.queries.{t}.attn.out_proj.{p}", SAME),
)

# Official entries with no counterpart: ChlSpl's fixed-shift buffer, built but never read in forward.
UNUSED_OFFICIAL_KEYS: tuple[str, ...] = ("defor_mixers.{i}.blocks.{b}.3.fn.0.offset",)
# ... and, in the ViT head only (FeatConv present), `linear1`: built (demt_vit_head.py l.42) but never called in
# forward (l.51-77), so it never gets a gradient; our model omits it (it would also break DDP's unused-parameter check)
UNUSED_VIT_HEAD_KEYS: tuple[str, ...] = ("linear1.{b}.{p}",)


def is_vit_head(head_state) -> bool:
    """The official DeGMix ViT head (DemtViTHead): it has the FeatConv fusion."""
    return any(k.startswith("featconv.") for k in head_state)


def _compile(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", pattern)
    out = []
    for part in parts:
        m = re.fullmatch(r"\{(\w+)\}", part)
        out.append(f"(?P<{m.group(1)}>{_PLACEHOLDERS[m.group(1)]})" if m else re.escape(part))
    return re.compile("".join(out))


@dataclass(frozen=True)
class _Rule:
    official: str
    ours: str
    transform: str
    official_re: re.Pattern
    ours_re: re.Pattern


RULES = tuple(_Rule(off, ours, how, _compile(off), _compile(ours)) for off, ours, how in HEAD_KEY_TABLE)
_UNUSED_RE = tuple(_compile(p) for p in UNUSED_OFFICIAL_KEYS)
_UNUSED_VIT_RE = tuple(_compile(p) for p in UNUSED_VIT_HEAD_KEYS)
# reverse lookups for a ViT head try its own rows (AnyAttention queries) before the DeMTG ones that share our keys
_VIT_FIRST = tuple(r for r in RULES if r.official.startswith(("featconv.", "task_querys.{i}.norm_",
                                                                  "task_querys.{i}.to_", "task_querys.{i}.proj."))) + \
    tuple(r for r in RULES if not r.official.startswith(("featconv.", "task_querys.{i}.norm_", "task_querys.{i}.to_",
                                                         "task_querys.{i}.proj.")))


def _unused_res(head_state) -> tuple[re.Pattern, ...]:
    return _UNUSED_RE + (_UNUSED_VIT_RE if is_vit_head(head_state) else ())


def official_tasks(head_state: dict[str, Tensor]) -> list[str]:
    """Task names in the official order: the `bottleneck.<task>` / `final_logits.<task>` modules are built in the
    order of the official task list, and a state dict keeps that order."""
    seen: list[str] = []
    for key in head_state:
        m = re.match(r"(?:bottleneck|final_logits)\.([^.]+)\.", key)
        if m and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def unused_official_keys(head_state: dict[str, Tensor]) -> list[str]:
    """Entries of the file that the official forward never reads (dropped on import)."""
    res = _unused_res(head_state)
    return [k for k in head_state if any(r.fullmatch(k) for r in res)]


def official_key_for(our_key: str, tasks: list[str], vit: bool = False) -> str | None:
    """The official key that provides `our_key` (None if no table row covers it); `vit`: as the ViT head spells it."""
    for rule in (_VIT_FIRST if vit else RULES):
        m = rule.ours_re.fullmatch(our_key)
        if not m:
            continue
        groups = m.groupdict()
        if "t" in groups and "{i}" in rule.official:
            if groups["t"] not in tasks:
                return None
            groups["i"] = str(tasks.index(groups["t"]))
        keep_qkv = "{qkv}" in rule.official
        return rule.official.format(**{k: v for k, v in groups.items() if k != "qkv" or keep_qkv})
    return None


def official_shape(transform: str, our_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the official tensor must have to give `our_shape` (for error messages)."""
    if transform == QKV_ROWS:
        return (3 * our_shape[0],) + tuple(our_shape[1:])
    if transform == CONV1D_TO_LINEAR:
        return tuple(our_shape) + (1,)
    return tuple(our_shape)


def _to_ours(transform: str, tensor: Tensor, qkv: str | None) -> Tensor | None:
    """The tensor in our layout, or None when its shape cannot be converted."""
    if transform == QKV_ROWS:
        return tensor.chunk(3, dim=0)["qkv".index(qkv)].clone() if tensor.ndim and tensor.shape[0] % 3 == 0 else None
    if transform == CONV1D_TO_LINEAR:
        return tensor[..., 0].clone() if tensor.ndim == 3 and tensor.shape[-1] == 1 else None
    return tensor


def _fmt_shape(shape) -> str:
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def _listing(items: list[str], limit: int = 4) -> str:
    items = list(dict.fromkeys(items))
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


class HeadMismatch(ValueError):
    """The official head entries do not fit the configured head (message: the keys, as spelled in the file)."""


def convert_head_state(
    head_state: dict[str, Tensor], target: dict[str, Tensor], tasks: list[str], prefix: str = "head."
) -> dict[str, Tensor]:
    """Official head tensors (keys without `head.`) -> a state dict that loads strictly into a `DeGMixHead`.

    Args:
        head_state: the official `DemtHead` entries.
        target: our head's `state_dict()` (gives the expected keys and shapes).
        tasks: the official task list (`official_tasks(head_state)`); task index i is tasks[i].
        prefix: how the keys are spelled in the user's file, for error messages.
    Raises:
        HeadMismatch (a ValueError): one line naming every missing, unexpected or mis-shaped key, as in the file.
    """
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    misshaped: list[str] = []
    unused = _unused_res(head_state)
    for key, tensor in head_state.items():
        if any(r.fullmatch(key) for r in unused):
            continue
        rule, groups = _match_official(key, tasks)
        if rule is None:
            unexpected.append(prefix + key)
            continue
        split = "{qkv}" in rule.ours and "{qkv}" not in rule.official  # one fused official tensor -> q, k, v
        for qkv in ("q", "k", "v") if split else (None,):
            ours = rule.ours.format(**groups, **({"qkv": qkv} if qkv else {}))
            if ours not in target:
                unexpected.append(prefix + key)
                break
            want = tuple(target[ours].shape)
            value = _to_ours(rule.transform, tensor, qkv)
            if value is None or tuple(value.shape) != want:
                expected = _fmt_shape(official_shape(rule.transform, want))
                misshaped.append(f"{prefix}{key} {_fmt_shape(tensor.shape)} (expected {expected})")
                break
            converted[ours] = value.to(target[ours].dtype)
    missing = []
    for ours in target:
        if ours in converted:
            continue
        official = official_key_for(ours, tasks, vit=is_vit_head(head_state))
        if official is None:
            missing.append(f"(no official key gives our {ours})")
        elif official not in head_state:  # present but unusable: already listed as unexpected or mis-shaped
            missing.append(prefix + official)
    found = (("missing", missing, 4), ("unexpected", unexpected, 4), ("wrong shape", misshaped, 3))
    problems = [f"{label} {_listing(items, limit)}" for label, items, limit in found if items]
    if problems:
        raise HeadMismatch("; ".join(problems))
    return converted


def _match_official(key: str, tasks: list[str]) -> tuple[_Rule | None, dict]:
    for rule in RULES:
        m = rule.official_re.fullmatch(key)
        if not m:
            continue
        groups = m.groupdict()
        if "i" in groups:
            i = int(groups.pop("i"))
            if i >= len(tasks):
                return None, {}
            groups["t"] = tasks[i]
        elif "t" in groups and groups["t"] not in tasks:
            return None, {}
        return rule, groups
    return None, {}


__all__ = [
    "HEAD_KEY_TABLE", "HeadMismatch", "UNUSED_OFFICIAL_KEYS", "UNUSED_VIT_HEAD_KEYS", "convert_head_state",
    "is_vit_head", "official_tasks", "unused_official_keys",
]
