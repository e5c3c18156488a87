"""Which evaluation a run reports: the last one (the official DeMTG code tests the last-iteration model) or the best
one by Δm over the protocol's headline metrics (the MTLoRA/DiTASK practice of reporting the best validation epoch).

Δm ranks evaluations against one fixed reference: the published single-task row of the backbone and dataset when
there is one for the run's tasks (e.g. Swin-T PASCAL 67.21 / 61.93 / 62.35 / 17.97, the reference the MTLoRA/DiTASK
tables and a commented-out line of DiTASK's main.py use), else the run's first evaluation. Either way every
candidate is weighed with the same per-task weights 1/reference. The best evaluation's adapter is kept as
`adapter_best.safetensors`; `summary.json` names the rule, the reference, the step and its metrics.
"""

from __future__ import annotations

from ..metrics.delta_m import delta_m, missing_tasks
from .protocols import headline_metric

BEST_ADAPTER_NAME = "adapter_best.safetensors"


def published_reference(backbone: str, dataset: str, tasks) -> tuple[dict | None, str]:
    """The published single-task metrics for these tasks in our keys and units ({task: {key: value}}: the papers'
    columns, `reporting.runs.PAPER_METRICS`), and their source."""
    from ..reporting.published import reference_row
    from ..reporting.runs import PAPER_METRICS

    row = reference_row(backbone, dataset, tuple(tasks))
    if row is None:
        return None, "the first evaluation"
    ref = {}
    for task in tasks:
        key, scale = PAPER_METRICS[task]
        ref[task] = {key: row.metrics[task] / scale}
    return ref, f"{row.method} ({row.source})"


class BestEvaluation:
    """Keeps the best evaluation seen so far (by Δm against a fixed reference, see the module docstring)."""

    def __init__(self, protocol: str, reference: dict | None = None, source: str = "the first evaluation"):
        self.protocol = protocol
        self.reference: dict | None = reference
        self.source = source
        self.step: int | None = None
        self.metrics: dict | None = None
        self.score: float | None = None
        self.unranked: list[int] = []  # steps whose evaluation had no task to compare with the reference

    def offer(self, step: int, metrics: dict) -> bool:
        """True when `metrics` is the new best (ties keep the earlier evaluation). Ranked by the reference's keys:
        a published row's columns, or the protocol's headline keys of the first evaluation."""
        if self.reference is None:
            self.reference = {t: {k: metrics[t][k]} for t, k in ((t, headline_metric(self.protocol, t))
                                                                  for t in metrics)}
        keys = {t: next(iter(ref)) for t, ref in self.reference.items()}
        if len(missing_tasks(metrics, self.reference, metrics=keys)) == len(keys):
            self.unranked.append(step)  # no task comparable (all missing, or reference 0): never the best
            return False
        score = delta_m(metrics, self.reference, metrics=keys, skip_missing=True)  # a missing metric: left out
        if self.score is not None and score <= self.score:
            return False
        self.step, self.metrics, self.score = step, metrics, score
        return True

    def state_dict(self) -> dict:  # checkpointed: a resumed run remembers the best evaluation before it
        return {"reference": self.reference, "step": self.step, "metrics": self.metrics, "score": self.score,
                "unranked": self.unranked}

    def load_state_dict(self, state: dict) -> None:
        self.reference, self.step, self.metrics, self.score = (state[k] for k in ("reference", "step", "metrics",
                                                                                  "score"))
        self.unranked = list(state.get("unranked", []))  # absent in checkpoints written before it existed

    def summary(self) -> dict:
        out = {"rule": f"best delta_m vs {self.source}", "step": self.step, "delta_m": self.score,
               "metrics": self.metrics}
        if self.unranked:
            out["unranked_steps"] = list(self.unranked)
        return out
