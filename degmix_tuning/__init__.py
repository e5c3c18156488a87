"""degmix-tuning: parameter-efficient multi-task dense prediction with a frozen backbone and the DeGMix head."""

from .backbones import create_backbone, list_backbones, register_backbone
from .config import ConfigBase
from .models import DeGMixConfig, ModelConfig, MultiTaskModel, create_model, get_preset, list_presets
from .params import ParamReport, count_parameters
from .tasks import TASKS, TaskSpec, get_task, list_tasks, register_task
from .training.checkpoint import load_tuned
from .tuning import apply_tuning, build_tuned_model, list_tuning_methods, register_tuning_method

__version__ = "0.1.0"

__all__ = sorted([
    "ConfigBase", "DeGMixConfig", "ModelConfig", "MultiTaskModel", "ParamReport", "TASKS", "TaskSpec",
    "count_parameters", "create_backbone", "create_model", "get_preset", "get_task", "list_backbones",
    "list_presets", "list_tasks", "register_backbone", "register_task", "apply_tuning", "build_tuned_model",
    "list_tuning_methods", "load_tuned", "register_tuning_method",
])
