"""Trainable-parameter budget of a tuning method, split the way the PEFT-MTL papers need (peft_mtl_baselines.md §1).

(a) adapter: parameters the method added inside the backbone (LoRA factors, adapters, spectral warps)
(b) unfrozen base: original backbone parameters the method trains (biases, norms, PatchMerging, everything)
(c) head: the decoders and task heads
MTLoRA's rule prints a+b+c, DiTASK's prints a+b, DeGMix-Tuning's c. The adapter file size is the exact size of the
file a run writes (`save_adapter`: the trainable state in fp32 plus the run config), serialised in memory.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from torch import nn

from ..data.info import get_dataset_info
from ..models import DeGMixConfig, ModelConfig, create_model
from ..models.presets import PRESETS
from ..tuning import apply_tuning, list_tuning_methods


@dataclass
class MethodBudget:
    method: str
    backbone: str
    dataset: str
    tasks: tuple[str, ...]
    adapter: int  # (a)
    unfrozen_base: int  # (b)
    head: int  # (c)
    total_params: int  # every parameter of the tuned model
    adapter_bytes: int  # the adapter file a run writes: trainable state (fp32) + config metadata
    tuning: dict = field(default_factory=dict)  # the resolved TuningConfig

    @property
    def mtlora_rule(self) -> int:
        return self.adapter + self.unfrozen_base + self.head

    @property
    def ditask_rule(self) -> int:
        return self.adapter + self.unfrozen_base

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tasks"] = list(self.tasks)
        d.update(mtlora_rule=self.mtlora_rule, ditask_rule=self.ditask_rule)
        return d


def split_trainable(model: nn.Module, base_ids: set[int]) -> tuple[int, int, int]:
    """(a, b, c) for a tuned model, given the ids of the backbone's parameters before tuning."""
    a = b = 0
    for p in model.backbone.parameters():
        if p.requires_grad:
            if id(p) in base_ids:
                b += p.numel()
            else:
                a += p.numel()
    c = sum(p.numel() for p in model.head.parameters() if p.requires_grad)
    owned = {id(p) for p in model.backbone.parameters()} | {id(p) for p in model.head.parameters()}
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owned]
    if stray:
        raise RuntimeError(f"trainable parameters outside backbone and head: {stray[:5]}")
    return a, b, c


def tuned_model(model_cfg: ModelConfig, method, base: nn.Module | None = None, **kwargs) -> tuple[nn.Module, set[int]]:
    """A tuned copy of `base` (or a freshly built, random-init model) and the ids of its original backbone parameters.

    Passing the same untuned `base` for several methods saves the (slow) model builds.
    """
    model = copy.deepcopy(base) if base is not None else create_model(model_cfg, freeze_backbone=True)
    base_ids = {id(p) for p in model.backbone.parameters()}
    apply_tuning(model, method, **kwargs)
    return model, base_ids


def measure_method(model_cfg: ModelConfig, method, base: nn.Module | None = None, **kwargs) -> MethodBudget:
    """Build `model_cfg` (random init, or a copy of the untuned `base` built from it), apply the method and count."""
    model, base_ids = tuned_model(model_cfg, method, base, **kwargs)
    a, b, c = split_trainable(model, base_ids)
    return MethodBudget(
        method=model.tuning_config.method, backbone=model_cfg.backbone, dataset=model_cfg.dataset,
        tasks=tuple(model_cfg.tasks), adapter=a, unfrozen_base=b, head=c,
        total_params=sum(p.numel() for p in model.parameters()), adapter_bytes=_adapter_file_bytes(model, model_cfg, kwargs),
        tuning=model.tuning_config.to_dict(),
    )


def _adapter_file_bytes(model: nn.Module, model_cfg: ModelConfig, kwargs: dict) -> int:
    """The size of the adapter file a run of this method writes: trainable state + its config metadata (the run
    config with default data/train settings: a few hundred bytes more or less for other paths and values)."""
    from ..data.config import DataConfig
    from ..training.checkpoint import adapter_file_bytes
    from ..training.config import ExperimentConfig

    cfg = ExperimentConfig(model=model_cfg, data=DataConfig(dataset=model_cfg.dataset),
                           tuning=model.tuning_config.method, tuning_kwargs=dict(kwargs))
    return adapter_file_bytes(model, cfg.to_dict())


def budget_model_config(backbone: str, dataset: str, tasks: tuple[str, ...] | None = None,
                        head_dim: int = 128) -> ModelConfig:
    """The DeGMix-Tuning setup for a backbone/dataset: the registered preset when there is one, d=128 otherwise
    (with the official ViT head for vit_b / vit_l)."""
    info = get_dataset_info(dataset)
    tasks = tuple(tasks) if tasks else info.default_tasks
    preset = next((name for name, cfg in PRESETS.items()
                   if name.startswith("degmix_tuning_") and cfg.backbone == backbone and cfg.dataset == dataset), None)
    if preset is not None:
        cfg = PRESETS.get(preset)
        return ModelConfig.from_dict({**cfg.to_dict(), "tasks": list(tasks), "freeze_backbone": True})
    from ..models.presets import VIT_HEAD

    vit = VIT_HEAD if backbone in ("vit_b", "vit_l") else {}  # the official ViT head on the official ViT slot
    return ModelConfig(backbone=backbone, dataset=dataset, tasks=tasks, head=DeGMixConfig(dim=head_dim, **vit))


def param_budget(backbone: str = "swin_t", dataset: str = "pascal", tasks: tuple[str, ...] | None = None,
                 methods: list[str] | None = None) -> list[MethodBudget]:
    """One `MethodBudget` per registered method (default configs) on the given setup."""
    model_cfg = budget_model_config(backbone, dataset, tasks)
    base = create_model(model_cfg, freeze_backbone=True)
    return [measure_method(model_cfg, m, base) for m in (methods or list_tuning_methods())]


__all__ = ["MethodBudget", "budget_model_config", "measure_method", "param_budget", "split_trainable", "tuned_model"]
