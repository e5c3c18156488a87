"""`MultiTaskEvaluator`: one meter per task, fed with model outputs and a batch, synced and computed together.

`METERS` maps a task name to a factory `(task, dataset_info, **kwargs) -> Meter`, so supporting a new task is one
`METERS.register("name", factory)` call. Labels are read from `batch[task]` (the tasks.py convention).

`compute()` never returns NaN: a metric a meter cannot compute (no valid pixel for it) is None and the task's
results say why under "missing", with the number of evaluated images ("no valid depth pixel in 12 evaluated
images"); a non-finite value (NaN predictions) becomes None the same way. `summary_line` prints them.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

from ..data.info import DatasetInfo
from ..registry import Registry
from ..tasks import get_task
from .base import MISSING_KEY, Meter, format_metric, missing_reason
from .boundary import BoundaryMeter
from .depth import DepthMeter
from .normals import NormalsMeter
from .saliency import SaliencyMeter
from .segmentation import SegmentationMeter

MeterFactory = Callable[..., Meter]
METERS: Registry[MeterFactory] = Registry("meter")


def _segmentation(task: str, info: DatasetInfo, **kwargs) -> Meter:
    return SegmentationMeter(info.num_outputs(task), name=task, **kwargs)


METERS.register("semseg", _segmentation)
METERS.register("human_parts", _segmentation)
METERS.register("depth", lambda task, info, **kw: DepthMeter(name=task, **kw))
METERS.register("normals", lambda task, info, **kw: NormalsMeter(name=task, **kw))
METERS.register("sal", lambda task, info, **kw: SaliencyMeter(name=task, **kw))


def _boundary(task: str, info: DatasetInfo, max_dist: float | None = None, workers: int = 1, **kwargs) -> Meter:
    """SEISM-style odsF with the dataset's matching tolerance (0.011 NYUD, 0.0075 PASCAL) unless overridden;
    `workers` processes count the images (the metric costs ~0.2-1 s of CPU per 425x560 image)."""
    return BoundaryMeter(info.edge_tolerance if max_dist is None else max_dist, name=task, workers=workers, **kwargs)


METERS.register("edge", _boundary)


def build_meter(task: str, dataset_info: DatasetInfo, **kwargs) -> Meter:
    """The registered meter for `task`, configured from the dataset (class count, edge tolerance)."""
    return METERS.get(task)(task, dataset_info, **kwargs)


class MultiTaskEvaluator:
    """Accumulates every task's metric over a whole evaluation set.

    `meter_kwargs` passes per-task options, e.g. {"edge": {"thresholds": "hed"}, "sal": {"per_image_miou": False}}.
    `workers` > 1 lets meters that support it (the boundary meter) spread their work over that many processes;
    results are identical for any value. Call `close()` (or `compute()`) to release the processes.
    Distributed use: `evaluator.reduce_(lambda t: accelerator.reduce(t, "sum"))` before `compute()`.
    """

    def __init__(self, tasks: Iterable[str], dataset_info: DatasetInfo,
                 meter_kwargs: Mapping[str, Mapping] | None = None, workers: int = 1):
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("MultiTaskEvaluator needs at least one task")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"MultiTaskEvaluator: workers must be a positive number of processes, got {workers!r}")
        meter_kwargs = dict(meter_kwargs or {})
        unknown = set(meter_kwargs) - set(self.tasks)
        if unknown:
            raise KeyError(f"meter_kwargs given for tasks {sorted(unknown)} that are not evaluated ({self.tasks})")
        self.dataset_info = dataset_info
        self.workers = workers
        self.meters: dict[str, Meter] = {}
        for task in self.tasks:
            dataset_info.num_outputs(task)  # raises a clear KeyError if the dataset has no labels for it
            kwargs = dict(meter_kwargs.get(task, {}))
            if "workers" in inspect.signature(METERS.get(task)).parameters:
                kwargs.setdefault("workers", workers)
            self.meters[task] = build_meter(task, dataset_info, **kwargs)
        self.images = 0  # images seen (summed over processes by `reduce_`), for the reason of a missing metric

    def update(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> None:
        """outputs: {task: [B, C, H, W] raw model outputs}; batch: {task: label, ...} at the same resolution."""
        for task, meter in self.meters.items():
            if task not in outputs:
                raise KeyError(f"evaluator: model outputs have no {task!r} (outputs: {sorted(outputs)})")
            if task not in batch:
                raise KeyError(f"evaluator: batch has no label {task!r} (batch keys: {sorted(batch)})")
            meter.update(outputs[task], batch[task])
        self.images += int(outputs[self.tasks[0]].shape[0])

    def compute(self) -> dict[str, dict]:
        """{task: results}; missing metrics are None with the reason (module docstring), never NaN."""
        return {task: self._finish(task, meter.compute()) for task, meter in self.meters.items()}

    def _finish(self, task: str, results: dict) -> dict:
        reasons = [f"{results[MISSING_KEY]} in {self.images} evaluated image{'s' if self.images != 1 else ''}"] \
            if results.get(MISSING_KEY) else []
        for key, value in results.items():
            if isinstance(value, float) and not math.isfinite(value):
                results[key] = None
                reasons.append(f"{key} is {value}: the {task} predictions are not finite")
        if reasons:
            results[MISSING_KEY] = "; ".join(reasons)
        return results

    def close(self) -> None:
        """Shut down worker processes of meters that have them (pending work is added to the state first)."""
        for meter in self.meters.values():
            close = getattr(meter, "close", None)
            if callable(close):
                close()

    def main_metrics(self, results: Mapping[str, Mapping] | None = None) -> dict[str, float | None]:
        """{task: value of TaskSpec.main_metric} from `results` (computed now if not given); None when missing."""
        results = self.compute() if results is None else results
        out = {}
        for task in self.tasks:
            key = get_task(task).main_metric
            out[task] = None if missing_reason(results[task], key) else float(results[task][key])
        return out

    def reset(self) -> None:
        for meter in self.meters.values():
            meter.reset()
        self.images = 0

    def state(self) -> dict[str, Tensor]:
        """Flat {"task.name": tensor} view of every meter's additive state, then the image count ("images"), in the
        order `reduce_` visits them."""
        state = {f"{task}.{key}": value for task, meter in self.meters.items()
                 for key, value in meter.state().items()}
        state["images"] = torch.tensor(self.images, dtype=torch.int64)
        return state

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        for task, meter in self.meters.items():
            prefix = f"{task}."
            meter.load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        if "images" in state:
            self.images = int(state["images"])
        extra = [k for k in state if k != "images" and k.split(".", 1)[0] not in self.meters]
        if extra:
            raise KeyError(f"evaluator.load_state: keys for tasks that are not evaluated: {extra}")

    def to(self, device) -> "MultiTaskEvaluator":
        """Move every meter's state to `device` (do this before `reduce_` when a process may have seen no batch)."""
        for meter in self.meters.values():
            meter.to(device)
        return self

    def reduce_(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Apply `fn` (e.g. a cross-process sum) to every state tensor of every meter, then to the image count."""
        for meter in self.meters.values():
            meter.reduce_(fn)
        device = next(iter(self.meters.values()))._device
        self.images = int(fn(torch.tensor(self.images, dtype=torch.int64, device=device)))


MAIN_KEYS = ("miou", "rmse", "mean_angle", "maxf", "odsf")  # what a training run prints after each evaluation


def summary_line(metrics: Mapping[str, Mapping], keys: Iterable[str] = MAIN_KEYS) -> str:
    """"semseg miou=0.4123, depth rmse: missing (no valid depth pixel in 12 evaluated images)": each task's `keys`
    that it reports, numbers to 4 decimals, missing ones with their reason."""
    keys = tuple(keys)
    parts = []
    for task, values in metrics.items():
        for key in values:
            if key in keys:
                shown = format_metric(values, key)
                parts.append(f"{task} {key}: {shown}" if shown.startswith("missing") else f"{task} {key}={shown}")
    return ", ".join(parts)


__all__ = ["MAIN_KEYS", "METERS", "MultiTaskEvaluator", "build_meter", "summary_line"]
