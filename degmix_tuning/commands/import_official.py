"""`degmix-tuning import-official`: a released official DeGMix checkpoint -> a run folder for evaluate / predict."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Convert a checkpoint released with the DeGMix paper (the .ckpt files linked from the official DeGMix README:
DeGMix Swin-T/S/B/L on NYUD-v2 and PASCAL-Context, DeGMix-Tuning Swin-T/L; DeGMix ViT-B if it holds the official
ViT head, DemtViTHead) into a run folder that `degmix-tuning evaluate`, `degmix-tuning predict` and
`degmix_tuning.load_tuned` read.

CHECKPOINT is the PyTorch-Lightning .ckpt as downloaded (pytorch_lightning is not needed; nothing in the file
is executed). Only its state_dict is used: backbone.* (official mmseg Swin or ViT) and head.* (official
DemtHead or DemtViTHead; the ViT head's unused linear1 is dropped and recorded).
The imported model runs the official computation (head.interaction=official, head.query_attention=pixel,
official Swin padding; for the ViT head query_attention=linear, its softmax-free queries, and the official ViT
padding and position-embedding resize). The run folder gets adapter.safetensors, config.json and
imported_from.json (source file, sha256, Lightning version/epoch/step), plus backbone.safetensors for
DeGMix-Tuning (frozen-backbone) presets.
"""

EXAMPLE = """\
example:
  degmix-tuning import-official DeGMix_swin_t_nyud.ckpt --preset degmix_swin_t_nyud --out runs/official_swin_t_nyud
  degmix-tuning evaluate runs/official_swin_t_nyud --data-root /data/NYUDv2
  degmix-tuning import-official DeGMix_vit_b_nyud.ckpt --preset degmix_vit_b_nyud --out runs/official_vit_b_nyud
"""


def _model_config(path: str):
    """A ModelConfig JSON, or an ExperimentConfig JSON (a run's config.json), whose `model` part is used."""
    from ..config import read_json
    from ..models.factory import ModelConfig

    data = read_json(path, "model config file")
    if not isinstance(data, dict):
        raise ValueError(
            f"model config file {path!r} holds a {type(data).__name__}; expected a ModelConfig JSON object"
        )
    if isinstance(data.get("model"), dict):
        data = data["model"]
    try:
        return ModelConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise ValueError(f"model config file {path!r}: {msg}") from exc


def _run(args: argparse.Namespace) -> int:
    from ..official import import_official

    config = _model_config(args.config) if args.config else args.preset
    overrides = list(args.set)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    result = import_official(args.checkpoint, config, args.out, data_overrides=overrides, overwrite=args.overwrite)
    src = result.source
    run_facts = ", ".join(
        f"{label} {src[key]}" for key, label in
        (("pytorch-lightning_version", "Lightning"), ("epoch", "epoch"), ("global_step", "step")) if key in src
    )
    where = "adapter.safetensors" if result.tuning == "full" else "adapter.safetensors + backbone.safetensors"
    print(
        f"imported {src['file']}{f' ({run_facts})' if run_facts else ''}: backbone {result.backbone_params:,d} + head "
        f"{result.head_params:,d} parameters -> {result.run_dir} ({where}, tuning {result.tuning}); computation: "
        f"{src['computation']}"
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "import-official", help="convert a released official DeGMix checkpoint (.ckpt) into a run folder",
        description=DESCRIPTION, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the released .ckpt file (PyTorch-Lightning 1.1)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help="model preset the checkpoint was trained as (see `degmix-tuning models`)")
    which.add_argument(
        "--config", metavar="FILE.json", help="a ModelConfig JSON (or a run's config.json) instead of a preset"
    )
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--data-root", default=None, help="dataset root to record in the run's config (evaluate uses it)")
    p.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                   help="a data.* config field to record, e.g. data.format=A (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing import in --out")
    p.set_defaults(func=_run)
