"""`degmix-tuning data`: validate a dataset root, write a synthetic dataset, convert a root to Arrow.

`data validate` exit codes: 0 = no problem (warnings, e.g. a split with no valid pixel for a task, are printed but
do not fail: the files are readable, the data is only unusual); 1 = at least one problem (a file that cannot be
read or does not match its image, a missing folder or split list, train and val sharing ids).
"""

from __future__ import annotations

import argparse
import sys
import time

# the registered datasets (data/info.py) and synthetic flavours (data/synthetic/writer.py), named here because
# importing degmix_tuning.data loads torch, which `degmix-tuning --help` must not wait for
DATASETS = ("nyud", "pascal", "cityscapes")


def _validate(args: argparse.Namespace) -> int:
    from ..data.validate import validate_root

    # plain prints: one problem per line, never wrapped, so the output greps cleanly
    report = validate_root(args.dataset, args.root, splits=args.split or ("train", "val"), format=args.format,
                           limit=args.limit, progress=lambda m: print(m, file=sys.stderr))
    flavour = f" (flavour {report.flavour})" if report.flavour else ""
    checked = ", ".join(f"{s}: {n} ids" for s, n in report.checked.items()) or "no split checked"
    largest = f"; largest image {report.max_image_size[0]}x{report.max_image_size[1]}" if report.max_image_size else ""
    print(f"{args.dataset} root {report.root}{flavour}: {checked}{largest}")
    for w in report.warnings:
        print(f"warning: {w}")
    for p in report.problems:
        print(f"problem: {p}")
    if report.problems:
        print(f"{len(report.problems)} problem(s) found")
        return 1
    print("OK: no problems found" + (f" ({len(report.warnings)} warning(s) above)" if report.warnings else ""))
    return 0


def _existing_output(exc: FileExistsError, command: str) -> int:
    print(f"degmix-tuning data {command}: error: {exc}", file=sys.stderr)
    return 1


def _synth(args: argparse.Namespace) -> int:
    from ..data.synthetic.writer import write_synthetic_dataset

    t0 = time.perf_counter()
    try:
        out = write_synthetic_dataset(args.out, n=args.n, flavour=args.flavour, seed=args.seed, size=tuple(args.size),
                                      val_fraction=args.val_fraction)
    except FileExistsError as exc:
        return _existing_output(exc, "synth")
    print(f"wrote {args.n} synthetic {args.flavour} scenes ({args.size[0]}x{args.size[1]}) to {out} "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0


def _to_arrow(args: argparse.Namespace) -> int:
    from ..data.arrow import convert_to_arrow

    from ..data.config import DataConfig
    from ..data.readers import open_reader

    source = DataConfig(dataset=args.dataset, format=args.format,
                        crop_size=tuple(args.crop_size) if args.crop_size else None)

    def make_reader(split):
        return open_reader(source, split, root=args.root)

    t0 = time.perf_counter()
    try:
        out = convert_to_arrow(make_reader, args.out, splits=args.split or ("train", "val"),
                               max_samples=args.limit, log=lambda m: print(m, file=sys.stderr))
    except FileExistsError as exc:
        return _existing_output(exc, "to-arrow")
    print(f"wrote the Arrow copy of {args.root} to {out} in {time.perf_counter() - t0:.1f}s; "
          f"train with data.arrow_path={out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="validate a dataset root, make a synthetic dataset, convert to Arrow")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    v = dsub.add_parser("validate", help="check every file of a root and list all problems (exit 1 if any; "
                        "warnings, e.g. a split without a valid pixel for a task, alone exit 0)")
    v.add_argument("--dataset", required=True, choices=DATASETS)
    v.add_argument("--root", required=True, help="dataset root folder")
    v.add_argument("--split", action="append", help="split to check (repeatable; default train and val)")
    v.add_argument("--format", default="auto", help="NYUD-v2 flavour: auto, A, B or C")
    v.add_argument("--limit", type=int, default=None, help="check only the first N ids of each split")
    v.set_defaults(func=_validate)

    s = dsub.add_parser("synth", help="write a synthetic dataset in the real NYUD-v2 / PASCAL-Context / Cityscapes "
                        "layout")
    s.add_argument("--out", required=True, help="new (or empty) output folder")
    s.add_argument("--n", type=int, default=200, help="number of scenes (default 200)")
    s.add_argument("--flavour", default="nyud", choices=DATASETS,
                   help="layout and scenes: indoor rooms (nyud), PASCAL-like scenes (pascal) or streets (cityscapes)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, nargs=2, default=[120, 160], metavar=("H", "W"))
    s.add_argument("--val-fraction", type=float, default=0.25)
    s.set_defaults(func=_synth)

    a = dsub.add_parser("to-arrow", help="store the decoded labels of a root as a memory-mapped Arrow dataset")
    a.add_argument("--dataset", required=True, choices=DATASETS)
    a.add_argument("--root", required=True)
    a.add_argument("--out", required=True, help="new (or empty) output folder")
    a.add_argument("--split", action="append", help="split to convert (repeatable; default train and val)")
    a.add_argument("--format", default="auto", help="NYUD-v2 flavour: auto, A, B or C")
    a.add_argument("--limit", type=int, default=None, help="convert only the first N ids of each split")
    a.add_argument("--crop-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="Cityscapes: the size the samples are stored at, i.e. the data.crop_size of the runs that "
                   "will read the copy (default 256 512); other datasets are stored at their native size")
    a.set_defaults(func=_to_arrow)
