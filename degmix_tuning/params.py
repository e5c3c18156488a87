"""Parameter counting by module ownership: backbone / encoder / decoder / heads (total and trainable)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass
class ParamCount:
    total: int = 0
    trainable: int = 0


@dataclass
class ParamReport:
    total: int
    trainable: int
    groups: dict[str, ParamCount] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "trainable": self.trainable,
            "groups": {k: {"total": v.total, "trainable": v.trainable} for k, v in self.groups.items()},
        }

    def __str__(self) -> str:
        pct = 100.0 * self.trainable / max(self.total, 1)
        parts = ", ".join(f"{k} {v.trainable:,d}/{v.total:,d}" for k, v in self.groups.items())
        return f"trainable params: {self.trainable:,d} || all params: {self.total:,d} || trainable%: {pct:.4f} ({parts})"


def _count(params) -> ParamCount:
    c = ParamCount()
    for p in params:
        c.total += p.numel()
        if p.requires_grad:
            c.trainable += p.numel()
    return c


def count_parameters(model: nn.Module) -> ParamReport:
    """Total and trainable parameters, split into backbone / encoder / decoder / heads (/ other).

    Groups come from `model.backbone` and `model.head.parameter_groups()`; parameters shared by two groups are
    counted once (in the first). A plain module without that structure is reported as one "other" group.
    """
    seen: set[int] = set()
    groups: dict[str, ParamCount] = {}

    def take(name: str, modules: list[nn.Module]) -> None:
        params = []
        for m in modules:
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        c = _count(params)
        prev = groups.get(name, ParamCount())
        groups[name] = ParamCount(prev.total + c.total, prev.trainable + c.trainable)

    if hasattr(model, "backbone"):
        take("backbone", [model.backbone])
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "parameter_groups"):
        for name, modules in head.parameter_groups().items():
            take(name, modules)
    take("other", [model])
    if groups.get("other") and groups["other"].total == 0:
        del groups["other"]
    total = sum(g.total for g in groups.values())
    trainable = sum(g.trainable for g in groups.values())
    return ParamReport(total, trainable, groups)
