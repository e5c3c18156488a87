"""Evaluation metrics with additive, process-summable state (see base.Meter) and the Delta-m summary."""

from .base import MISSING_KEY, Meter, format_metric, missing_reason, missing_result
from .boundary import BoundaryMeter, boundary_thresholds
from .delta_m import delta_m, metric_sign, missing_tasks, task_deltas
from .depth import DepthMeter
from .evaluator import MAIN_KEYS, METERS, MultiTaskEvaluator, build_meter, summary_line
from .normals import NormalsMeter, angular_error_degrees
from .saliency import SaliencyMeter
from .segmentation import SegmentationMeter
from .thinning import thin

__all__ = [
    "BoundaryMeter", "DepthMeter", "MAIN_KEYS", "METERS", "MISSING_KEY", "Meter", "MultiTaskEvaluator",
    "NormalsMeter", "SaliencyMeter", "SegmentationMeter", "angular_error_degrees", "boundary_thresholds",
    "build_meter", "delta_m", "format_metric", "metric_sign", "missing_reason", "missing_result", "missing_tasks",
    "summary_line", "task_deltas", "thin",
]
