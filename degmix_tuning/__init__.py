"""degmix-tuning: parameter-efficient multi-task dense prediction with a frozen backbone and the DeGMix head.

The public names below are imported on first use (PEP 562), so `import degmix_tuning` and the command line's
`--help` do not pay for torch, timm and torchvision until something needs them.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "create_backbone": "backbones", "list_backbones": "backbones", "register_backbone": "backbones",
    "ConfigBase": "config",
    "DeGMixConfig": "models", "ModelConfig": "models", "MultiTaskModel": "models", "create_model": "models",
    "get_preset": "models", "list_presets": "models",
    "ParamReport": "params", "count_parameters": "params",
    "TASKS": "tasks", "TaskSpec": "tasks", "get_task": "tasks", "list_tasks": "tasks", "register_task": "tasks",
    "load_tuned": "training.checkpoint",
    "apply_tuning": "tuning", "build_tuned_model": "tuning", "list_tuning_methods": "tuning",
    "register_tuning_method": "tuning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'degmix_tuning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
