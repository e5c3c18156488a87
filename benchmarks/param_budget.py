"""Trainable-parameter budget of every registered tuning method, compared with the published numbers.

    python benchmarks/param_budget.py --backbone swin_t --dataset pascal --out benchmarks/results/params_swin_t_pascal

Same output as `degmix-tuning report params` (params.md, params.csv, params.json); counts use random init, so no
weights or data are needed.
"""

from __future__ import annotations

import argparse
import sys

from degmix_tuning.reporting.tables import build_budget_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="swin_t")
    parser.add_argument("--dataset", default="pascal", choices=["nyud", "pascal"])
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: the dataset's default tasks)")
    parser.add_argument("--methods", default=None, help="comma-separated tuning methods (default: all)")
    parser.add_argument("--out", default="benchmarks/results/param_budget", help="output folder")
    args = parser.parse_args(argv)
    tasks = tuple(args.tasks.split(",")) if args.tasks else None
    methods = args.methods.split(",") if args.methods else None
    report = build_budget_report(args.backbone, args.dataset, tasks, methods)
    print(report.to_markdown())
    for path in report.write(args.out).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
