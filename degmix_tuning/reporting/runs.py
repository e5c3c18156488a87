"""Read finished runs (`<run>/metrics.jsonl`, `<run>/config.json`, optional `<run>/summary.json`) for the budget plot.

Toolkit metrics are fractions; the papers print percentages. `PAPER_METRICS` maps each task to the toolkit metric
that matches the papers' column (saliency: the MTLoRA "mIoU" = `per_image_miou`, not `maxf`) and its scale.
A metric a run could not compute (null with a "missing" reason; NaN in runs written before that) is missing here
too: left out of `paper_metrics`, with its reason in `missing_metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import read_json
from ..metrics.base import missing_reason

PAPER_METRICS: dict[str, tuple[str, float]] = {
    "semseg": ("miou", 100.0),
    "human_parts": ("miou", 100.0),
    "sal": ("per_image_miou", 100.0),
    "normals": ("mean_angle", 1.0),
    "depth": ("rmse", 1.0),
    "edge": ("odsf", 100.0),
}


@dataclass
class RunRecord:
    path: Path
    method: str
    backbone: str
    dataset: str
    tasks: tuple[str, ...]
    step: int
    metrics: dict[str, dict]  # the last evaluation, as written
    trainable: int | None  # trainable parameters (summary.json), None if unknown
    config: dict = field(default_factory=dict)

    def paper_metrics(self) -> dict[str, float]:
        """{task: value in the papers' units} for the tasks whose paper metric was computed."""
        out = {}
        for task, values in self.metrics.items():
            key, scale = PAPER_METRICS.get(task, (None, 1.0))
            if key is not None and isinstance(values, dict) and key in values and not missing_reason(values, key):
                out[task] = float(values[key]) * scale
        return out

    def missing_metrics(self) -> dict[str, str]:
        """{task: why its paper metric is missing} for the tasks whose last evaluation could not compute it."""
        out = {}
        for task, values in self.metrics.items():
            key = PAPER_METRICS.get(task, (None, 1.0))[0]
            if key is not None and isinstance(values, dict) and key in values:
                reason = missing_reason(values, key)
                if reason:
                    out[task] = f"{task} {key} is missing ({reason})"
        return out


def find_runs(root: str | Path) -> list[Path]:
    """Run folders under `root` (itself, its children, grandchildren) that hold a metrics.jsonl."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder {str(root)!r} does not exist; pass the output_dir of your runs")
    if (root / "metrics.jsonl").is_file():
        return [root]
    found = sorted({p.parent for pattern in ("*/metrics.jsonl", "*/*/metrics.jsonl") for p in root.glob(pattern)})
    return found


def _last_eval(path: Path) -> tuple[int, dict]:
    last = None
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {i} is not valid JSON ({exc}); fix or remove the line") from exc
        if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
            raise ValueError(f"{path}: line {i} has no 'metrics' mapping; expected {{'step': N, 'metrics': {{...}}}}")
        if last is None or int(rec.get("step", 0)) >= last[0]:
            last = (int(rec.get("step", 0)), rec["metrics"])
    if last is None:
        raise ValueError(f"{path} holds no evaluation records")
    return last


def load_run(run_dir: str | Path) -> RunRecord:
    """The last evaluation of a run plus what it trained (method, backbone, dataset, tasks, trainable count)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"run {str(run_dir)!r} has metrics.jsonl but no config.json; cannot tell its method")
    cfg = read_json(cfg_path, "run config")
    step, metrics = _last_eval(run_dir / "metrics.jsonl")
    model = cfg.get("model", {})
    trainable = None
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            trainable = int(json.loads(summary.read_text())["params"]["trainable"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{summary} has no params.trainable count ({exc})") from exc
    return RunRecord(run_dir, str(cfg.get("tuning", "?")), str(model.get("backbone", "?")),
                     str(model.get("dataset", "?")), tuple(model.get("tasks", ())), step, metrics, trainable, cfg)


def count_trainable_from_config(cfg: dict) -> int:
    """Rebuild the run's model (random init) from its config.json and count trainable parameters."""
    from ..models import ModelConfig
    from .budget import measure_method

    model_cfg = ModelConfig.from_dict({**cfg["model"], "pretrained": False, "checkpoint_path": None})  # counts only
    return measure_method(model_cfg, cfg.get("tuning", "degmix"), **cfg.get("tuning_kwargs", {})).mtlora_rule


__all__ = ["PAPER_METRICS", "RunRecord", "count_trainable_from_config", "find_runs", "load_run"]
