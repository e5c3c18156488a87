"""The tuning-method contract: a `TuningConfig` dataclass + `apply(model, cfg)`, which edits `model.backbone` in place.

Every method lives in its own module and ends with one `register_tuning_method(name, config_cls, apply_fn)` call.
`apply_tuning` is the only entry point: it freezes the whole backbone, puts the configured head in place
(`head="keep" | "degmix" | "light"`), then calls the method, which switches on exactly the parameters it trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..backbones import freeze_module
from ..config import ConfigBase
from ..models.light_head import LightHead, LightHeadConfig
from ..registry import Registry

HEAD_CHOICES = ("keep", "degmix", "light")


@dataclass
class TuningConfig(ConfigBase):
    """Fields shared by every method. `method` names the registered method (it discriminates saved configs)."""

    method: str = ""
    head: str = field(default="keep", metadata={"help": "keep the model's head, rebuild the DeGMix head, or swap in "
                                                        "the light per-task head (models/light_head.py)"})
    light_head: LightHeadConfig = field(default_factory=LightHeadConfig,
                                        metadata={"help": "widths of the light head when head='light'"})

    def __post_init__(self):
        if self.head not in HEAD_CHOICES:
            raise ValueError(f"{type(self).__name__}.head must be one of {HEAD_CHOICES}, got {self.head!r}")


ApplyFn = Callable[[nn.Module, TuningConfig], None]


@dataclass(frozen=True)
class TuningMethod:
    name: str
    config_cls: type[TuningConfig]
    apply_fn: ApplyFn


TUNING_METHODS: Registry[TuningMethod] = Registry("tuning method")


def register_tuning_method(name: str, config_cls: type[TuningConfig], apply_fn: ApplyFn) -> TuningMethod:
    """Register a method; the config class must be a `TuningConfig` dataclass whose `method` default is `name`."""
    is_config = isinstance(config_cls, type) and issubclass(config_cls, TuningConfig)
    if not (is_config and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"tuning method {name!r}: config_cls must be a @dataclass subclass of TuningConfig")
    default = config_cls().method
    if default != name:
        raise ValueError(
            f"tuning method {name!r}: {config_cls.__name__}.method defaults to {default!r}; make it {name!r}"
        )
    if name.endswith("_"):
        raise ValueError(f"tuning method names must not end with '_', got {name!r}")
    return TUNING_METHODS.register(name, TuningMethod(name, config_cls, apply_fn))


def list_tuning_methods() -> list[str]:
    return TUNING_METHODS.names()


def get_tuning_config_cls(name: str) -> type[TuningConfig]:
    return TUNING_METHODS.get(name).config_cls


def tuning_config_from_dict(data: dict[str, Any]) -> TuningConfig:
    """Rebuild a saved config; the `method` key picks the class."""
    if "method" not in data:
        raise KeyError(f"tuning config has no 'method' key; known methods: {', '.join(list_tuning_methods())}")
    return get_tuning_config_cls(data["method"]).from_dict(dict(data))


def resolve_tuning_config(method: str | TuningConfig, **kwargs) -> TuningConfig:
    """A method name plus field values (nested dicts allowed), or a config (kwargs override its fields)."""
    if isinstance(method, TuningConfig):
        if not kwargs:
            return method
        return tuning_config_from_dict({**method.to_dict(), **kwargs})
    if not isinstance(method, str):
        raise TypeError(f"tuning must be a method name or a TuningConfig, got {type(method).__name__}")
    if "method" in kwargs and kwargs["method"] != method:
        raise ValueError(f"tuning method {method!r} given together with method={kwargs['method']!r}")
    return tuning_config_from_dict({**kwargs, "method": method})


def model_task_channels(model: nn.Module) -> dict[str, int]:
    """{task: outputs} of the model, from its `ModelConfig` (set by `create_model`)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "task_channels"):
        raise ValueError("cannot rebuild the head: the model has no `.config` (ModelConfig); use create_model")
    return cfg.task_channels()


def _place_head(model: nn.Module, cfg: TuningConfig) -> None:
    from ..models.degmix import DeGMixHead

    if cfg.head == "light":
        model.head = LightHead(model.backbone.channels, model_task_channels(model), cfg.light_head)
    elif cfg.head == "degmix" and not isinstance(model.head, DeGMixHead):
        model.head = DeGMixHead(model.backbone.channels, model_task_channels(model), model.config.head)


def apply_tuning(model: nn.Module, method: str | TuningConfig, **kwargs) -> TuningConfig:
    """Turn a freshly built `MultiTaskModel` into the given method's trainable configuration; returns the config.

    Afterwards `model.tuning_config` holds the resolved config. A model can be tuned once: build a new one to
    try another method (`build_tuned_model`).
    """
    cfg = resolve_tuning_config(method, **kwargs)
    entry = TUNING_METHODS.get(cfg.method)
    previous = getattr(model, "tuning_config", None)
    if previous is not None:
        raise ValueError(
            f"this model was already tuned with {previous.method!r}; build a fresh model to apply {cfg.method!r}"
        )
    if not hasattr(model, "backbone") or not hasattr(model, "head"):
        raise TypeError("apply_tuning expects a MultiTaskModel (with .backbone and .head)")
    freeze_module(model.backbone)
    _place_head(model, cfg)
    entry.apply_fn(model, cfg)
    from .probe import probe_tuned_model

    probe_tuned_model(model, cfg)  # an unsupported backbone/method pair is refused here, in one line
    model.tuning_config = cfg
    return cfg


def build_tuned_model(model_cfg, tuning: str | TuningConfig, **kwargs) -> nn.Module:
    """`create_model(model_cfg)` (ModelConfig or preset name) + `apply_tuning(model, tuning, **kwargs)`."""
    from ..models import create_model

    model = create_model(model_cfg)
    apply_tuning(model, tuning, **kwargs)
    return model


__all__ = [
    "HEAD_CHOICES", "TUNING_METHODS", "TuningConfig", "TuningMethod", "apply_tuning", "build_tuned_model",
    "get_tuning_config_cls", "list_tuning_methods", "model_task_channels", "register_tuning_method",
    "resolve_tuning_config", "tuning_config_from_dict",
]
