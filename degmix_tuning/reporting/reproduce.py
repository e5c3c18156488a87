"""Reproduce the printed parameter counts of published rows by building the modules, and flag each row.

The backbone side (adapters a, unfrozen base b) comes from our tuning methods applied to a random-init backbone.
The decoder side of the MTLoRA/DiTASK tables (c) is MTLoRA's decoder built as our `LightHead` on MTLoRA's taps:
stage outputs *after* patch merging (Swin-T 192/384/768/768, our slot taps before it: 96/192/384/768) with
MTLoRA's output counts (saliency: one logit, ours has two). On Swin-T/PASCAL that is 1,946,624 parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..data.info import get_dataset_info
from ..models import create_model
from ..models.light_head import LightHead
from ..tuning import resolve_tuning_config
from .budget import MethodBudget, budget_model_config, measure_method
from .published import PUBLISHED, PublishedRow, recomputed_delta_m

MTLORA_OUTPUT_OVERRIDES = {"sal": 1}  # MTLoRA/DiTASK train saliency with one logit (balanced BCE)


def mtlora_taps(channels: list[int]) -> list[int]:
    """Channels of MTLoRA's Swin taps: each stage output after the next patch merging (x2), the last as is."""
    return [2 * c for c in channels[:-1]] + [channels[-1]]


@dataclass
class Reproduction:
    count: int | None
    detail: str


class Reproducer:
    """Computes counts for recipes, building each (dataset, tasks, method, kwargs) setup once."""

    def __init__(self, backbone: str, seed_budgets: list[MethodBudget] = ()):
        self.backbone = backbone
        self._cache: dict[str, MethodBudget] = {}
        for b in seed_budgets:
            self._cache[self._key(b.dataset, b.tasks, b.method, b.tuning)] = b
        self._channels: list[int] | None = None
        self._bases: dict[str, nn.Module] = {}

    @staticmethod
    def _key(dataset, tasks, method, kwargs) -> str:
        kw = {k: v for k, v in kwargs.items() if k != "method"}
        return json.dumps([dataset, list(tasks), method, kw], sort_keys=True, default=str)

    def budget(self, dataset: str, tasks: tuple[str, ...], method: str, **kwargs) -> MethodBudget:
        key = self._key(dataset, tasks, method, resolve_tuning_config(method, **kwargs).to_dict())
        if key not in self._cache:
            cfg = budget_model_config(self.backbone, dataset, tasks)
            setup = cfg.to_json()
            if setup not in self._bases:  # one untuned model per setup, copied for every method
                self._bases[setup] = create_model(cfg, freeze_backbone=True)
            self._cache[key] = measure_method(cfg, method, self._bases[setup], **kwargs)
        return self._cache[key]

    def channels(self) -> list[int]:
        if self._channels is None:
            from ..backbones import create_backbone

            self._channels = list(create_backbone(self.backbone).channels)
        return self._channels

    def mtlora_decoders(self, dataset: str, tasks: tuple[str, ...]) -> int:
        ours = get_dataset_info(dataset).task_channels(tasks)
        outputs = {t: MTLORA_OUTPUT_OVERRIDES.get(t, n) for t, n in ours.items()}
        head = LightHead(mtlora_taps(self.channels()), outputs)
        return sum(p.numel() for p in head.parameters())

    # ---- recipes: each returns the count under the row's rule
    def ab(self, row: PublishedRow, method: str, **kw) -> Reproduction:
        b = self.budget(row.dataset, row.tasks, method, **kw)
        return Reproduction(b.ditask_rule, f"{method}: a={b.adapter:,} + b={b.unfrozen_base:,}")

    def abc(self, row: PublishedRow, method: str, **kw) -> Reproduction:
        b = self.budget(row.dataset, row.tasks, method, **kw)
        c = self.mtlora_decoders(row.dataset, row.tasks)
        return Reproduction(b.ditask_rule + c, f"{method}: a={b.adapter:,} + b={b.unfrozen_base:,} + "
                                               f"MTLoRA decoders c={c:,}")

    def head_only(self, row: PublishedRow, method: str) -> Reproduction:
        b = self.budget(row.dataset, row.tasks, method)
        return Reproduction(b.head, f"{method}: head c={b.head:,} (backbone frozen)")

    def single_task(self, row: PublishedRow) -> Reproduction:
        full = self.budget(row.dataset, row.tasks, "full")
        c = self.mtlora_decoders(row.dataset, row.tasks)
        n = len(row.tasks)
        return Reproduction(n * full.unfrozen_base + c, f"{n} x backbone {full.unfrozen_base:,} + decoders {c:,}")


RECIPES: dict[str, Callable[[Reproducer, PublishedRow], Reproduction]] = {
    "single_task": lambda r, row: r.single_task(row),
    "decoders_only": lambda r, row: Reproduction(r.mtlora_decoders(row.dataset, row.tasks), "MTLoRA decoders + "
                                                 "downsamplers (light head on MTLoRA's taps)"),
    "full": lambda r, row: r.abc(row, "full"),
    "bitfit": lambda r, row: r.abc(row, "bitfit"),
    "adapter": lambda r, row: r.abc(row, "adapter"),
    # MTLoRA #8: the LoRA baseline is "most likely" one LoRA per attention layer; its rank is not published
    "lora": lambda r, row: r.abc(row, "lora", r=4, exclude=("fc1", "fc2")),
    "mtlora_r16": lambda r, row: r.abc(row, "mtlora", rank=16),
    "mtlora_r32": lambda r, row: r.abc(row, "mtlora", rank=32),
    "mtlora_r64": lambda r, row: r.abc(row, "mtlora", rank=64),
    "mtlora_r64_ditask_rule": lambda r, row: r.ab(row, "mtlora", rank=64),
    "ditask_ditask_rule": lambda r, row: r.ab(row, "ditask"),
    "ditask_mtlora_rule": lambda r, row: r.abc(row, "ditask"),
    "degmix": lambda r, row: r.head_only(row, "degmix"),
}


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def flag(row: PublishedRow, rep: Reproduction | None, reason_not_computed: str = "") -> str:
    """'reproduced' / 'differs: ...' / 'not reproducible: ...' / 'not computed: ...' for one row."""
    if row.recipe is None:
        return f"not reproducible: {row.note or 'no recipe'}"
    if rep is None or rep.count is None:
        return f"not computed: {reason_not_computed}"
    if row.params_m is None:
        return f"not reproducible: no numeric count printed ({row.note})"
    ours = round(rep.count / 1e6, _decimals(row.params))
    if abs(ours - row.params_m) < 1e-9:
        return "reproduced"
    return f"differs: ours {rep.count / 1e6:.3f}M vs printed {row.params}M" + (f"; {row.note}" if row.note else "")


@dataclass
class PublishedComparison:
    row: PublishedRow
    reproduced: int | None
    detail: str
    flag: str
    delta_m_recomputed: float | None

    def as_dict(self) -> dict:
        r = self.row
        return {
            "method": r.method, "backbone": r.backbone, "dataset": r.dataset, "tasks": list(r.tasks),
            "published_params_m": r.params, "rule": r.rule, "metrics": r.metrics, "delta_m": r.delta_m,
            "delta_m_recomputed": None if self.delta_m_recomputed is None else round(self.delta_m_recomputed, 2),
            "source": r.source, "provenance": r.provenance, "reproduced_count": self.reproduced,
            "reproduction": self.detail, "flag": self.flag,
        }


def compare_published(backbone: str, seed_budgets: list[MethodBudget] = (),
                      rows: tuple[PublishedRow, ...] = PUBLISHED) -> list[PublishedComparison]:
    """Every published row, with our count for the rows of `backbone` that have a recipe."""
    rep = Reproducer(backbone, seed_budgets)
    out = []
    for row in rows:
        result, reason = None, ""
        if row.recipe is not None:
            if row.backbone == backbone:
                result = RECIPES[row.recipe](rep, row)
            else:
                reason = f"run the report with --backbone {row.backbone}"
        out.append(PublishedComparison(row, None if result is None else result.count,
                                       "" if result is None else result.detail, flag(row, result, reason),
                                       recomputed_delta_m(row)))
    return out


__all__ = ["MTLORA_OUTPUT_OVERRIDES", "PublishedComparison", "RECIPES", "Reproducer", "Reproduction",
           "compare_published", "flag", "mtlora_taps"]
