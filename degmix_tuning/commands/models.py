"""`degmix-tuning models`: list model presets (with parameter counts or FLOPs), registered backbones, tasks and tuning
methods."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..backbones import list_backbones
    from ..models import create_model, get_preset, list_presets
    from ..params import count_parameters
    from ..tasks import TASKS

    console = Console()
    if args.what == "backbones":
        console.print("registered backbones (any timm model name works too):", ", ".join(list_backbones()))
        return 0
    if args.what == "methods":
        from ..tuning import list_tuning_methods

        console.print("tuning methods (--tuning):", ", ".join(list_tuning_methods()))
        return 0
    if args.what == "tasks":
        for name, spec in TASKS.items():
            console.print(f"{name}: {spec.description} (loss weight {spec.loss_weight})")
        return 0
    if args.flops:
        _print_flops(console, [args.preset] if args.preset else list_presets(), args)
        if not args.count:
            return 0
    table = Table(title="DeGMix model presets")
    for col in ("preset", "backbone", "dataset", "tasks", "d", "total", "trainable"):
        table.add_column(col, justify="right" if col in ("d", "total", "trainable") else "left", no_wrap=True)
    names = [args.preset] if args.preset else list_presets()
    for name in names:
        cfg = get_preset(name)
        row = [name, cfg.backbone, cfg.dataset, ",".join(cfg.tasks), str(cfg.head.dim)]
        if args.count:
            rep = count_parameters(create_model(cfg))
            row += [f"{rep.total:,d}", f"{rep.trainable:,d}"]
        else:
            row += ["-", "-"]
        table.add_row(*row)
    # names and counts are never cut: widen the console to the table rather than squeeze it to 80 columns
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    Console(width=max(console.width, needed)).print(table)
    if any(get_preset(name).backbone == "vit_l" for name in names):
        console.print("vit_l presets: ViT-L is INFERRED (24 layers, 1024 wide, layers 5,11,17,23 tapped); the "
                      "official DeGMix vit_l() cannot run, so no official ViT-L exists to match.", soft_wrap=True)
    return 0


def _print_flops(console, names: list[str], args: argparse.Namespace) -> None:
    """FLOPs per image of every preset (meta device: shapes only), next to the published figure where one exists.

    A preset whose head differs from the configuration of its published figure (the official task interaction)
    gets a second row counted in that configuration, so the published figure has a like-for-like count."""
    from rich.console import Console
    from rich.table import Table

    from ..models import get_preset
    from ..reporting.flops import MATMUL_CONVENTION, PUBLISHED_CONVENTION, preset_flops_rows, published_cells
    from ..reporting.published import FLOPS_UNIT

    rows = preset_flops_rows(names, size=args.size, interaction=args.interaction, matmul=not args.no_matmul)
    table = Table(title="FLOPs per image (GMACs; counted on the meta device)")
    numbers = ("ptflops-0.6 GMACs", "published", "diff", "all-matmul GMACs")
    for col in ("preset", "tasks", "input", "interaction") + numbers:
        table.add_column(col, justify="right" if col in numbers else "left", no_wrap=True)
    for name, r in rows:
        table.add_row(name, ",".join(r.tasks), "3x{}x{}".format(*r.size), r.interaction, f"{r.macs / 1e9:.2f}",
                      *published_cells(r), "" if r.matmul_macs is None else f"{r.matmul_macs / 1e9:.2f}")
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    wide = Console(width=max(console.width, needed))
    wide.print(table)
    wide.print(f"ptflops-0.6 GMACs: {PUBLISHED_CONVENTION}.", soft_wrap=True)
    wide.print(f"published: DeGMix README (NYUD-v2, 4 tasks, d=256), {FLOPS_UNIT}; its configuration is the official "
               "task interaction at 3x425x560 (in parentheses: the figure of that configuration, not of this row).",
               soft_wrap=True)
    if not args.no_matmul:
        wide.print(f"all-matmul GMACs: {MATMUL_CONVENTION}.", soft_wrap=True)
    if any(get_preset(r.preset).backbone in ("vit_b", "vit_l") for _, r in rows):
        wide.print("ViT: no ViT FLOPs are published (the DeGMix README's ViT-B row repeats the Swin-L numbers, "
                   "202.92 / 321.22G; reporting/published.py REPEATED_ROWS); ViT-L is our inference (no official "
                   "ViT-L runs).", soft_wrap=True)


def register(sub) -> None:
    p = sub.add_parser("models", help="list presets, backbones, tasks or tuning methods")
    p.add_argument("what", nargs="?", default="presets", choices=["presets", "backbones", "tasks", "methods"])
    p.add_argument("--preset", default=None, help="only this preset")
    p.add_argument("--count", action="store_true", help="build each preset (random init) and count parameters")
    p.add_argument("--flops", action="store_true",
                   help="FLOPs per image of each preset in the convention of the published DeGMix figures (ptflops "
                        "0.6 GMACs, dataset crop size, backbone included), next to the published figure")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="--flops input size (default: the dataset's crop: NYUD 425x560, PASCAL 512x512)")
    p.add_argument("--interaction", default=None, choices=["global", "pixel", "official"],
                   help="--flops: count every preset with this task interaction (default: the preset's)")
    p.add_argument("--no-matmul", action="store_true", help="--flops: skip the 'all matmuls' count (faster)")
    p.set_defaults(func=_run)
