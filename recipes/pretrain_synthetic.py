"""Pretrain `swin_synthetic`: fully train the small Swin with a DeGMix head on synthetic PASCAL-like scenes, then
write the backbone's weights with their provenance.

Why: CPU demos and comparisons need frozen features that were learned, and no hub download is possible there. The
defaults below are the ones that produced the packaged weights
(`degmix_tuning/backbones/weights_data/swin_synthetic.safetensors` + `.json`). Pretraining is an ordinary run of the
toolkit's engine (tuning `full`, so the run folder has config.json, metrics.jsonl and adapter.safetensors); the
backbone is then taken out of the run's adapter file. Downstream demos use the NYUD-like indoor scenes with semseg
and depth, so the scene flavour, the classes and a task differ from pretraining; the scenes use data seed 1, the
demos seed 0, so no demo image is a pretraining image.

    python recipes/pretrain_synthetic.py       # the packaged weights: 49.5 min on 2 busy cores (~20 min idle, estimated)
    python recipes/pretrain_synthetic.py --steps 20 --n-scenes 40 --output-dir /tmp/pre --weights-out /tmp/pre/w
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

DEFAULT_TASKS = "semseg,human_parts,sal,normals"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="pascal", choices=["pascal", "nyud"], help="synthetic scene flavour")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks trained with the backbone")
    p.add_argument("--n-scenes", type=int, default=2000, help="synthetic scenes (75%% train, 25%% val)")
    p.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="scene size")
    p.add_argument("--data-seed", type=int, default=1, help="synthetic scene seed (the demos use 0)")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9, poly decay)")
    p.add_argument("--clip-grad-norm", type=float, default=1.0)
    p.add_argument("--head-dim", type=int, default=64, help="DeGMix head width used for pretraining (discarded)")
    p.add_argument("--interaction", default="pixel", help="DeGMix task interaction of the pretraining head")
    p.add_argument("--seed", type=int, default=0, help="init and sampling seed")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers")
    p.add_argument("--eval-every", type=int, default=750)
    p.add_argument("--output-dir", default="runs/pretrain_swin_synthetic", help="the pretraining run folder")
    p.add_argument("--weights-out", default=None,
                   help="folder for swin_synthetic.safetensors + .json (default: the package's weights_data/)")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint folder of --output-dir")
    p.add_argument("--debug", action="store_true", help="full tracebacks for user errors")
    return p


def experiment_config(args: argparse.Namespace):
    """The pretraining run: swin_synthetic from random init, everything trains (tuning `full`)."""
    from degmix_tuning.training.config import ExperimentConfig

    return ExperimentConfig().override([
        "model.backbone=swin_synthetic", "model.pretrained=false", f"model.dataset={args.dataset}",
        f"model.tasks={args.tasks}", f"model.head.dim={args.head_dim}", f"model.head.interaction={args.interaction}",
        "model.freeze_backbone=false", "tuning=full",
        f"data.dataset={args.dataset}", "data.synthetic=true", f"data.synthetic_n={args.n_scenes}",
        f"data.synthetic_size={args.size[0]},{args.size[1]}", f"data.synthetic_seed={args.data_seed}",
        f"data.num_workers={args.num_workers}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
        f"train.clip_grad_norm={args.clip_grad_norm}", f"train.seed={args.seed}",
        f"train.eval_every={args.eval_every}",
        f"train.checkpoint_every={args.eval_every}", "train.eval_at_start=true", "train.log_every=25",
        f"train.output_dir={args.output_dir}",
    ])


def scalar_metrics(metrics: dict | None) -> dict:
    """{task: {metric: float}} without the per-class lists."""
    return {t: {k: v for k, v in m.items() if isinstance(v, float)} for t, m in (metrics or {}).items()}


def write_weights(run_dir: Path, out_dir: Path, provenance: dict) -> Path:
    """Backbone state of the run's adapter -> `<out_dir>/swin_synthetic.safetensors` (+ `.json`), atomically."""
    from safetensors.torch import save_file

    from degmix_tuning.backbones.base import state_digest
    from degmix_tuning.backbones.swin_synthetic import METADATA_KEY, NAME, read_packaged_weights
    from degmix_tuning.training.checkpoint import load_tuned

    model, _ = load_tuned(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.backbone.state_dict().items()}
    cfg = model.backbone.pretrained_cfg  # the normalisation the engine used for this backbone
    provenance = {**provenance, "mean": list(cfg["mean"]), "std": list(cfg["std"]),
                  "params": sum(v.numel() for v in state.values()), "sha256": state_digest(state)}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, sidecar = out_dir / f"{NAME}.safetensors", out_dir / f"{NAME}.json"
    tmp = weights.with_name(weights.name + ".tmp")
    save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(provenance)})
    os.chmod(tmp, 0o644)  # package data: readable by every user of an installed copy
    os.replace(tmp, weights)
    sidecar.write_text(json.dumps(provenance, indent=2) + "\n")
    read_packaged_weights(weights)  # the file reads back and matches its sha256
    return weights


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return _run(args, argv)
    except BaseException as exc:  # noqa: BLE001 - one line for user errors, as the other recipes
        from degmix_tuning.errors import exit_code, user_message

        code = exit_code(exc, "recipe")
        if code is None or args.debug:
            raise
        print(f"error: {user_message(exc) or exc or 'interrupted'}", file=sys.stderr)
        return code


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    import timm
    import torch

    from degmix_tuning.backbones.swin_synthetic import WEIGHTS_DIR
    from degmix_tuning.training.engine import train

    cfg = experiment_config(args)
    start = time.perf_counter()
    result = train(cfg, resume_from=args.resume)
    wall = time.perf_counter() - start
    if not result.main_process:
        return 0
    provenance = {
        "name": "swin_synthetic",
        "format": "degmix-tuning-backbone/1",
        "command": shlex.join(["python", "recipes/pretrain_synthetic.py", *argv]),
        "arguments": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
        "steps": result.step,
        "seed": cfg.train.seed,
        "data": {"flavour": cfg.data.dataset, "synthetic": True, "n": cfg.data.synthetic_n,
                 "size": list(cfg.data.synthetic_size), "seed": cfg.data.synthetic_seed,
                 "val_fraction": cfg.data.synthetic_val_fraction,
                 "augmentation": "scale 0.5-2, crop, flip, photometric"},
        "tasks": list(cfg.model.tasks),
        "training": {"tuning": "full", "head": f"DeGMix d={cfg.model.head.dim} {cfg.model.head.interaction} "
                     "(discarded)", "optimizer": "SGD momentum 0.9, weight decay 5e-4, poly(0.9)", "lr": cfg.train.lr,
                     "batch_size": cfg.train.batch_size, "clip_grad_norm": cfg.train.clip_grad_norm},
        "val_metrics": scalar_metrics(result.final_metrics),
        "untrained_val_metrics": scalar_metrics(result.initial_metrics),
        "wall_time_s": round(wall, 1),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }
    out_dir = Path(args.weights_out) if args.weights_out else WEIGHTS_DIR
    weights = write_weights(result.run_dir, out_dir, provenance)
    print(f"[pretrain] {weights} ({weights.stat().st_size / 1e6:.2f} MB) after {result.step} steps in {wall / 60:.1f} "
          f"min; val: {json.dumps(provenance['val_metrics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
