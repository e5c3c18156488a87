"""Which evaluation a run reports: the last one (the official DeMTG code tests the last-iteration model) or the best
one by Δm over the protocol's headline metrics (the MTLoRA/DiTASK practice of reporting the best validation epoch).

Δm ranks evaluations against one fixed reference: the run's first evaluation (its metrics at the first eval step),
so the ranking uses the same per-task weights 1/reference for every candidate. The best evaluation's adapter is
kept as `adapter_best.safetensors`; `summary.json` names the rule, the step and its metrics.
"""

from __future__ import annotations

from ..metrics.delta_m import delta_m
from .protocols import headline_metric

BEST_ADAPTER_NAME = "adapter_best.safetensors"


class BestEvaluation:
    """Keeps the best evaluation seen so far (by Δm against the first one)."""

    def __init__(self, protocol: str):
        self.protocol = protocol
        self.reference: dict | None = None
        self.step: int | None = None
        self.metrics: dict | None = None
        self.score: float | None = None

    def offer(self, step: int, metrics: dict) -> bool:
        """True when `metrics` is the new best (ties keep the earlier evaluation)."""
        if self.reference is None:
            self.reference = metrics
        keys = {t: headline_metric(self.protocol, t) for t in metrics}
        score = delta_m(metrics, self.reference, metrics=keys)
        if self.score is not None and score <= self.score:
            return False
        self.step, self.metrics, self.score = step, metrics, score
        return True

    def state_dict(self) -> dict:  # checkpointed: a resumed run remembers the best evaluation before it
        return {"reference": self.reference, "step": self.step, "metrics": self.metrics, "score": self.score}

    def load_state_dict(self, state: dict) -> None:
        self.reference, self.step, self.metrics, self.score = (state[k] for k in ("reference", "step", "metrics",
                                                                                  "score"))

    def summary(self) -> dict:
        return {"rule": "best delta_m vs the first evaluation", "step": self.step, "delta_m": self.score,
                "metrics": self.metrics}
