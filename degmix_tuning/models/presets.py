"""Named model presets: the official full DeGMix models and the DeGMix-Tuning (frozen backbone, d=128) ones.

Parameter counts these reproduce (random init, counted by `count_parameters`):
- degmix_swin_t_nyud 33,198,779 total; degmix_swin_s_nyud 54,516,683 total; degmix_swin_l_nyud 202,916,345.
- degmix_tuning_swin_t_nyud 1,322,645 trainable; degmix_tuning_swin_t_pascal 2,203,397; degmix_tuning_swin_l_pascal
  3,224,537.
- Cityscapes (semseg 19 classes + depth; no published DeGMix count): degmix_swin_t_cityscapes 30,840,822 total,
  degmix_tuning_swin_t_cityscapes 1,318,844 trainable (NYUD's minus 21 semseg outputs of the last 1x1 conv: 21 x 181).
"""

from __future__ import annotations

import copy

from ..registry import Registry
from .degmix import DeGMixConfig
from .factory import ModelConfig

PRESETS: Registry[ModelConfig] = Registry("model preset")

_BACKBONES = {"t": "swin_t", "s": "swin_s", "b": "swin_b", "l": "swin_l"}
_NYUD_ALL = ("semseg", "depth", "normals", "edge")
_PASCAL_ALL = ("semseg", "human_parts", "sal", "normals", "edge")
_CITYSCAPES_ALL = ("semseg", "depth")
_TUNING_TASKS = {"nyud": ("semseg", "depth"), "pascal": ("semseg", "human_parts", "sal", "normals"),
                 "cityscapes": ("semseg", "depth")}

for _size, _bb in _BACKBONES.items():
    for _ds, _tasks in (("nyud", _NYUD_ALL), ("pascal", _PASCAL_ALL), ("cityscapes", _CITYSCAPES_ALL)):
        PRESETS.register(
            f"degmix_swin_{_size}_{_ds}",
            ModelConfig(backbone=_bb, dataset=_ds, tasks=_tasks, head=DeGMixConfig(dim=256), freeze_backbone=False),
        )
        PRESETS.register(
            f"degmix_tuning_swin_{_size}_{_ds}",
            ModelConfig(backbone=_bb, dataset=_ds, tasks=_TUNING_TASKS[_ds], head=DeGMixConfig(dim=128),
                        freeze_backbone=True),
        )

# a CPU-sized preset for demos and tests: the same head at d=32 on a 0.3M-parameter Swin
PRESETS.register(
    "degmix_tuning_tiny_nyud",
    ModelConfig(backbone="tiny_swin", dataset="nyud", tasks=("semseg", "depth"), head=DeGMixConfig(dim=32),
                freeze_backbone=True),
)


def get_preset(name: str) -> ModelConfig:
    return copy.deepcopy(PRESETS.get(name))


def list_presets() -> list[str]:
    return PRESETS.names()
