"""`degmix-tuning models`: list model presets (with parameter counts), registered backbones, tasks and tuning methods."""

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
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list presets, backbones, tasks or tuning methods")
    p.add_argument("what", nargs="?", default="presets", choices=["presets", "backbones", "tasks", "methods"])
    p.add_argument("--preset", default=None, help="only this preset")
    p.add_argument("--count", action="store_true", help="build each preset (random init) and count parameters")
    p.set_defaults(func=_run)
