"""DeGMix model: backbone slot -> fusion -> deformable mixer per task -> task interaction -> gated task query -> heads."""

from .degmix import DeGMixConfig, DeGMixHead
from .factory import ModelConfig, create_model
from .multitask import MultiTaskModel
from .presets import PRESETS, get_preset, list_presets

__all__ = [
    "DeGMixConfig", "DeGMixHead", "ModelConfig", "MultiTaskModel", "PRESETS", "create_model", "get_preset",
    "list_presets",
]
