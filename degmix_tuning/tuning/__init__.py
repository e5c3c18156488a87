"""Tuning methods: which backbone parameters train, and what is added to the backbone.

Each method is one module with a `TuningConfig` dataclass and an `apply(model, cfg)`; importing this package
registers them all. Use `apply_tuning(model, "lora", r=8)` or `build_tuned_model(model_cfg, "mtlora")`.
"""

from . import (  # noqa: F401  (importing a method module registers it)
    adapter, bitfit, decoder_only, degmix, ditask, full, ia3, loha, lokr, lora, mtlora,
)
from .base import (
    HEAD_CHOICES, TUNING_METHODS, TuningConfig, TuningMethod, apply_tuning, build_tuned_model, get_tuning_config_cls,
    list_tuning_methods, register_tuning_method, resolve_tuning_config, tuning_config_from_dict,
)
from .extras import BackboneExtras
from .state import load_trainable_state, trainable_bytes, trainable_state
from .structure import Stage, TunerLayer, find_stages

__all__ = sorted([
    "BackboneExtras", "HEAD_CHOICES", "Stage", "TUNING_METHODS", "TuningConfig", "TuningMethod", "apply_tuning",
    "build_tuned_model", "find_stages", "get_tuning_config_cls", "list_tuning_methods", "load_trainable_state",
    "register_tuning_method", "resolve_tuning_config", "trainable_bytes", "trainable_state",
    "TunerLayer", "tuning_config_from_dict",
])
