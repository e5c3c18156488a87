"""The command-line layer shared by `recipes/tune_nyud.py` and `recipes/tune_pascal.py`.

Precedence: dataclass defaults < `--config run.json` < `--synthetic` demo settings < explicit flags < `--set a.b=v`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

# the config classes (and torch behind them) are imported where used: `degmix-tuning --help` stays instant
if TYPE_CHECKING:
    from .config import ExperimentConfig

# A short CPU demo on the built-in synthetic scenes; every value is saved in the run's config.json. No zoom
# augmentation: zooming divides the depth labels by the zoom, which a few hundred steps cannot learn to undo (with it,
# the demo's depth came out 0.5 m too shallow on average and no better than predicting the mean depth).
SYNTHETIC_DEMO = {
    "data.synthetic_size": "96,128",
    "data.scale_range": "1,1",
    "train.max_steps": 300,
    "train.batch_size": 4,
    "train.lr": 0.01,
    "train.eval_every": 100,
    "train.checkpoint_every": 100,
    "train.log_every": 5,
    "train.eval_at_start": True,
    "train.output_dir": "runs/synthetic_{dataset}",
    # as measured before the protocols existed (README): the paper's global interaction, losses pooled over the batch
    "model.head.interaction": "global",
    "train.loss_normalization": "batch",
}
# PASCAL's demo trains 4 tasks, twice NYUD's per-step cost: half the steps keep it near 5 minutes on 2 CPU cores.
SYNTHETIC_DEMO_PER_DATASET = {
    "pascal": {"train.max_steps": 150, "train.eval_every": 50, "train.checkpoint_every": 50},
    "cityscapes": {"data.synthetic_size": "96,192"},  # the 1:2 street frame
}
# The demo's backbone when the command names none: the small Swin pretrained on the synthetic PASCAL-like scenes
# (weights ship with the package, see backbones/swin_synthetic.py), so the frozen features mean something on CPU.
# For NYUD it is a real transfer (other scenes, classes and tasks); for PASCAL the backbone saw the same scene
# flavour and tasks (other scenes), so the PASCAL demo measures no transfer. A named backbone, weights (--pretrained,
# --checkpoint-path: the preset's Swin-T), --preset or --config keep their own backbone.
SYNTHETIC_DEMO_BACKBONE = {"model.backbone": "swin_synthetic", "model.pretrained": True}
_BACKBONE_KEYS = ("model.backbone", "model.pretrained", "model.checkpoint_path")

_FLAGS = {
    # flag: (config key, type, help)
    "backbone": ("model.backbone", str, "registered backbone or any timm model name (default per preset: swin_t; "
                 "--synthetic: swin_synthetic, pretrained); weights need --pretrained, e.g. --backbone swin_synthetic "
                 "--pretrained"),
    "tasks": ("model.tasks", str, "comma-separated tasks of the dataset (default: the preset's)"),
    "head_dim": ("model.head.dim", int, "DeGMix head width d (128 for DeGMix-Tuning, 256 official full model)"),
    "interaction": ("model.head.interaction", str, "task interaction: global | pixel | official"),
    "checkpoint_path": ("model.checkpoint_path", str, "local .pth/.safetensors backbone weights"),
    "data_root": ("data.root", str, "dataset root folder (NYUD-v2 / PASCAL-Context layout)"),
    "arrow_path": ("data.arrow_path", str, "train from a dataset converted with `degmix-tuning data to-arrow`"),
    "num_workers": ("data.num_workers", int, "DataLoader workers"),
    "max_samples": ("data.max_samples", int, "use at most this many samples per split (quick runs)"),
    "tuning": ("tuning", str, "tuning method (default degmix): {methods}"),
    "lr": ("train.lr", float, "learning rate (official: 1e-3)"),
    "max_steps": ("train.max_steps", int, "optimizer steps (official: 40000)"),
    "batch_size": ("train.batch_size", int, "global batch size (official: 8)"),
    "mixed_precision": ("train.mixed_precision", str, "no | fp16 | bf16 (wins over the launcher's "
                        "--mixed_precision, which wins over the protocol's)"),
    "gradient_accumulation_steps": ("train.gradient_accumulation_steps", int, "micro-batches per optimizer step"),
    "clip_grad_norm": ("train.clip_grad_norm", float, "clip gradients to this global norm"),
    "seed": ("train.seed", int, "random seed"),
    "eval_every": ("train.eval_every", int, "evaluate every N steps (0: only at the end)"),
    "checkpoint_every": ("train.checkpoint_every", int, "checkpoint every N steps (0: only at the end)"),
    "output_dir": ("train.output_dir", str, "run folder (--synthetic: runs/synthetic_<dataset>[_<backbone>])"),
}


def add_config_flags(p: argparse.ArgumentParser, dataset: str | None, skip: tuple[str, ...] = (),
                     list_methods: bool = True) -> None:
    """The flags that build an `ExperimentConfig` (read by `config_from_args`), shared by the recipes and
    `degmix-tuning compare`/`train`; `skip` leaves out the `_FLAGS` a caller sets itself (compare: tuning,
    output_dir); list_methods=False keeps the method list (and torch behind it) out of an instant `--help`."""
    which = dataset or "<dataset>"
    values = {**SYNTHETIC_DEMO, **SYNTHETIC_DEMO_PER_DATASET.get(dataset or "", {})}
    demo = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in values.items() if k != "train.output_dir")
    p.add_argument("--synthetic", action="store_true",
                   help=f"train on the built-in synthetic scenes (no download); demo defaults: {demo}; backbone "
                   "swin_synthetic with its packaged pretrained weights unless a backbone, weights or preset is named")
    p.add_argument("--config", help="an ExperimentConfig JSON (e.g. a previous run's config.json)")
    p.add_argument("--preset", default=None,
                   help=f"model preset to start from (default degmix_tuning_swin_t_{which}; --synthetic: with "
                   f"{SYNTHETIC_DEMO_BACKBONE['model.backbone']} unless a backbone, weights or preset is named)")
    p.add_argument("--pretrained", action="store_true", help="load timm/hub pretrained backbone weights")
    p.add_argument("--random-backbone", action="store_true",
                   help="on real data, train with a frozen random-init backbone on purpose (otherwise refused)")
    p.add_argument("--protocol", default=None, choices=("degmix", "mtlora"),
                   help="training protocol whose values are the defaults (default degmix: the DeMTG/DeGMix code; "
                   "mtlora: the MTLoRA/DiTASK code); explicit flags override them and the overrides are recorded")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field, e.g. train.lr=1e-3")
    for flag, (_, typ, help_) in _FLAGS.items():
        if flag in skip:
            continue
        if "{methods}" in help_ and list_methods:
            from ..tuning import list_tuning_methods

            help_ = help_.replace("{methods}", ", ".join(list_tuning_methods()))
        help_ = help_.replace("{methods}", "`degmix-tuning models methods` lists them")
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=typ, default=None, help=help_)


def build_parser(dataset: str) -> argparse.ArgumentParser:
    from ..data.info import get_dataset_info

    info = get_dataset_info(dataset)
    p = argparse.ArgumentParser(
        description=f"DeGMix-Tuning on {dataset.upper()} (tasks: {', '.join(info.tasks)}; by default "
        f"{', '.join(info.default_tasks)}). Start with `accelerate launch` (CPU, one GPU or many) or plain `python`.",
    )
    add_run_flags(p, dataset)
    p.add_argument("--debug", action="store_true", help="show the full traceback of errors (normally one line)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module (name or .py file) that registers backbones/tasks/tuning methods; repeatable")
    return p


def add_run_flags(p: argparse.ArgumentParser, dataset: str | None, list_methods: bool = True) -> None:
    """Everything a training run takes: the config flags plus --resume / --no-progress (recipes and `train`)."""
    add_config_flags(p, dataset, list_methods=list_methods)
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved config (protocol, overrides, backbone weights, effective lr) as "
                   "JSON and exit without training")
    p.add_argument("--resume", default=None, help="checkpoint folder, or 'latest' in --output-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _set_keys(args: argparse.Namespace) -> set[str]:
    return {item.split("=", 1)[0].strip() for item in args.set}


def uses_demo_backbone(args: argparse.Namespace) -> bool:
    """--synthetic with no backbone, weights, preset or config named anywhere: the demo picks `swin_synthetic`."""
    named = (getattr(args, "backbone", None) or getattr(args, "checkpoint_path", None) or args.pretrained
             or args.preset or args.config
             or _set_keys(args) & set(_BACKBONE_KEYS))
    return bool(args.synthetic and not named)


def config_from_args(args: argparse.Namespace, dataset: str) -> ExperimentConfig:
    from ..data.config import DataConfig
    from ..models.presets import get_preset
    from .config import ExperimentConfig, TrainConfig
    from .protocols import protocol_assignments

    if args.config:
        cfg = ExperimentConfig.load(args.config)
    else:
        preset = args.preset or f"degmix_tuning_swin_t_{dataset}"
        model = get_preset(preset)
        # a preset carries its tuning method: degmix_* (full DeGMix) trains everything, degmix_tuning_* the head
        cfg = ExperimentConfig(model=model, data=DataConfig(dataset=dataset), train=TrainConfig(),
                               tuning="degmix" if model.freeze_backbone else "full")
    # the protocol's values first (a saved config already holds its own, so it is re-applied only when named)
    protocol = getattr(args, "protocol", None)
    overrides: list[str] = protocol_assignments(protocol or "degmix") if protocol or not args.config else []
    named: list[str] = []  # what the command line sets over the protocol
    if args.synthetic:
        demo = {**SYNTHETIC_DEMO, **SYNTHETIC_DEMO_PER_DATASET.get(dataset, {})}
        overrides += [f"{k}={v}".replace("{dataset}", dataset) for k, v in demo.items()]
        overrides.append("data.synthetic=true")
        if uses_demo_backbone(args):
            overrides += [f"{k}={v}" for k, v in SYNTHETIC_DEMO_BACKBONE.items()]
    if args.pretrained:
        named.append("model.pretrained=true")
    if getattr(args, "random_backbone", False):
        named.append("random_backbone=true")
    for flag, (key, _, _) in _FLAGS.items():
        value = getattr(args, flag, None)  # None too for a flag the caller skipped
        if value is not None:
            named.append(f"{key}={value}")
    named += list(args.set)
    overrides += _length_in_steps(overrides, named)
    cfg = cfg.override(overrides + named) if overrides or named else cfg
    cfg = _precision_in_order(cfg, {item.split("=", 1)[0].strip() for item in named})
    from ..runtime import IMPORTED_PLUGINS

    if IMPORTED_PLUGINS:  # recorded, so evaluate / predict / --resume find the plugin's backbone on their own
        imports = list(dict.fromkeys([*cfg.model.imports, *IMPORTED_PLUGINS]))
        cfg = cfg.override([f"model.imports={','.join(imports)}"])
    output_named = getattr(args, "output_dir", None) is not None or "train.output_dir" in _set_keys(args)
    if args.synthetic and not uses_demo_backbone(args) and not output_named:
        # one demo folder per backbone: runs of other backbones never land in (or resume) the default demo's folder
        cfg = cfg.override([f"train.output_dir=runs/synthetic_{dataset}_{cfg.model.backbone.replace('/', '_')}"])
    return cfg


def _length_in_steps(protocol_and_demo: list[str], named: list[str]) -> list[str]:
    """A step count given over a protocol counted in epochs wins: `--max-steps` clears train.epochs (and
    `--eval-every` train.eval_every_epochs and train.eval_offset_epochs), unless the epochs are named too."""
    keys = {item.split("=", 1)[0].strip() for item in named}
    demo = {item.split("=", 1)[0].strip() for item in protocol_and_demo if not item.startswith(("protocol=",))}
    extra = []
    for steps, epochs in (("train.max_steps", "train.epochs"), ("train.eval_every", "train.eval_every_epochs"),
                          ("train.eval_every", "train.eval_offset_epochs"),
                          ("train.eval_offset", "train.eval_offset_epochs")):
        if (steps in keys or (steps in demo and "train.epochs" not in keys)) and epochs not in keys:
            extra.append(f"{epochs}=null")
    return extra


LAUNCHER_PRECISION = "ACCELERATE_MIXED_PRECISION"  # set by `accelerate launch --mixed_precision` / `accelerate config`


def launcher_mixed_precision() -> str | None:
    """The precision the launcher asked for ("fp16" / "bf16"), or None. `accelerate launch` writes "no" when nothing
    was chosen, so "no" there is no choice: it never overrides a protocol's fp16."""
    import os

    value = os.environ.get(LAUNCHER_PRECISION, "").strip().lower()
    if value in ("", "no"):
        return None
    if value not in ("fp16", "bf16"):
        raise ValueError(f"the launcher asks for mixed precision {value!r} ({LAUNCHER_PRECISION}); degmix-tuning "
                         "trains with no, fp16 or bf16")
    return value


def resolve_mixed_precision(cfg: ExperimentConfig, default: str | None = None) -> ExperimentConfig:
    """train.mixed_precision not set (None) -> the launcher's choice, recorded in the config, else `default` (None:
    stays unset, which trains in fp32; "no" to compare it with a protocol's value)."""
    if cfg.train.mixed_precision is not None:
        return cfg
    chosen = launcher_mixed_precision() or default
    return cfg.override([f"train.mixed_precision={chosen}"]) if chosen else cfg


def _precision_in_order(cfg: ExperimentConfig, named: set[str]) -> ExperimentConfig:
    """Mixed precision, the first that says one: the command line (--mixed-precision, --set), the launcher (`accelerate
    launch --mixed_precision`, `accelerate config`), the protocol or --config. A launcher's value over the protocol's
    is recorded as a protocol override."""
    if "train.mixed_precision" in named:
        return cfg
    launcher = launcher_mixed_precision()
    if launcher:
        return cfg.override([f"train.mixed_precision={launcher}"])
    return _amp_where_possible(cfg)


def _amp_where_possible(cfg: ExperimentConfig) -> ExperimentConfig:
    """fp16 AMP from a protocol (mtlora) needs CUDA: without it the run is fp32, said in one line and recorded as a
    protocol override. An fp16 the command line or the launcher asked for is refused later (engine), as before."""
    if cfg.train.mixed_precision != "fp16":
        return cfg
    import torch

    if torch.cuda.is_available():
        return cfg
    print(f"[degmix-tuning] protocol {cfg.protocol} trains with fp16 AMP, which needs a CUDA GPU; this machine has "
          "none, so this run is fp32 (recorded in protocol_overrides)", flush=True)
    return cfg.override(["train.mixed_precision=no"])


def missing_data_message(dataset: str, root: str | None) -> str:
    from ..data.info import get_dataset_info

    where = f"--data-root {root!r} does not exist" if root else "no --data-root was given"
    return f"{where}. {get_dataset_info(dataset).how_to_get()} Then pass --data-root <root>."


def require_data(cfg: ExperimentConfig, dataset: str) -> None:
    """Stop before any work when the config's data is missing: one line naming the fix."""
    if cfg.data.arrow_path and not Path(cfg.data.arrow_path).is_dir():
        raise FileNotFoundError(f"--arrow-path {cfg.data.arrow_path!r} does not exist; make it with `degmix-tuning "
                                f"data to-arrow --dataset {dataset} --root DIR --out {cfg.data.arrow_path}`")
    if not cfg.data.synthetic and not cfg.data.arrow_path and (not cfg.data.root or not Path(cfg.data.root).is_dir()):
        raise FileNotFoundError(missing_data_message(dataset, cfg.data.root))


def main(dataset: str, argv: list[str] | None = None) -> int:
    """The recipe entry point (`recipes/tune_<dataset>.py`; `degmix-tuning train <dataset>` is the same run): user
    errors are one line and exit code 2 (`errors.py`); `--debug` keeps tracebacks."""
    from ..cli import run_mapping_errors, show_info_lines

    show_info_lines()
    args = build_parser(dataset).parse_args(argv)
    return run_mapping_errors(lambda: _run(args, dataset), f"tune_{dataset}", "recipe", args.debug)


def _run(args: argparse.Namespace, dataset: str) -> int:
    from ..backbones import import_plugins

    import_plugins(getattr(args, "imports", []))  # `degmix-tuning train` imports them in cli.main
    cfg = config_from_args(args, dataset)
    require_data(cfg, dataset)
    if getattr(args, "print_config", False):
        print(resolved_config_json(cfg))
        return 0
    from .engine import train

    result = train(cfg, resume_from=args.resume, show_progress=not args.no_progress)
    if not result.main_process:
        return 0
    if result.initial_metrics and result.final_metrics:
        print(f"[degmix-tuning] untrained -> trained: {_compare(result.initial_metrics, result.final_metrics)}")
    print(f"[degmix-tuning] run folder: {result.run_dir}")
    return 0


def resolved_config_json(cfg: ExperimentConfig) -> str:
    """What a run with `cfg` would train, as JSON: the config after the protocol, the flags and the run length in
    steps, the protocol values it overrides, the backbone weights (built, nothing trained) and the lr used."""
    import json

    from . import backbone_weights
    from .engine import build_model_for_crop, resolve_config
    from .optim import effective_lr

    backbone_weights.require_real_weights(cfg)
    cfg, model = build_model_for_crop(resolve_config(cfg), say=lambda line: None)  # stdout is the JSON alone
    weights = backbone_weights.describe(cfg, model.backbone)
    return json.dumps({"config": cfg.to_dict(), "backbone_weights": weights, "effective_lr": effective_lr(cfg.train)},
                      indent=2)


def _compare(before: dict, after: dict) -> str:
    from ..metrics import format_metric
    from ..tasks import get_task

    parts = []
    for task, m in after.items():
        key = get_task(task).main_metric
        if key in m and key in before.get(task, {}):  # a missing value: "missing (reason)"
            parts.append(f"{task} {key} {format_metric(before[task], key)} -> {format_metric(m, key)}")
    return "; ".join(parts)
