"""Delta-m: the average relative gain of a multi-task model over single-task (or other reference) results.

delta_m = (1/T) * sum_t s_t * (M_t - S_t) / S_t * 100, in percent, with s_t = +1 when higher is better and -1 when
lower is better (depth rmse, normals mean angle). By default each task uses its `TaskSpec.main_metric`
(miou, rmse, mean_angle, maxf, odsf) and `TaskSpec.higher_is_better`; `metrics=` picks another metric per task
(e.g. {"sal": "per_image_miou"} for MTI-Net's convention), whose direction then comes from `LOWER_IS_BETTER`.

A missing metric (None with a reason, see metrics/base.py; or NaN) is never averaged into NaN: Δm refuses it with
one line naming the task and the reason, or with `skip_missing=True` leaves the task out (`missing_tasks` says which
and why) and averages the others.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..tasks import get_task
from .base import missing_reason

# Metric names (as produced by the meters) where a smaller value is better; all others are higher-is-better.
LOWER_IS_BETTER = frozenset({"rmse", "log_rmse", "abs_rel", "mean_angle", "median_angle", "rmse_angle"})


def metric_sign(task: str, metric: str) -> int:
    """+1 if a larger value of `metric` is better for `task`, else -1."""
    spec = get_task(task)
    if metric == spec.main_metric:
        return 1 if spec.higher_is_better else -1
    return -1 if metric in LOWER_IS_BETTER else 1


def _lookup(table: Mapping[str, Mapping[str, float]], which: str, task: str, metric: str) -> float:
    if task not in table:
        raise KeyError(f"delta_m: {which} has no results for task {task!r} (it has {sorted(table)})")
    if metric not in table[task]:
        raise KeyError(f"delta_m: {which}[{task!r}] has no metric {metric!r} (it has {sorted(table[task])})")
    return table[task][metric]


def missing_tasks(results: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
                  tasks: Iterable[str] | None = None, metrics: Mapping[str, str] | None = None) -> dict[str, str]:
    """{task: why it cannot enter Δm} for the tasks whose metric is missing in `results` or in `reference`, or whose
    reference is 0 (no relative change from 0)."""
    tasks = list(reference) if tasks is None else list(tasks)
    metrics = dict(metrics or {})
    out = {}
    for task in tasks:
        metric = metrics.get(task, get_task(task).main_metric)
        for which, table in (("results", results), ("reference", reference)):
            _lookup(table, which, task, metric)
            reason = missing_reason(table[task], metric)
            if reason:
                out[task] = f"{which} {task} {metric} is missing ({reason})"
                break
        if task not in out and float(reference[task][metric]) == 0:
            out[task] = f"reference {task}.{metric} is 0, so the relative change is undefined"
    return out


def task_deltas(results: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
                tasks: Iterable[str] | None = None, metrics: Mapping[str, str] | None = None,
                skip_missing: bool = False) -> dict[str, float]:
    """Signed relative change per task in percent: s_t * (M_t - S_t) / S_t * 100. A missing metric raises, or with
    `skip_missing` leaves its task out."""
    tasks = list(reference) if tasks is None else list(tasks)
    if not tasks:
        raise ValueError("delta_m: no tasks to compare (empty reference and no tasks= given)")
    metrics = dict(metrics or {})
    missing = missing_tasks(results, reference, tasks, metrics)
    if missing and not skip_missing:
        task, why = next(iter(missing.items()))
        raise ValueError(f"delta_m: {why}; Δm is undefined with it (leave {task} out of the tasks)")
    if len(missing) == len(tasks):
        raise ValueError(f"delta_m: no task can be compared ({'; '.join(missing.values())})")
    deltas = {}
    for task in tasks:
        if task in missing:
            continue
        metric = metrics.get(task, get_task(task).main_metric)
        value = float(_lookup(results, "results", task, metric))
        baseline = float(_lookup(reference, "reference", task, metric))
        deltas[task] = metric_sign(task, metric) * (value - baseline) / baseline * 100.0
    return deltas


def delta_m(results: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
            tasks: Iterable[str] | None = None, metrics: Mapping[str, str] | None = None,
            skip_missing: bool = False) -> float:
    """Average of `task_deltas` over `tasks` (default: every task in `reference`), in percent; `skip_missing`: over
    the tasks whose metric is not missing (see `missing_tasks`)."""
    deltas = task_deltas(results, reference, tasks, metrics, skip_missing)
    return sum(deltas.values()) / len(deltas)


__all__ = ["LOWER_IS_BETTER", "delta_m", "metric_sign", "missing_tasks", "task_deltas"]
