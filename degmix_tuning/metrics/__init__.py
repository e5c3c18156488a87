"""Evaluation metrics with additive, process-summable state (see base.Meter) and the Delta-m summary."""

from .base import Meter
from .boundary import BoundaryMeter, boundary_thresholds
from .delta_m import delta_m, metric_sign, task_deltas
from .depth import DepthMeter
from .evaluator import METERS, MultiTaskEvaluator, build_meter
from .normals import NormalsMeter, angular_error_degrees
from .saliency import SaliencyMeter
from .segmentation import SegmentationMeter
from .thinning import thin

__all__ = [
    "BoundaryMeter", "DepthMeter", "METERS", "Meter", "MultiTaskEvaluator", "NormalsMeter", "SaliencyMeter",
    "SegmentationMeter", "angular_error_degrees", "boundary_thresholds", "build_meter", "delta_m", "metric_sign",
    "task_deltas", "thin",
]
