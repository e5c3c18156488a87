"""FLOPs per image of each part of a DeGMix model (backbone, encoder, decoder, heads), and of a whole train step.

Two conventions (`--convention`):

* `matmul` (default): `torch.utils.flop_counter.FlopCounterMode` on real CPU tensors (2 FLOPs per multiply-add;
  matmul, conv, attention). Two ops the counter does not see are added by hand:
  - torchvision's `deform_conv2d` (a custom op): its 1x1 channel mix is 2*B*H*W*C_in*C_out FLOPs forward (backward:
    2x that, input and weight gradients); the bilinear sampling is not counted.
  - the CPU flash-attention kernel `aten._scaled_dot_product_flash_attention_for_cpu` (what `F.scaled_dot_product_
    attention` runs on CPU) has no formula in torch 2.14; we register torch's own SDPA formulas for it.
* `published`: the convention of the published DeGMix FLOPs (GMACs as ptflops 0.6.x counts them; see
  degmix_tuning/reporting/flops.py), on the meta device (shapes only: seconds even for Swin-L at 425x560). With
  `--preset degmix_swin_t_nyud --size 425 560 --interaction official` it prints the README's 125.49.

Run: `python benchmarks/flops.py --backbone swin_t --size 224 288 --interaction global`, or
`python benchmarks/flops.py --preset degmix_swin_t_nyud --size 425 560 --interaction official --convention published`.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils import flop_counter as fc

from degmix_tuning.reporting.flops import ensure_cpu_attention_counted  # noqa: F401 (train_step.py imports it here)


@contextmanager
def deform_flops_counter(model: nn.Module, backward: bool = False):
    """Counts the 1x1 matmul of every `ChannelDeformableConv` call: yields a dict {"flops": n}. With
    backward=True each call also adds the backward's 2x (grad input + grad weight).

    While counting, the mixers run torchvision's op (invisible to the counter, hence the analytic count); the
    grid_sample path computes the same thing with a visible conv2d, which would otherwise be counted twice."""
    from degmix_tuning.models.deformable_mixer import ChannelDeformableConv

    total = {"flops": 0}

    def hook(module, inputs, output):
        b, c_in, h, w = inputs[0].shape
        c_out = module.weight.shape[0]
        total["flops"] += 2 * b * h * w * c_in * c_out * (3 if backward else 1)

    mods = [m for m in model.modules() if isinstance(m, ChannelDeformableConv)]
    impls = [m.impl for m in mods]
    handles = [m.register_forward_hook(hook) for m in mods]
    for m in mods:
        m.impl = "torchvision"
    try:
        yield total
    finally:
        for h in handles:
            h.remove()
        for m, impl in zip(mods, impls):
            m.impl = impl


def _part_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    groups = {"backbone": [model.backbone]}
    head = model.head
    if hasattr(head, "parameter_groups"):
        groups.update(head.parameter_groups())
    else:
        groups["head"] = [head]
    return groups


def _expand(modules: list[nn.Module]) -> list[nn.Module]:
    """ModuleDict/ModuleList containers are never called: count their children."""
    out = []
    for m in modules:
        out.extend(_expand(list(m.children())) if isinstance(m, (nn.ModuleDict, nn.ModuleList)) else [m])
    return out


@torch.no_grad()
def flops_per_part(model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, int]:
    """Forward FLOPs per image of each part: {"backbone", "encoder", "decoder", "heads", "deform_1x1", "total"}.
    `encoder` is what the counter sees in fusion + mixers; `deform_1x1` is the analytic deform matmul."""
    ensure_cpu_attention_counted()
    was_training = model.training
    model.eval()
    x = torch.randn(batch, 3, *size)
    with deform_flops_counter(model) as deform, fc.FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    names = {id(m): n for n, m in model.named_modules()}
    parts: dict[str, int] = {}
    for part, modules in _part_modules(model).items():
        parts[part] = sum(sum(counts.get(f"{root}.{names[id(m)]}", {}).values()) for m in _expand(modules)) // batch
    parts["deform_1x1"] = deform["flops"] // batch
    parts["total"] = sum(v for k, v in parts.items())
    counted_total = sum(counts.get("Global", {}).values()) // batch
    missing = counted_total - (parts["total"] - parts["deform_1x1"])
    if missing:  # FLOPs outside the named parts (should not happen): keep them visible instead of dropping them
        parts["other"] = missing
        parts["total"] += missing
    return parts


def train_step_flops(step_fn, model: nn.Module) -> int:
    """FLOPs of one call of `step_fn()` (forward + backward + optimizer), deform matmuls added analytically."""
    ensure_cpu_attention_counted()
    with deform_flops_counter(model, backward=True) as deform, fc.FlopCounterMode(display=False) as counter:
        step_fn()
    return counter.get_total_flops() + deform["flops"]


def main(argv=None) -> None:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default=None, help="model preset (default: degmix_tuning_<backbone>_nyud)")
    ap.add_argument("--backbone", default="swin_t")
    ap.add_argument("--size", type=int, nargs=2, default=(224, 288), metavar=("H", "W"))
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default: the preset's)")
    ap.add_argument("--dim", type=int, default=None, help="head width d (preset default: 128)")
    ap.add_argument("--interaction", default=None, help="global | pixel | official (preset default: global)")
    ap.add_argument("--convention", default="matmul", choices=["matmul", "published"],
                    help="matmul: FlopCounterMode on CPU tensors; published: the published DeGMix FLOPs' convention "
                         "(ptflops 0.6 GMACs), on the meta device")
    args = ap.parse_args(argv)
    if args.convention == "published":
        from degmix_tuning.reporting.flops import PUBLISHED_CONVENTION, count_published_convention
        from degmix_tuning.reporting.published import published_flops

        model = build_benchmark_model(args, device="meta")
        count = count_published_convention(model, tuple(args.size))
        parts, note = dict(count.parts, total=count.total), PUBLISHED_CONVENTION
        figure = published_flops(model.config.backbone, model.config.dataset, tuple(model.tasks))
        if figure is not None and figure.matches(tuple(args.size), model.head.cfg.to_dict()):
            note += f"; published: {figure.as_printed} ({figure.source})"
        gmacs_only = True
    else:
        model = build_benchmark_model(args)
        parts, note, gmacs_only = flops_per_part(model, tuple(args.size)), "", False
    setup = (f"{model.config.backbone} {args.size[0]}x{args.size[1]}, tasks={','.join(model.tasks)}, "
             f"d={model.head.cfg.dim}, interaction={model.head.cfg.interaction}, convention={args.convention}")
    table = Table(title=f"forward {'GMACs' if gmacs_only else 'GFLOPs'} per image")
    table.add_column("part")
    if not gmacs_only:
        table.add_column("GFLOPs", justify="right")
    table.add_column("GMACs", justify="right")
    table.add_column("share", justify="right")
    for k, v in parts.items():
        macs = v if gmacs_only else v / 2
        cells = [f"{v / 1e9:.2f}"] if not gmacs_only else []
        table.add_row(k, *cells, f"{macs / 1e9:.2f}", f"{v / parts['total']:.0%}")
    console = Console(width=max(Console().width, 100))
    console.print(setup, soft_wrap=True)
    console.print(table)
    if note:
        console.print(note, soft_wrap=True)


def build_benchmark_model(args, device: str | None = None):
    """The tuning preset of `args.backbone` (NYUD) with the benchmark's tasks (default: the preset's), size and head
    overrides; on `device` when given (meta: shapes only)."""
    from degmix_tuning import create_model
    from degmix_tuning.models.presets import get_preset

    preset = args.preset or f"degmix_tuning_{args.backbone}_nyud"
    cfg = get_preset(preset)
    head = cfg.head.to_dict()
    if getattr(args, "dim", None):
        head["dim"] = args.dim
    if getattr(args, "interaction", None):
        head["interaction"] = args.interaction
    tasks = tuple(args.tasks.split(",")) if getattr(args, "tasks", None) else tuple(cfg.tasks)
    with torch.device(device) if device else _no_device():
        return create_model(cfg, tasks=tasks, img_size=tuple(args.size), head=head)


@contextmanager
def _no_device():
    yield


if __name__ == "__main__":
    main()
