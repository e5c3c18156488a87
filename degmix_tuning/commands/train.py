"""`degmix-tuning train nyud|pascal [flags]`: the training recipe as a subcommand.

It is `recipes/tune_<dataset>.py` with the dataset as an argument: the same flags, the same run, the same exit
codes (user errors 2, divergence 3), so `accelerate launch -m degmix_tuning.cli train nyud ...` works as well.
"""

from __future__ import annotations

import argparse

DATASETS = ("nyud", "pascal", "cityscapes")


def _train(args: argparse.Namespace) -> int:
    from ..training.recipe import _run

    return _run(args, args.dataset)


def register(sub) -> None:
    from ..training.recipe import add_run_flags

    p = sub.add_parser(
        "train", help="train a tuning method (what recipes/tune_<dataset>.py run)",
        description="Train on NYUD-v2 or PASCAL-Context (or --synthetic scenes), exactly as "
        "`python recipes/tune_<dataset>.py`; start it with `accelerate launch -m degmix_tuning.cli train ...` for "
        "several processes. The per-dataset help with the demo defaults: `python recipes/tune_nyud.py --help`.",
    )
    p.add_argument("dataset", choices=DATASETS, help="which dataset's tasks, labels and metrics")
    add_run_flags(p, None, list_methods=False)  # `degmix-tuning --help` stays instant (no torch)
    p.set_defaults(func=_train, error_context="recipe")
