"""Experiment logging through Accelerate's tracker API: built-in tensorboard plus a CSV tracker and metrics.jsonl."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from accelerate.tracking import GeneralTracker, on_main_process


class CSVTracker(GeneralTracker):
    """Appends every logged scalar as a row (step, key, value) to `<run>/log.csv`."""

    name = "csv"
    requires_logging_directory = True

    @on_main_process
    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / "log.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(["step", "key", "value"])

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict):
        (self.path.parent / "tracker_config.json").write_text(json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs):
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    w.writerow([step, k, v])


def flatten_metrics(metrics: dict, prefix: str = "val") -> dict[str, float]:
    """{task: {metric: v}} -> {"val/task/metric": v} for scalar values only."""
    flat = {}
    for task, values in metrics.items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    flat[f"{prefix}/{task}/{k}"] = float(v)
        elif isinstance(values, (int, float)):
            flat[f"{prefix}/{task}"] = float(values)
    return flat


def append_jsonl(path: str | Path, record: dict) -> None:
    path = Path(path)
    with path.open("a") as f:
        f.write(json.dumps(record, default=float) + "\n")
