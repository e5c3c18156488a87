"""`degmix-tuning report params|plot`: trainable-parameter budgets of every tuning method, and the budget figure."""

from __future__ import annotations

import argparse


def _params(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..reporting.tables import build_budget_report

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    report = build_budget_report(args.backbone, args.dataset, tasks, methods, published=not args.no_published)
    console = Console(width=max(Console().width, 160))
    for table in report.rich_tables():
        console.print(table)
    if args.out:
        paths = report.write(args.out)
        console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..reporting.plot import plot_budget

    result = plot_budget(args.out, args.runs, args.backbone, args.dataset, args.metric)
    print(f"wrote {result.path}: {result.published} published points, {result.runs} runs")
    for reason in result.skipped:
        print(f"  skipped {reason}")
    if args.runs and result.runs == 0 and not result.skipped:
        print(f"  no runs (folders with metrics.jsonl) found under {args.runs}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="parameter-budget tables and the accuracy-vs-parameters plot")
    rsub = p.add_subparsers(dest="report_command", metavar="WHAT", required=True)

    params = rsub.add_parser("params", help="count trainable parameters of every tuning method; compare with papers")
    params.add_argument("--backbone", default="swin_t", help="registered backbone or timm name (default swin_t)")
    params.add_argument("--dataset", default="pascal", choices=["nyud", "pascal", "cityscapes"])
    params.add_argument("--tasks", default=None, help="comma-separated tasks (default: the dataset's default tasks)")
    params.add_argument("--methods", default=None, help="comma-separated tuning methods (default: all registered)")
    params.add_argument("--no-published", action="store_true", help="skip the published-numbers comparison")
    params.add_argument("--out", default=None, help="folder for params.md, params.csv, params.json")
    params.set_defaults(func=_params)

    plot = rsub.add_parser("plot", help="accuracy (delta-m or a task metric) vs trainable parameters, log x")
    plot.add_argument("--out", required=True, help="image file to write (.png, .pdf, .svg)")
    plot.add_argument("--runs", default=None, help="a run folder or a folder of runs (metrics.jsonl + config.json)")
    plot.add_argument("--backbone", default=None, help="default: the one the runs share, else swin_t")
    plot.add_argument("--dataset", default=None, choices=["nyud", "pascal", "cityscapes"],
                      help="default: the one the runs share, else pascal")
    plot.add_argument("--metric", default="delta_m", help="delta_m (default) or a task name, e.g. semseg")
    plot.set_defaults(func=_plot)
