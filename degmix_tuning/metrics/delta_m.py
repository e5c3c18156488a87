"""Delta-m: the average relative gain of a multi-task model over single-task (or other reference) results.

delta_m = (1/T) * sum_t s_t * (M_t - S_t) / S_t * 100, in percent, with s_t = +1 when higher is better and -1 when
lower is better (depth rmse, normals mean angle). By default each task uses its `TaskSpec.main_metric`
(miou, rmse, mean_angle, maxf, odsf) and `TaskSpec.higher_is_better`; `metrics=` picks another metric per task
(e.g. {"sal": "per_image_miou"} for MTI-Net's convention), whose direction then comes from `LOWER_IS_BETTER`.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..tasks import get_task

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
    return float(table[task][metric])


def task_deltas(results: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
                tasks: Iterable[str] | None = None, metrics: Mapping[str, str] | None = None) -> dict[str, float]:
    """Signed relative change per task in percent: s_t * (M_t - S_t) / S_t * 100."""
    tasks = list(reference) if tasks is None else list(tasks)
    if not tasks:
        raise ValueError("delta_m: no tasks to compare (empty reference and no tasks= given)")
    metrics = dict(metrics or {})
    deltas = {}
    for task in tasks:
        metric = metrics.get(task, get_task(task).main_metric)
        value = _lookup(results, "results", task, metric)
        baseline = _lookup(reference, "reference", task, metric)
        if baseline == 0:
            raise ValueError(f"delta_m: reference {task}.{metric} is 0, so the relative change is undefined")
        deltas[task] = metric_sign(task, metric) * (value - baseline) / baseline * 100.0
    return deltas


def delta_m(results: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
            tasks: Iterable[str] | None = None, metrics: Mapping[str, str] | None = None) -> float:
    """Average of `task_deltas` over `tasks` (default: every task in `reference`), in percent."""
    deltas = task_deltas(results, reference, tasks, metrics)
    return sum(deltas.values()) / len(deltas)


__all__ = ["LOWER_IS_BETTER", "delta_m", "metric_sign", "task_deltas"]
