"""FLOPs per image of a DeGMix model, counted the way the published DeGMix / DeMTG figures were counted.

The published "FLOPs" (DeGMix README, NYUD-v2: Swin-T 125.49G, Swin-S 145.84G, Swin-L 321.22G) are **GMACs as
ptflops 0.6.x `get_model_complexity_info` counts them** on the official model, one 3x425x560 image (the NYUD crop),
the backbone included, the 4 NYUD tasks. Running ptflops 0.6.9 on the official DeMTG code (torch-1.8 attention
semantics) gives 125.4896 / 145.8380 / 321.2237 GMac for Swin-T / Swin-S / Swin-L (window 12): all three match to
the printed digits; on the DeMT head (DeMT@b638e14) it gives the DeMT README's 100.70G / 121.05G (Swin-T / S).
Other counters miss all three (Swin-T: mmcv 93.88, thop 94.11, fvcore 149.99, torch FlopCounterMode 149.28 GMACs;
ptflops at 448x576: 135.12). Table and method: benchmarks/README.md, "Published FLOPs". The convention, rule by rule
(ptflops 0.6.9, `pytorch_ops.py`):

- only calls of modules of exactly these types count; a counted module's children are not counted again:
  - Conv1d/2d/3d and ConvTranspose: k*k*C_in/groups*C_out per output position, plus C_out per position for the bias;
  - Linear: numel(input) * out_features, plus out_features once for the bias (not once per token: a ptflops quirk);
  - BatchNorm/InstanceNorm/GroupNorm: numel(input), x2 when affine; LayerNorm is not in the table (0);
  - ReLU, PReLU, ELU, LeakyReLU, ReLU6, GELU: numel(output); pooling: numel(input); nn.Upsample: numel(output);
  - nn.MultiheadAttention: its own formula (see `mha_macs`) on the tensors it is called with, read as
    sequence-first (torch 1.8 modules have no `batch_first`).
- not counted: functional calls (Swin's window-attention matmuls and softmax, F.interpolate, F.linear), custom ops
  (torchvision's deform_conv2d: the deformable mixers' 1x1 channel mix and sampling), element-wise ops.

The official code hands nn.MultiheadAttention batch-first tensors (B, T*N, d) while the module reads them as
(length B, batch T*N): ptflops therefore counts the task interaction as T*N tokens of length 1 (which is what the
official code computes with one image per GPU) and each task query as N tokens of length 1. The latter misses that the
keys/values are the T*N interacted tokens: their projections are counted on N tokens, not T*N (23.56 GMACs of the
DeMTG Swin-T head are not counted). And the official (mmseg) Swin FFN holds its GELU module twice (`activate` and
inside `layers`): ptflops's accumulation over the module tree adds each Swin GELU twice.

`count_published_convention` applies these rules to our modules, each counted as its official counterpart:
our `MultiHeadAttention` inside the task interaction / task query is counted as the official nn.MultiheadAttention
with the official call's tensors (mode "official" / "pixel", the published computation) or, in the other modes,
as an nn.MultiheadAttention(batch_first=True) computing that mode; the gated MLP's gate Linear is counted as the
official Conv1d(d_ff/2, d_ff/2, 1); the deformable op counts 0 and its offset convolutions count as convolutions.
Our Swin (timm modules, official padding) has the official module types and call shapes.

`count_matmul_macs` is the plain count of what the model computes: every conv/linear/matmul/attention MAC seen by
`torch.utils.flop_counter.FlopCounterMode`, plus the deformable op's 1x1 channel mix (H*W*C_in*C_out per call);
norms, activations, interpolation and the bilinear sampling are not counted.

Both count whatever device the model is on; `build_for_count` builds on the meta device (shapes only, no arithmetic,
no memory: Swin-L at 425x560 takes seconds), where the deformable op is replaced by an empty map of its output shape
(`shape_only`); tests check that meta and CPU counts agree.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod

import torch
from torch import Tensor, nn

PUBLISHED_CONVENTION = (
    "MACs as ptflops 0.6.x get_model_complexity_info counts them, the convention of the published DeGMix/DeMTG "
    "'FLOPs': Conv, Linear, BatchNorm, ReLU/GELU and pooling modules, and nn.MultiheadAttention by ptflops' formula "
    "on the official call (which reads the batch-first (B, T*N, d) tensors as sequences of length B); LayerNorm, "
    "functional matmul/softmax/interpolate (Swin's window attention) and the deformable op count 0; our modules "
    "counted as their official counterparts; one image, backbone included"
)
MATMUL_CONVENTION = (
    "GMACs of every conv/linear/matmul/attention (torch FlopCounterMode) + the deformable 1x1 channel mix; "
    "one 3xHxW image, backbone included"
)
PARTS = ("backbone", "encoder", "decoder", "heads")


@dataclass
class FlopsCount:
    """Multiply-accumulates per image, in total and per part (backbone / encoder / decoder / heads / other)."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    convention: str = ""

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    def as_dict(self) -> dict:
        return {"total": self.total, "parts": dict(self.parts), "size": list(self.size), "convention": self.convention}


# ---- ptflops 0.6.x rules, per module type (exact types: a subclass is not counted, as in ptflops)


def _conv(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    positions = output.shape[0] * prod(output.shape[2:])
    per_position = prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups)
    bias = module.out_channels * positions if module.bias is not None else 0
    return per_position * positions + bias


def _linear(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    out = output.shape[-1]
    return inputs[0].numel() * out + (out if module.bias is not None else 0)


def _norm(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    return inputs[0].numel() * (2 if module.affine else 1)


def _output_numel(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    return output.numel()


def _input_numel(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    return inputs[0].numel()


_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveMaxPool1d,
          nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
MODULE_RULES = {
    **{t: _conv for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                          nn.ConvTranspose3d)},
    **{t: _output_numel for t in (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.GELU, nn.Upsample)},
    **{t: _input_numel for t in _POOLS},
    **{t: _norm for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
                          nn.InstanceNorm3d, nn.GroupNorm)},
    nn.Linear: _linear,
}


def mha_macs(q_len: int, k_len: int, v_len: int, batch: int, dim: int, num_heads: int, in_bias: bool = True) -> int:
    """ptflops 0.6.x's count for one nn.MultiheadAttention call (equal q/k/v widths): q scaling, the q/k/v
    projections, per head QK^T + softmax + AV, the output projection with bias; times the batch."""
    head = dim // num_heads
    macs = q_len * dim  # q scaling
    macs += (q_len + k_len + v_len) * dim * dim  # projections
    if in_bias:
        macs += (q_len + k_len + v_len) * dim
    macs += num_heads * (q_len * k_len * head + q_len * k_len + q_len * k_len * head)
    macs += q_len * dim * (dim + 1)  # output projection
    return macs * batch


def _nn_mha(module: nn.Module, inputs: tuple, output) -> int:
    q, k, v = inputs[:3]
    if getattr(module, "batch_first", False):
        batch, ql, kl, vl = q.shape[0], q.shape[1], k.shape[1], v.shape[1]
    else:
        batch, ql, kl, vl = q.shape[1], q.shape[0], k.shape[0], v.shape[0]
    return mha_macs(ql, kl, vl, batch, module.embed_dim, module.num_heads, module.in_proj_bias is not None)


MODULE_RULES[nn.MultiheadAttention] = _nn_mha


# ---- our modules counted as their official counterparts


def _twin_rules(model: nn.Module) -> tuple[dict[int, object], dict[int, object], set[int]]:
    """Rules for our modules whose official counterpart ptflops counts differently:
    ({id: rule} counted as a leaf, {id: rule} added on top of the module's children, ids never counted)."""
    from timm.layers import Mlp

    from timm.models.vision_transformer import Attention

    from ..backbones.swin import SwinBackbone
    from ..backbones.vit import OfficialViTBackbone
    from ..models.attention import MultiHeadAttention
    from ..models.gating import GatedMlp
    from ..models.task_interaction import TaskInteractionBlock
    from ..models.task_query import TaskQuery

    rules: dict[int, object] = {}
    extra: dict[int, object] = {}  # the block's attention; its proj/norm children count by the generic rules
    owned: set[int] = set()
    for m in model.modules():
        if isinstance(m, TaskInteractionBlock):
            extra[id(m)] = _interaction_rule
            owned.update(id(c) for c in m.attn.modules())
        elif isinstance(m, TaskQuery) and m.mode != "linear":
            extra[id(m)] = _query_rule
            owned.update(id(c) for c in m.attn.modules())
        # a "linear" (ViT head AnyAttention) query is no nn.MultiheadAttention: ptflops counts its Linear children
        # (q on N tokens, k/v on T*N) and not its einsums, which the generic rules do too
        elif isinstance(m, GatedMlp):
            rules[id(m.gate)] = _conv1d_gate_rule
    for m in model.modules():  # an attention used elsewhere: one nn.MultiheadAttention(batch_first=True)
        if isinstance(m, MultiHeadAttention) and id(m) not in owned:
            rules[id(m)] = _batch_first_attention_rule
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, OfficialViTBackbone):
        # the official ViT's attention is mmcv's wrapper around nn.MultiheadAttention (batch-first tokens)
        for m in backbone.modules():
            if isinstance(m, Attention):
                rules[id(m)] = _timm_attention_rule
    if isinstance(backbone, (SwinBackbone, OfficialViTBackbone)):
        # the official (mmcv) FFN of Swin and ViT holds its GELU twice, as `activate` and inside `layers`: ptflops's
        # accumulation walks both and adds it twice (27,568,128 MACs of Swin-T at 425x560)
        for m in backbone.modules():
            if isinstance(m, Mlp) and type(getattr(m, "act", None)) in MODULE_RULES:
                rules[id(m.act)] = _twice(MODULE_RULES[type(m.act)])
    return rules, extra, owned


def _twice(rule):
    def counted_twice(module, inputs, output) -> int:
        return 2 * rule(module, inputs, output)
    return counted_twice


def _attention_dims(attn: nn.Module) -> tuple[int, int, bool]:
    return attn.q_proj.in_features, attn.num_heads, attn.q_proj.bias is not None


def _interaction_rule(module, inputs, output) -> int:
    """The task interaction's attention. Official: nn.MultiheadAttention(S, S, S) with S = (B, T*N, d) batch-first,
    read as length B, batch T*N. Global mode: batch-first (B, T*N, d); pixel mode: (B*N, T, d)."""
    b, t, n, _ = inputs[0].shape
    dim, heads, bias = _attention_dims(module.attn)
    if module.mode == "official":
        return mha_macs(b, b, b, t * n, dim, heads, bias)
    if module.mode == "global":
        return mha_macs(t * n, t * n, t * n, b, dim, heads, bias)
    return mha_macs(t, t, t, b * n, dim, heads, bias)


def _query_rule(module, inputs, output) -> int:
    """A task query's attention. Official (pixel mode): nn.MultiheadAttention(F_t, S'', S'') with F_t (B, N, d) and
    S'' (B, T*N, d), read as length B, batch N (ptflops misses that the keys are T*N tokens). Global mode:
    batch-first, N queries over T*N keys."""
    query, interacted = inputs[:2]
    b, t, n, _ = interacted.shape
    dim, heads, bias = _attention_dims(module.attn)
    if module.mode == "pixel":
        return mha_macs(b, b, b, n, dim, heads, bias)
    return mha_macs(n, t * n, t * n, b, dim, heads, bias)


def _batch_first_attention_rule(module, inputs, output) -> int:
    q, k = inputs[0], inputs[1]
    dim, heads, bias = _attention_dims(module)
    return mha_macs(q.shape[1], k.shape[1], k.shape[1], q.shape[0], dim, heads, bias)


def _timm_attention_rule(module, inputs, output) -> int:
    """A timm ViT attention counted as the official ViT's nn.MultiheadAttention on (B, N, d) batch-first tokens."""
    x = inputs[0]
    dim = module.qkv.in_features
    return mha_macs(x.shape[1], x.shape[1], x.shape[1], x.shape[0], dim, module.num_heads, module.qkv.bias is not None)


def _conv1d_gate_rule(module, inputs, output) -> int:
    """Official gate: Conv1d(d_ff/2, d_ff/2, 1) over the tokens (bias per token), our Linear(d_ff/2, d_ff/2)."""
    tokens = inputs[0].numel() // module.in_features
    return tokens * module.in_features * module.out_features + (tokens * module.out_features
                                                                 if module.bias is not None else 0)


# ---- running a model on shapes only


def _deform_shape_forward(self, x: Tensor) -> Tensor:
    """ChannelDeformableConv on meta tensors: its offset convs run (they are counted), the op itself is skipped."""
    self.offsets(x)
    return x.new_empty(x.shape[0], self.weight.shape[0], *x.shape[2:])


def _offsets_shape_forward(self, x: Tensor) -> Tensor:
    """OffsetGenerator on meta tensors (torch.autocast has no meta device): the same two convs."""
    return self.to_offsets(self.proposal(x))


@contextmanager
def shape_only(model: nn.Module):
    """Makes `model` runnable on meta tensors: the deformable op (torchvision's, no arithmetic to count under the
    published convention) returns an empty map of its output shape; everything else runs as is."""
    from ..models.deformable_mixer import ChannelDeformableConv, OffsetGenerator

    patched = []
    for m in model.modules():
        if isinstance(m, ChannelDeformableConv):
            m.forward = types.MethodType(_deform_shape_forward, m)
            patched.append(m)
        elif isinstance(m, OffsetGenerator):
            m.forward = types.MethodType(_offsets_shape_forward, m)
            patched.append(m)
    try:
        yield model
    finally:
        for m in patched:
            del m.forward


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _forward(model: nn.Module, size: tuple[int, int], batch: int) -> None:
    """backbone + head on one batch of zeros (meta: no data). Skips MultiTaskModel.forward's data checks."""
    device = _device(model)
    x = torch.zeros(batch, 3, *size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), (shape_only(model) if device.type == "meta" else _nothing()):
            model.head(model.backbone(x), tuple(size))
    finally:
        model.train(was_training)


@contextmanager
def _nothing():
    yield


def _part_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    groups: dict[str, list[nn.Module]] = {"backbone": [model.backbone]}
    head = model.head
    groups.update(head.parameter_groups() if hasattr(head, "parameter_groups") else {"heads": [head]})
    return groups


def _called(modules: list[nn.Module]) -> list[nn.Module]:
    """ModuleDict/ModuleList containers are never called: their children are."""
    out: list[nn.Module] = []
    for m in modules:
        out.extend(_called(list(m.children())) if isinstance(m, (nn.ModuleDict, nn.ModuleList)) else [m])
    return out


def _part_of(model: nn.Module) -> dict[int, str]:
    """id(module) -> part name, from model.backbone and model.head.parameter_groups() (first group wins)."""
    owner: dict[int, str] = {}
    for part, modules in _part_groups(model).items():
        for top in modules:
            for m in top.modules():
                owner.setdefault(id(m), part)
    return owner


def _with_parts(counts: dict[int, int], model: nn.Module, size, convention: str, batch: int) -> FlopsCount:
    owner = _part_of(model)
    parts = {p: 0 for p in PARTS}
    for mid, n in counts.items():
        part = owner.get(mid, "other")
        parts[part] = parts.get(part, 0) + n
    parts = {k: v // batch for k, v in parts.items() if v or k in PARTS}
    return FlopsCount(sum(parts.values()), parts, tuple(size), convention)


def count_published_convention(model: nn.Module, size: tuple[int, int], batch: int = 1) -> FlopsCount:
    """MACs per image under the published convention (ptflops 0.6.x rules, our modules counted as their official
    counterparts; see the module docstring). `model` is a `MultiTaskModel`, on the meta device for speed."""
    rules, extra, owned = _twin_rules(model)
    counts: dict[int, int] = {}
    handles = []

    def hook_for(rule):
        def hook(module, inputs, output):
            counts[id(module)] = counts.get(id(module), 0) + int(rule(module, inputs, output))
        return hook

    def counted_above(name: str, ids: dict[str, int]) -> bool:
        parts = name.split(".")
        return any(ids.get(".".join(parts[:i])) is not None for i in range(1, len(parts)))

    counted_names: dict[str, int] = {}
    for name, m in model.named_modules():
        if id(m) in extra:
            handles.append(m.register_forward_hook(hook_for(extra[id(m)])))
        rule = rules.get(id(m)) or (MODULE_RULES.get(type(m)) if id(m) not in owned else None)
        if rule is None or id(m) in owned or counted_above(name, counted_names):
            continue  # ptflops: a counted module's children are not counted again
        counted_names[name] = id(m)
        handles.append(m.register_forward_hook(hook_for(rule)))
    try:
        _forward(model, size, batch)
    finally:
        for h in handles:
            h.remove()
    return _with_parts(counts, model, size, PUBLISHED_CONVENTION, batch)


# ---- the plain count (torch's FlopCounterMode)


def ensure_cpu_attention_counted() -> None:
    """Give the CPU flash-attention ops (what F.scaled_dot_product_attention runs on CPU) the FLOP formulas torch
    uses for the CUDA SDPA kernels; torch 2.14 has none for them."""
    from torch.utils import flop_counter as fc

    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd in fc.flop_registry or fwd.default in fc.flop_registry:
        return

    @fc.register_flop_formula(fwd)
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @fc.register_flop_formula(bwd)
    def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                           **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_matmul_macs(model: nn.Module, size: tuple[int, int], batch: int = 1) -> FlopsCount:
    """MACs per image of every conv/linear/matmul/attention (FlopCounterMode: FLOPs / 2) plus the deformable op's
    1x1 channel mix, which the counter cannot see (a torchvision custom op, or skipped on meta)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.deformable_mixer import ChannelDeformableConv

    ensure_cpu_attention_counted()
    deform: dict[int, int] = {}

    def deform_hook(module, inputs, output):
        b, c_in, h, w = inputs[0].shape
        deform[id(module)] = deform.get(id(module), 0) + b * h * w * c_in * module.weight.shape[0]

    mods = [m for m in model.modules() if isinstance(m, ChannelDeformableConv)]
    handles = [m.register_forward_hook(deform_hook) for m in mods]
    impls = [m.impl for m in mods]
    for m in mods:
        m.impl = "torchvision"  # the grid_sample path's 1x1 conv2d would be counted a second time
    try:
        with FlopCounterMode(display=False) as counter:
            _forward(model, size, batch)
    finally:
        for h in handles:
            h.remove()
        for m, impl in zip(mods, impls):
            m.impl = impl
    by_module = counter.get_flop_counts()
    names: dict[int, str] = {}  # FlopCounterMode's paths start at the called module: backbone and head
    for top in (model.backbone, model.head):
        for n, m in top.named_modules():
            names.setdefault(id(m), f"{type(top).__name__}.{n}" if n else type(top).__name__)
    counts: dict[int, int] = dict(deform)
    assigned = 0
    for modules in _part_groups(model).values():  # per module path; a path's count includes its children
        for m in _called(modules):
            flops = sum(by_module.get(names[id(m)], {}).values())
            counts[id(m)] = counts.get(id(m), 0) + flops // 2
            assigned += flops
    rest = sum(by_module.get("Global", {}).values()) - assigned
    if rest:
        counts[-1] = rest // 2  # outside the named parts: kept visible as "other"
    return _with_parts(counts, model, size, MATMUL_CONVENTION, batch)


# ---- presets


def build_for_count(preset: str, device: str = "meta", **head_overrides) -> nn.Module:
    """A preset's model on `device` (meta: no memory, no init cost), with head overrides (e.g. interaction)."""
    from ..models import create_model, get_preset

    cfg = get_preset(preset)
    head = cfg.head.to_dict()
    head.update(head_overrides)
    with torch.device(device):
        return create_model(cfg, head=head)


def default_size(dataset: str) -> tuple[int, int]:
    """The input of the published counts: the dataset's crop (NYUD 425x560, PASCAL 512x512)."""
    from ..data.info import get_dataset_info

    return tuple(get_dataset_info(dataset).crop_size)


@dataclass
class PresetFlops:
    preset: str
    dataset: str
    tasks: tuple[str, ...]
    size: tuple[int, int]
    interaction: str
    macs: int  # published convention
    matmul_macs: int | None = None  # plain count
    published: object | None = None  # PublishedFlops when the README prints a figure for this configuration

    @property
    def delta_g(self) -> float | None:
        """Our count minus the published figure, in G (None without a figure for this configuration)."""
        if self.published is None or self.published.gflops is None:
            return None
        return self.macs / 1e9 - self.published.gflops

    def as_dict(self) -> dict:
        return {"preset": self.preset, "dataset": self.dataset, "tasks": list(self.tasks), "size": list(self.size),
                "interaction": self.interaction, "macs": self.macs, "matmul_macs": self.matmul_macs,
                "published": None if self.published is None else self.published.as_printed}


def preset_flops(preset: str, size: tuple[int, int] | None = None, interaction: str | None = None,
                 matmul: bool = True) -> PresetFlops:
    """Counts of one preset (meta device) at `size` (default: its dataset's crop), with an optional interaction
    override; `published` is set when the README prints a figure for exactly this configuration."""
    from ..models import get_preset
    from .published import published_flops

    cfg = get_preset(preset)
    size = tuple(size) if size else default_size(cfg.dataset)
    overrides = {"interaction": interaction} if interaction else {}
    model = build_for_count(preset, **overrides)
    mode = model.head.cfg.interaction
    macs = count_published_convention(model, size).total
    plain = count_matmul_macs(model, size).total if matmul else None
    pub = published_flops(cfg.backbone, cfg.dataset, tuple(cfg.tasks))
    if pub is not None and not pub.matches(size, model.head.cfg.to_dict()):
        pub = None
    return PresetFlops(preset, cfg.dataset, tuple(cfg.tasks), size, mode, macs, plain, pub)



def preset_flops_rows(names: list[str], size: tuple[int, int] | None = None, interaction: str | None = None,
                      matmul: bool = True) -> list[tuple[str, PresetFlops]]:
    """(label, counts) for each preset. A preset with a published figure counted in another head configuration
    (the full presets run the global task interaction; the figure is of the official one) gets a second row in the
    figure's configuration, labelled "<preset> (interaction=official)", unless `interaction` forces one mode."""
    from ..models import get_preset
    from .published import published_flops

    rows: list[tuple[str, PresetFlops]] = []
    for name in names:
        row = preset_flops(name, size=size, interaction=interaction, matmul=matmul)
        rows.append((name, row))
        cfg = get_preset(name)
        figure = published_flops(cfg.backbone, cfg.dataset, tuple(cfg.tasks))
        wanted = dict(figure.head).get("interaction") if figure is not None else None
        if wanted and interaction is None and row.published is None and wanted != row.interaction:
            rows.append((f"{name} (interaction={wanted})",
                         preset_flops(name, size=size, interaction=wanted, matmul=matmul)))
    return rows


def published_cells(row: PresetFlops) -> tuple[str, str]:
    """(published, diff) table cells: the figure and our count minus it when `row` is the figure's configuration;
    the figure in parentheses when it belongs to another configuration of the same model; "-G" where the README
    prints no number; empty without a figure."""
    from ..models import get_preset
    from .published import published_flops

    from .published import repeated_row

    cfg = get_preset(row.preset)
    figure = published_flops(cfg.backbone, cfg.dataset, tuple(cfg.tasks))
    if figure is None:
        copied = repeated_row(cfg.backbone, cfg.dataset, tuple(cfg.tasks))
        return ("none (README repeats Swin-L)", "") if copied else ("", "")
    if figure.gflops is None:
        return f"{figure.printed}G", ""
    if row.published is None:
        return f"({figure.as_printed})", ""
    same = f"{row.macs / 1e9:.{_decimals(figure.printed)}f}" == figure.printed
    return figure.as_printed, "match" if same else f"{row.delta_g:+.2f}"


def _decimals(printed: str) -> int:
    return len(printed.split(".")[1]) if "." in printed else 0


__all__ = ["FlopsCount", "MATMUL_CONVENTION", "MODULE_RULES", "PUBLISHED_CONVENTION", "PresetFlops",
           "build_for_count", "count_matmul_macs", "count_published_convention", "default_size",
           "ensure_cpu_attention_counted", "mha_macs", "preset_flops", "preset_flops_rows", "published_cells",
           "shape_only"]
