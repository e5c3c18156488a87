"""`degmix-tuning evaluate` and `degmix-tuning predict`: metrics and saved predictions from an adapter file or checkpoint.

A metric that cannot be computed on the split (e.g. no valid depth pixel) is shown as "missing" with the reason and
written to --out as null plus the task's "missing" reason; the command still exits 0 (the other metrics are valid).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _load(args):
    from ..training.checkpoint import load_tuned

    model, cfg = load_tuned(args.adapter, backbone=args.backbone, allow_backbone_mismatch=args.allow_backbone_mismatch)
    overrides = []
    if args.data_root:
        overrides += [f"data.root={args.data_root}", "data.synthetic=false"]
    if args.synthetic:
        overrides += ["data.synthetic=true", "data.root=null"]
    if getattr(args, "max_samples", None):
        overrides.append(f"data.max_samples={args.max_samples}")
    if overrides:
        cfg = cfg.override(overrides)
    return model.eval(), cfg


def _dataset(model, cfg, split):
    from ..data import build_dataset
    from ..training.engine import _mean_std

    mean, std = _mean_std(model)
    ds = build_dataset(cfg.data, split, list(cfg.model.tasks), train=False, mean=mean, std=std)
    ds.check_fits(cfg.data.resolved_crop_size())
    return ds, mean, std


def _evaluate(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table
    from torch.utils.data import DataLoader

    from ..data.info import get_dataset_info
    from ..metrics import MISSING_KEY, MultiTaskEvaluator
    from ..training.engine import evaluate

    model, cfg = _load(args)
    ds, _, _ = _dataset(model, cfg, args.split)
    # the run's own eval batch size by default: the same batches give the run's recorded metrics bit for bit
    batch_size = args.batch_size or cfg.train.eval_batch_size
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    evaluator = MultiTaskEvaluator(cfg.model.tasks, get_dataset_info(cfg.model.dataset), workers=args.eval_workers)
    try:
        with torch.no_grad():
            metrics = evaluate(model, loader, evaluator)
    finally:
        evaluator.close()
    table = Table(title=f"{args.split} metrics ({len(ds)} images)")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    missing = {}
    for task, values in metrics.items():
        for k, v in values.items():
            if isinstance(v, float):
                table.add_row(task, k, f"{v:.4f}")
            elif v is None:  # could not be computed (e.g. no valid pixel): never shown as a number
                table.add_row(task, k, "missing")
                missing[task] = values.get(MISSING_KEY, "not computed")
    Console().print(table)
    for task, reason in missing.items():
        print(f"{task}: missing metrics: {reason}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"split": args.split, "metrics": metrics}, indent=2, default=float) + "\n")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ..training.prediction_files import centre_crop, postprocess, save_prediction

    from ..data.info import get_dataset_info

    model, cfg = _load(args)
    names = get_dataset_info(cfg.model.dataset).class_names
    out = Path(args.out)
    written = 0
    if args.images:
        from ..training.engine import _mean_std

        mean, std = _mean_std(model)
        files = []
        for item in args.images:
            p = Path(item)
            if p.is_dir():
                files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
            elif p.is_file():
                files.append(p)
            else:
                raise FileNotFoundError(f"image {item!r} does not exist")
        for f in files:
            try:
                rgb = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"cannot read image {str(f)!r}: {exc}") from exc
            x = torch.from_numpy(((rgb - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1).astype(np.float32))
            with torch.no_grad():
                logits = model(x[None])
            preds = {t: postprocess(t, v[0]) for t, v in logits.items()}
            save_prediction(out, f.stem, x.numpy(), preds, mean, std, class_names=names)
            written += 1
    else:
        ds, mean, std = _dataset(model, cfg, args.split)
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in range(n):
            sample = ds[i]
            with torch.no_grad():
                logits = model(sample["image"][None])
            size = tuple(int(s) for s in sample["meta"]["size"])
            preds = {t: centre_crop(postprocess(t, v[0]), size) for t, v in logits.items()}
            image = centre_crop(sample["image"].numpy(), size)
            labels = {t: centre_crop(sample[t].numpy(), size) for t in logits if t in sample}
            save_prediction(out, str(sample["meta"]["id"]), image, preds, mean, std, labels, class_names=names)
            written += 1
    print(f"wrote predictions for {written} images to {out} (pictures in {out / 'vis'})")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter", help="adapter.safetensors, a run folder, or a checkpoint folder (checkpoints/step_N)")
    p.add_argument("--backbone", default=None, help="build this backbone instead of the one recorded in the adapter")
    p.add_argument("--allow-backbone-mismatch", action="store_true",
                   help="load even if the frozen backbone weights differ from those the adapter was trained on "
                        "(a warning instead of an error; metrics will differ from the run's)")
    p.add_argument("--data-root", default=None, help="dataset root (default: the one recorded in the adapter)")
    p.add_argument("--synthetic", action="store_true", help="use the built-in synthetic dataset")
    p.add_argument("--split", default="val")


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (1 = no worker processes), got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a tuned model (adapter file or checkpoint) on a dataset split")
    _common(p)
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's train.eval_batch_size")
    p.add_argument("--eval-workers", type=_worker_count, default=_available_cores(), metavar="N",
                   help="processes for the boundary (edge) metric, the slow one; results are identical for any N "
                        "(default: the available cores, here %(default)s; 1 = in this process)")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the metrics as JSON here")
    p.set_defaults(func=_evaluate)

    q = sub.add_parser("predict", help="save per-task predictions (pictures with ground truth + raw arrays) for a split or image files")
    _common(q)
    q.add_argument("--images", nargs="*", default=None, help="image files or folders (instead of a dataset split)")
    q.add_argument("--limit", type=int, default=None, help="at most this many images of the split")
    q.add_argument("--out", required=True, help="output folder")
    q.set_defaults(func=_predict)
