"""Experiment logging through Accelerate's tracker API: built-in tensorboard plus a CSV tracker and metrics.jsonl."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from accelerate.tracking import GeneralTracker, on_main_process

from .run_files import append_text, atomic_write_text

CSV_HEADER = "step,key,value\r\n"  # csv.writer's default line ending, as the rows


class CSVTracker(GeneralTracker):
    """Appends every logged scalar as a row (step, key, value) to `<run>/log.csv` (main process only).

    Building it touches no distributed state and no file, so it can be made before `Accelerator(...)` exists
    (accelerate's `@on_main_process` on `__init__` would initialise the process state too early and every process
    of a multi-process launch would end up alone). The file appears with its first row.
    """

    name = "csv"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / "log.csv"

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path.parent / "tracker_config.json", json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs):
        rows = [[step, k, v] for k, v in values.items() if isinstance(v, (int, float))]
        if not rows:
            return
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        append_text(self.path, buf.getvalue(), header=CSV_HEADER)  # one write, fsynced: never a partial row set


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
    """One record as one line, appended in one write and fsynced (training/run_files.py)."""
    append_text(path, json.dumps(record, default=float) + "\n")
