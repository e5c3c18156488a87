"""Named training protocols: the published recipes as sets of config values, each value with its source line.

A protocol sits between the preset and the command line: `--protocol NAME` (or `protocol` in a config) sets its
values, explicit flags still win, and every value that differs from the protocol's is printed at the start of a
run and recorded in `config.json` / `summary.json` as `protocol_overrides` ({field: [protocol value, value used]}).

- `degmix`: the DeMTG/DeGMix code that produced the DeGMix tables (github.com/yangyangxu0/DeMTG b3be4ef).
- `mtlora`: the MTLoRA/DiTASK code behind the DiTASK-style PEFT rows and the DeGMix-Tuning rows' units
  (github.com/scale-lab/MTLoRA, github.com/ipsitmantri/DiTASK).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..registry import Registry


@dataclass(frozen=True)
class Protocol:
    """One published recipe: config values (dotted keys) and where each comes from."""

    name: str
    summary: str
    settings: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> "file:line" in the official code
    # the result key each task is reported with, where it is not the task's default (TaskSpec.main_metric)
    headline_metrics: dict[str, str] = field(default_factory=dict)


PROTOCOLS: Registry[Protocol] = Registry("training protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    return PROTOCOLS.register(protocol.name, protocol)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


def list_protocols() -> list[str]:
    return PROTOCOLS.names()


def protocol_assignments(name: str) -> list[str]:
    """The protocol as `key=value` overrides (`ConfigBase.override` syntax), `protocol=name` included."""
    protocol = get_protocol(name)
    return [f"protocol={name}"] + [f"{k}={json.dumps(v)}" for k, v in protocol.settings.items()]


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples -> lists, as a saved config holds them


def protocol_differences(cfg) -> dict[str, list]:
    """{field: [protocol value, value used]} for every protocol field the config does not take from its protocol."""
    from .config import ExperimentConfig

    flat = ExperimentConfig.flat_fields(_plain(cfg.to_dict()))
    protocol = get_protocol(cfg.protocol)
    return {k: [_plain(v), flat.get(k)] for k, v in protocol.settings.items() if _plain(v) != flat.get(k)}


def headline_metric(protocol_name: str, task: str) -> str:
    """The result key a task is reported with under a protocol (e.g. saliency: maxf, or per_image_miou)."""
    from ..tasks import get_task

    return get_protocol(protocol_name).headline_metrics.get(task, get_task(task).main_metric)


DEMTG = "DeMTG@b3be4ef"
register_protocol(Protocol(
    name="degmix",
    summary="the DeMTG/DeGMix code: SGD + poly over 40k iterations, batch 8 (one image per GPU on 8 GPUs), "
            "per-image loss means, SyncBN, fp32, official interaction, native-size evaluation, last checkpoint",
    settings={
        "model.head.interaction": "official",
        "model.drop_path_rate": None,  # each official backbone's own: Swin 0.1, ViT 0.0 (sources)
        "train.optimizer": "sgd",
        "train.lr": 1e-3,
        "train.lr_scale_batch": None,
        "train.momentum": 0.9,
        "train.weight_decay": 5e-4,
        "train.schedule": "poly",
        "train.poly_power": 0.9,
        "train.max_steps": 40_000,
        "train.epochs": None,
        "train.batch_size": 8,
        "train.clip_grad_norm": None,
        "train.mixed_precision": "no",
        "train.sync_bn": True,
        "train.loss_normalization": "image",
        "train.select": "last",
        "data.pipeline": "atrc",
        "data.crop_size": None,
        "data.scale_range": [0.5, 2.0],
        "data.flip": True,
        "data.photometric": True,
        "data.cat_max_ratio": 0.75,
    },
    sources={
        "model.head.interaction": f"{DEMTG} src/model/heads/demt_head.py l.46, l.68 (nn.MultiheadAttention, "
                                  "batch_first=False, one image per GPU)",
        "model.drop_path_rate": f"the backbone's own default, which is the official value: Swin 0.1 ({DEMTG} "
                                "src/model/backbones/swin.py l.781 = timm's Swin default), ViT 0.0 (DeGMix@36da078 "
                                "src/model/backbones/vit.py l.325, vit_b() l.632-636 = timm's ViT default)",
        "train.optimizer": f"{DEMTG} src/model/pl_model.py l.20-24, l.102-129",
        "train.lr": f"{DEMTG} config yaml `lr: 0.001`; src/model/pl_model.py l.120-130",
        "train.momentum": f"{DEMTG} src/model/pl_model.py l.104-117",
        "train.weight_decay": f"{DEMTG} src/model/pl_model.py l.104-117",
        "train.schedule": f"{DEMTG} src/model/utils_model.py l.7-18; pl_model.py l.112-115",
        "train.poly_power": f"{DEMTG} src/model/utils_model.py l.7-18",
        "train.max_steps": f"{DEMTG} config yaml `iterations: 40000`; src/main.py l.39",
        "train.batch_size": f"{DEMTG} config yaml `batch_size: 8`; src/data/pl_data.py l.22, l.99 (split over GPUs)",
        "train.mixed_precision": f"{DEMTG} src/main.py (Lightning default precision 32)",
        "train.sync_bn": f"{DEMTG} config yaml `sync_batchnorm: true`",
        "train.loss_normalization": f"{DEMTG} src/model/criterion.py l.98-180 (means over the GPU's one image), "
                                    "README.md l.77 (8 GPUs), DDP averages the ranks",
        "train.select": f"{DEMTG} src/main.py l.44 (trainer.test on the last-iteration model)",
        "train.lr_scale_batch": f"{DEMTG} src/model/pl_model.py l.120-130 (lr as given, no batch scaling)",
        "train.epochs": f"{DEMTG} src/main.py l.39 (Trainer(max_steps=iterations): counted in iterations)",
        "train.clip_grad_norm": f"{DEMTG} src/main.py l.39 (Lightning default: no clipping)",
        "data.crop_size": f"{DEMTG} src/data/nyud.py l.24 (425x560), src/data/pascal_context.py l.57 (512x512): "
                          "the dataset's default",
        "data.flip": f"{DEMTG} src/data/pl_data.py l.31-40",
        "data.photometric": f"{DEMTG} src/data/pl_data.py l.31-40",
        "data.pipeline": f"{DEMTG} src/data/pl_data.py l.31-46, src/data/transforms.py",
        "data.scale_range": f"{DEMTG} src/data/pl_data.py l.31-40",
        "data.cat_max_ratio": f"{DEMTG} src/data/pl_data.py l.31-40",
    },
))

MTLORA = "MTLoRA@333a375"
DITASK = "DiTASK@7541c55"
register_protocol(Protocol(
    name="mtlora",
    summary="the MTLoRA/DiTASK code: AdamW (wd 0.05, none on 1-d tensors and biases), base lr 5e-4 x batch/512, "
            "20 warm-up epochs then cosine over 300 epochs, gradient clipping 5, fp16 AMP, drop path 0.2, "
            "flip + scale/rotate + 448x448 resize for training, 448x448 resize for evaluation, losses pooled over "
            "the batch, saliency reported as per-image mIoU, best evaluation by Δm",
    settings={
        "model.head.interaction": "official",
        "model.drop_path_rate": 0.2,
        "train.optimizer": "adamw",
        "train.lr": 5e-4,
        "train.lr_scale_batch": 512,
        "train.betas": [0.9, 0.999],
        "train.eps": 1e-8,
        "train.weight_decay": 0.05,
        "train.schedule": "cosine",
        "train.warmup_epochs": 20,
        "train.warmup_lr": 5e-7,
        "train.min_lr": 5e-6,
        "train.epochs": 300,
        "train.eval_every_epochs": 5,
        "train.eval_offset_epochs": 1,
        "train.batch_size": 32,
        "train.accumulation": "sum",
        "train.edge_pos_weight": 0.95,
        "train.clip_grad_norm": 5.0,
        "train.mixed_precision": "fp16",
        "train.loss_normalization": "batch",
        "train.select": "best",
        "data.pipeline": "mtlora",
        "data.crop_size": [448, 448],
    },
    sources={
        "model.head.interaction": "inferred: the DeGMix-Tuning recipe is unpublished; the DeGMix head as the "
                                  "official code computes one image",
        "model.drop_path_rate": f"{MTLORA} configs/mtlora/tiny_448/*.yaml l.6; {DITASK} "
                                "configs/ditask/ditask_tiny_448_r64.yaml l.6",
        "train.optimizer": f"{MTLORA} config.py l.221, optimizer.py l.58-60 (no decay: 1-d and .bias only, "
                           "optimizer.py l.33-37, 71-86)",
        "train.lr": f"{MTLORA} config.py l.184; scaling main.py l.577-593",
        "train.lr_scale_batch": f"{MTLORA} main.py l.577-593 (lr, warm-up lr and min lr x batch x GPUs / 512)",
        "train.betas": f"{MTLORA} config.py l.223-225",
        "train.eps": f"{MTLORA} config.py l.223-225",
        "train.weight_decay": f"{MTLORA} config.py l.183",
        "train.schedule": f"{MTLORA} lr_scheduler.py l.25-45 (timm CosineLRScheduler, warmup_prefix), main.py "
                          "l.341-353 (step_update after each step)",
        "train.warmup_epochs": f"{MTLORA} config.py l.182",
        "train.warmup_lr": f"{MTLORA} config.py l.186",
        "train.min_lr": f"{MTLORA} config.py l.187",
        "train.epochs": f"{MTLORA} config.py l.181, main.py l.72; {DITASK} README.md l.34",
        "train.eval_every_epochs": f"{MTLORA} main.py l.70, l.299-307",
        "train.eval_offset_epochs": f"{MTLORA} main.py l.290, l.299 (0-based `epoch % EVAL_FREQ == 0`: after "
                                    "epochs 1, 6, 11, ...; its `epoch == 50` is one of them), l.307 (final eval)",
        "train.edge_pos_weight": f"{MTLORA} data/mtl_ds.py l.793 (`edge_w = 0.95` for PASCAL and NYUD), "
                                 "mtl_loss_schemes.py l.245",
        "train.accumulation": f"{MTLORA} main.py l.341-349 (no division by ACCUMULATION_STEPS before "
                              "loss_scaler: gradients add up)",
        "train.batch_size": f"{MTLORA} README.md l.28 and issue #4 (32 on one V100); {DITASK} README.md l.34 "
                            "(64 x 8 GPUs)",
        "train.clip_grad_norm": f"{MTLORA} config.py l.189, main.py l.347-349",
        "train.mixed_precision": f"{MTLORA} config.py l.280, main.py l.341 (fp16 autocast + GradScaler)",
        "train.loss_normalization": f"{MTLORA} mtl_loss_schemes.py l.22-90, 132-208 (means over the batch)",
        "train.select": "not in the code (main.py l.296-304 selects nothing); best validation Δm is what "
                        "MTLoRA issue #6 reports",
        "data.pipeline": f"{MTLORA} data/mtl_ds.py l.833-870, data/custom_transforms.py",
        "data.crop_size": f"{MTLORA} configs/mtlora/tiny_448/*.yaml l.2 (IMG_SIZE 448), data/mtl_ds.py l.818-823",
    },
    headline_metrics={"sal": "per_image_miou"},  # 'mIoU' of eval_sal_no_beta.py l.44-50, 70-78
))


def protocol_table() -> str:
    """Markdown: one row per config field a protocol sets, each protocol's value and its source (README table)."""
    names = list_protocols()
    keys = list(dict.fromkeys(k for n in names for k in get_protocol(n).settings))
    head = "| field | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"

    def cell(name: str, key: str) -> str:
        p = get_protocol(name)
        if key not in p.settings:
            return "(not set)"
        value = json.dumps(p.settings[key])
        return f"`{value}` ({p.sources[key]})" if key in p.sources else f"`{value}`"

    return head + "".join(f"| `{k}` | " + " | ".join(cell(n, k) for n in names) + " |\n" for k in keys)
