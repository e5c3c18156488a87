"""`ModelConfig` and `create_model`: backbone name + dataset + tasks + head config -> `MultiTaskModel`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backbones import create_backbone
from ..config import ConfigBase
from ..data.info import get_dataset_info
from ..tasks import get_task
from .degmix import DeGMixConfig, DeGMixHead
from .multitask import MultiTaskModel


@dataclass
class ModelConfig(ConfigBase):
    """What to build. `backbone` is a registered name (`swin_t`, `vit_b`, `tiny_swin`, ...) or any timm model name."""

    backbone: str = "swin_t"
    pretrained: bool = False  # timm/hub weights for `backbone` (needs the hub cache or network)
    checkpoint_path: str | None = None  # local .pth/.safetensors backbone weights
    img_size: tuple[int, int] | None = None  # size the backbone is built for (Swin/ViT); any size still runs
    backbone_kwargs: dict = field(default_factory=dict)
    # stochastic depth of a backbone that trains; None keeps the backbone's default (official: Swin 0.1, ViT 0.0)
    drop_path_rate: float | None = None
    imports: tuple[str, ...] = ()  # `--import` plugin modules that register the backbone (imported before building)
    dataset: str = "nyud"  # decides class counts (semseg: 40 NYUD / 21 PASCAL)
    tasks: tuple[str, ...] = ("semseg", "depth")
    head: DeGMixConfig = field(default_factory=DeGMixConfig)
    freeze_backbone: bool = True

    def __post_init__(self):
        if self.drop_path_rate is not None and not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"model.drop_path_rate must be in [0, 1) or null, got {self.drop_path_rate}")
        if not self.tasks:
            raise ValueError("ModelConfig.tasks is empty; name at least one task (e.g. semseg,depth)")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"ModelConfig.tasks has duplicates: {self.tasks}")
        for t in self.tasks:
            get_task(t)  # unknown task -> KeyError with close matches
        info = get_dataset_info(self.dataset)
        missing = [t for t in self.tasks if t not in info.tasks]
        if missing:
            raise ValueError(f"dataset {self.dataset!r} has no labels for {missing}; it has {list(info.tasks)}")

    def task_channels(self) -> dict[str, int]:
        return get_dataset_info(self.dataset).task_channels(self.tasks)


def create_model(cfg: ModelConfig | str, **overrides) -> MultiTaskModel:
    """Build a `MultiTaskModel` from a `ModelConfig` or a preset name (see `list_presets()`)."""
    if isinstance(cfg, str):
        from .presets import get_preset

        cfg = get_preset(cfg)
    if overrides:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), **overrides})
    if cfg.imports:
        from ..backbones import import_plugins

        import_plugins(cfg.imports)
    extra = {} if cfg.drop_path_rate is None else {"drop_path_rate": cfg.drop_path_rate}
    backbone = create_backbone(
        cfg.backbone, pretrained=cfg.pretrained, checkpoint_path=cfg.checkpoint_path, img_size=cfg.img_size,
        **extra, **cfg.backbone_kwargs,
    )
    return assemble_model(cfg, backbone)


def assemble_model(cfg: ModelConfig, backbone) -> MultiTaskModel:
    """The head of `cfg` sized from `backbone`'s channels, around that backbone (e.g. one given to `load_tuned`)."""
    head = DeGMixHead(backbone.channels, cfg.task_channels(), cfg.head)
    model = MultiTaskModel(backbone, head, freeze_backbone=cfg.freeze_backbone)
    model.config = cfg
    return model
