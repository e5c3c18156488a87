"""The run folder's life outside the step loop: created at a start (refusing one that holds checkpoints), removed
again when that start fails before its first step, and its logs trimmed to the resumed step so every step is logged
once (rows go to a new file renamed over the old one, never a truncation: run_files.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import list_checkpoints
from .config import ExperimentConfig
from .run_files import remove_tree, rewrite_lines, whole_lines


def prepare_run_dir(cfg: ExperimentConfig, resume: bool) -> Path:
    """The run folder, created if needed; a fresh start over a folder with checkpoints is refused (never overwritten)."""
    run_dir = Path(cfg.train.output_dir)
    if not resume and list_checkpoints(run_dir / "checkpoints"):
        raise FileExistsError(
            f"run folder {str(run_dir)!r} already holds checkpoints; resume it with --resume latest, or choose "
            "another --output-dir (nothing was overwritten)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def first_missing(run_dir: Path) -> Path | None:
    """The top-most folder of `run_dir` that does not exist yet (what `mkdir(parents=True)` will create)."""
    run_dir = run_dir.absolute()
    if run_dir.exists():
        return None
    top = run_dir
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def remove_created(top: Path, run_dir: Path) -> None:
    """A start failed before its first step: remove the run folder it created (and the parents it created, when
    they hold nothing else), so a typo or a bad config leaves no empty run folder behind."""
    run_dir = run_dir.absolute()
    if not run_dir.is_dir():
        return
    remove_tree(run_dir)
    folder = run_dir.parent
    while folder != top.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def drop_logged_after(run_dir: Path, step: int) -> None:
    """Steps after the resumed checkpoint (every step, for a start over a run stopped before its first checkpoint:
    step -1) run again: drop their old rows so every step is logged once. The kept rows go to a new file renamed over
    the old one (never a truncation in place); an unchanged log is not rewritten; a last line cut short by a kill is
    dropped."""
    def jsonl_step(line: str) -> int | None:
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            return None

    def csv_step(line: str) -> int | None:  # a row cut short by a kill (no value) counts as no row
        fields = line.strip().split(",")
        try:
            float(fields[2])
        except (IndexError, ValueError):
            return None
        return int(fields[0]) if len(fields) == 3 and fields[0].isdigit() else None

    logs = ((run_dir / "metrics.jsonl", jsonl_step, False), (run_dir / "log.csv", csv_step, True))
    for path, step_of, header in logs:
        if not path.exists():
            continue
        raw = path.read_text(errors="replace")
        lines = whole_lines(path)
        body = lines[1:] if header and lines and lines[0].startswith("step,") else lines
        kept = [x for x in body if step_of(x) is not None and step_of(x) <= step]
        if kept == body and raw.endswith("\n"):
            continue  # nothing to drop
        if kept:
            rewrite_lines(path, (lines[:1] if header and body is not lines else []) + kept)
        else:
            path.unlink()  # the next row starts a new file (with its header)


def logged_metrics(run_dir: Path, step: int) -> tuple[dict | None, dict | None]:
    """(the step-0 evaluation, the last evaluation at or before `step`) from metrics.jsonl: what a resumed run
    reports as its initial and final metrics until it evaluates again."""
    path, first, last = run_dir / "metrics.jsonl", None, None
    if not path.exists():
        return None, None
    for line in whole_lines(path):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("step") == 0:
            first = row.get("metrics")
        if isinstance(row.get("step"), int) and row["step"] <= step:
            last = row.get("metrics")
    return first, last
