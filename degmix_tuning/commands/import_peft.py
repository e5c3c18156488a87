"""`degmix-tuning import-peft ADAPTER_DIR --out RUN`: a peft adapter made on the backbone's timm model -> a run."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Read an adapter made with peft (lora, dora, loha, lokr or ia3) on the timm model inside the backbone slot, as the
folder save_pretrained writes (adapter_config.json + adapter_model.safetensors), into a run folder that
`degmix-tuning evaluate`, `predict` and `degmix_tuning.load_tuned` read (adapter.safetensors, config.json,
imported_from.json).

The tuning method and its settings (r, alpha, dropout, excluded layer names, ia3 feedforward layers) are read from
the adapter. Refused, in one line: another peft method, layers outside the backbone's blocks or in some blocks only,
peft options our method does not use (rank_pattern, use_rslora, modules_to_save, ...), another base model.

A folder written by `degmix-tuning export --format peft` also holds degmix_head.safetensors: its head and model
config are used (no --preset needed) and the frozen weights are checked against the exported run's. Without it the
DeGMix head is a fresh (seeded, untrained) init: train the head before reading metrics.
"""

EXAMPLE = """\
example:
  degmix-tuning import-peft exports/lora_nyud --out runs/lora_nyud_again
  degmix-tuning import-peft my_peft_adapter --preset degmix_tuning_swin_t_nyud --pretrained --out runs/from_peft
"""


def _run(args: argparse.Namespace) -> int:
    from ..peft_format import import_peft

    config = args.preset
    if args.config:
        from .import_official import _model_config

        config = _model_config(args.config)
    overrides = list(args.set) + ([f"data.root={args.data_root}"] if args.data_root else [])
    result = import_peft(
        args.adapter_dir, args.out, model_config=config, checkpoint_path=args.checkpoint_path,
        pretrained=args.pretrained, method=args.method, seed=args.seed, head=not args.no_head,
        data_overrides=overrides, overwrite=args.overwrite, allow_backbone_mismatch=args.allow_backbone_mismatch,
    )
    settings = ", ".join(f"{k}={v}" for k, v in result.tuning_kwargs.items() if v not in ([], ()))
    print(f"imported {args.adapter_dir} ({result.method}: {settings}; {result.layers} adapted layers) -> "
          f"{result.run_dir}; head: {result.head}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "import-peft",
        help="read a peft adapter (lora/dora/loha/lokr/ia3 on the backbone's timm model) into a run folder",
        description=DESCRIPTION, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("adapter_dir", metavar="ADAPTER_DIR", help="the folder peft's save_pretrained wrote")
    p.add_argument("--out", required=True, help="run folder to write")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", default=None,
                       help="model preset whose backbone the adapter was made on (default: the one recorded in "
                            "ADAPTER_DIR/degmix_head.safetensors)")
    which.add_argument("--config", metavar="FILE.json", help="a ModelConfig JSON (or a run's config.json) instead")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint-path", default=None,
                         help="the frozen backbone weights the adapter was trained on (timm/.pth/.safetensors file)")
    weights.add_argument("--pretrained", action="store_true", help="the frozen weights are timm's pretrained ones")
    p.add_argument("--method", default=None, help="refuse the adapter unless it is this tuning method (e.g. lora)")
    p.add_argument("--seed", type=int, default=None,
                   help="train.seed of the run: random-init frozen weights and a fresh head are built from it")
    p.add_argument("--no-head", action="store_true", help="ignore ADAPTER_DIR/degmix_head.safetensors (fresh head)")
    p.add_argument("--allow-backbone-mismatch", action="store_true",
                   help="import even if the frozen weights differ from those of the exported run (a warning)")
    p.add_argument("--data-root", default=None, help="dataset root to record in the run's config")
    p.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                   help="a data.* config field to record (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier import in --out")
    p.set_defaults(func=_run)
