"""Named model presets: the official full DeGMix models and the DeGMix-Tuning (frozen backbone, d=128) ones.

Parameter counts these reproduce (random init, counted by `count_parameters`):
- degmix_swin_t_nyud 33,198,779 total; degmix_swin_s_nyud 54,516,683 total; degmix_swin_l_nyud 202,916,345.
- degmix_tuning_swin_t_nyud 1,322,645 trainable; degmix_tuning_swin_t_pascal 2,203,397; degmix_tuning_swin_l_pascal
  3,224,537.
- Cityscapes (semseg 19 classes + depth; no published DeGMix count): degmix_swin_t_cityscapes 30,840,822 total,
  degmix_tuning_swin_t_cityscapes 1,318,844 trainable (NYUD's minus 21 semseg outputs of the last 1x1 conv: 21 x 181).
- DeGMix ViT (official ViT-B + DemtViTHead, DeGMix 36da078; counts of the official classes in
  tests/fixtures/official_vit/fixture.json): degmix_vit_b_nyud 97,645,313 = backbone 86,432,256 + FeatConv 5,901,312
  + mixers 1,728,656 + interaction 329,472 (task_fusion 263,168 + smlp 66,304) + queries 1,320,960 (AnyAttention
  1,055,744 + smlp2 265,216) + gate 264,192 + bottlenecks 1,660,320 + final convs 8,145. The official model also
  holds `linear1` (369,408; built, never used in forward: 98,014,721 in all), which we omit: it would get no
  gradient and break DDP; import-official drops it and says so.
  degmix_vit_l_nyud 316,539,137 (INFERRED: the official vit_l() cannot run; ViT-L backbone 304,146,432, FeatConv on
  1024 channels 7,080,960). degmix_tuning_vit_b_nyud 3,499,541 trainable (89,931,797 total), degmix_tuning_vit_l_nyud
  4,089,365 (308,235,797): d=128 and semseg+depth as the Swin tuning presets, our choice (no published recipe).
  The README's ViT-B row (202.92M, 321.22G) repeats the Swin-L row: see reporting/published.py REPEATED_ROWS.
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
# the official ViT head's head settings (demt_vit_head.py l.25-48; builder.py l.31-33); FeatConv width = d / 2
VIT_HEAD = {"fusion": "conv_pyramid", "query_attention": "linear", "bottleneck_channels": 180}
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

# DeGMix ViT (official DemtViTHead: FeatConv fusion, softmax-free task queries, bottleneck 180 from builder.py's
# Swin-T channel table); ViT-L is inferred (module docstring). The tuning presets' d=128 and semseg+depth follow the
# Swin DeGMix-Tuning presets: no DeGMix-Tuning ViT recipe is published.
for _size in ("b", "l"):
    PRESETS.register(
        f"degmix_vit_{_size}_nyud",
        ModelConfig(backbone=f"vit_{_size}", dataset="nyud", tasks=_NYUD_ALL, freeze_backbone=False,
                    head=DeGMixConfig(dim=256, **VIT_HEAD)),
    )
    PRESETS.register(
        f"degmix_tuning_vit_{_size}_nyud",
        ModelConfig(backbone=f"vit_{_size}", dataset="nyud", tasks=_TUNING_TASKS["nyud"], freeze_backbone=True,
                    head=DeGMixConfig(dim=128, **VIT_HEAD)),
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
