"""`degmix-tuning compare`: train several tuning methods on one setup and tabulate cost against accuracy.

Every method trains on the same data, seed, schedule and backbone weights (one config, only `tuning` differs), one
after another in this process, or each as its own `accelerate launch` job (`--launch`). The comparison folder holds
`compare.json` (the shared config: a folder is never resumed with another), one run folder per method, and
`comparison.md/.csv/.json/.png`, built from the run folders (reporting/comparison.py). Running the same command again
resumes: finished methods are skipped, an interrupted one continues from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_METHODS = "degmix,decoder_only,bitfit,lora,mtlora,ditask,full"
MANIFEST = "compare.json"
# fields that do not change what a run computes: they may differ when a comparison is resumed
NOT_SHARED = ("tuning", "tuning_kwargs", "train.output_dir", "data.num_workers", "train.log_every",
              "protocol_overrides")  # the overrides follow from the method (e.g. full's drop path) and the flags
_PLAIN_STEP_LINE = re.compile(r"\[degmix-tuning\] step (\d+)/(\d+)")

EXAMPLE = """\
examples:
  degmix-tuning compare --synthetic --backbone swin_synthetic --pretrained --max-steps 200
  degmix-tuning compare --data-root /data/NYUDv2 --pretrained --methods degmix,lora,full --reference single-task
  degmix-tuning compare --synthetic --launch --launch-args "--multi_gpu --num_processes 2"
"""


@dataclass
class PlannedRun:
    label: str  # method name, or single_task/<task>
    cfg: object  # ExperimentConfig
    run_dir: Path


# ------------------------------------------------------------------------------------------------------ the plan
def parse_methods(text: str) -> list[str]:
    """Comma-separated registered methods; an unknown name raises the registry's KeyError with its suggestions."""
    from ..tuning import TUNING_METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ValueError("--methods is empty; name at least one tuning method, e.g. --methods degmix,full")
    for m in methods:
        TUNING_METHODS.get(m)
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        raise ValueError(f"--methods names {', '.join(twice)} twice; name each method once")
    return methods


def shared_config(cfg) -> dict:
    """What every run of the comparison shares (JSON-normalised): the config minus method, folder, workers, logging."""
    flat = type(cfg).flat_fields(json.loads(json.dumps(cfg.to_dict())))
    return {k: v for k, v in flat.items() if k not in NOT_SHARED}


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in keys if old.get(k) != new.get(k)]


def plan_runs(base, out: Path, methods: list[str], reference: str) -> list[PlannedRun]:
    """One run per method (one config, only the method differs); with reference single-task one `full` run per task."""
    from ..reporting.comparison import SINGLE_TASK, SINGLE_TASK_DIR

    def run(label: str, method: str, run_dir: Path, extra: list[str] = ()) -> PlannedRun:
        cfg = dataclasses.replace(base, tuning=method, tuning_kwargs={})
        return PlannedRun(label, cfg.override([f"train.output_dir={run_dir}", *extra]), run_dir)

    plan = [run(m, m, out / m) for m in methods]
    if reference == SINGLE_TASK:
        plan += [run(f"{SINGLE_TASK_DIR}/{t}", "full", out / SINGLE_TASK_DIR / t, [f"model.tasks={t}"])
                 for t in base.model.tasks]
    return plan


def check_manifest(out: Path, shared: dict, methods: list[str], reference: str, command: str) -> bool:
    """Write compare.json, or check that the folder's one has the same shared config. Returns True when resuming."""
    path = out / MANIFEST
    resuming = path.is_file()
    if resuming:
        from ..config import read_json

        old = read_json(path, "comparison manifest")
        diff = _differences(old.get("shared", {}), shared)
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise ValueError(
                f"comparison folder {str(out)!r} was made with another shared config ({'; '.join(diff[:3])}{more}); "
                "rerun with the flags it was made with to resume it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"shared": shared, "methods": methods, "reference": reference, "command": command},
                               indent=2) + "\n")
    return resuming


def run_state(run: PlannedRun) -> tuple[str, int]:
    """("done", step) when summary.json is at max_steps, ("resume", step) with a checkpoint, else ("new", 0)."""
    from ..training.checkpoint import list_checkpoints

    max_steps = run.cfg.train.max_steps
    summary = run.run_dir / "summary.json"
    if summary.is_file():
        step = json.loads(summary.read_text()).get("step")
        if step == max_steps:
            _check_same_run(run)
            return "done", step
    found = list_checkpoints(run.run_dir / "checkpoints")
    if found:
        return "resume", int(found[-1].name[len("step_"):])
    return "new", 0


def _check_same_run(run: PlannedRun) -> None:
    """A finished folder must hold this plan's run (same shared config and method), or the table would mix setups."""
    from ..config import read_json

    have = read_json(run.run_dir / "config.json", "run config")
    want = type(run.cfg).flat_fields(json.loads(json.dumps(run.cfg.to_dict())))
    have = type(run.cfg).flat_fields(have)
    diff = _differences({k: have.get(k) for k in want if k not in NOT_SHARED or k == "tuning"},
                        {k: v for k, v in want.items() if k not in NOT_SHARED or k == "tuning"})
    if diff:
        raise ValueError(f"run folder {str(run.run_dir)!r} holds another run ({'; '.join(diff[:3])}); remove it or "
                         "choose another --out")


def _clear_unfinished(run_dir: Path) -> None:
    """A run stopped before its first checkpoint starts again: its logged rows would otherwise be doubled."""
    from ..training.run_lock import LOCK_NAME, RunFolderLock

    if not run_dir.is_dir():
        return
    with RunFolderLock(run_dir):  # a live run in this folder stops us here, with its pid
        for item in run_dir.iterdir():
            if item.name == LOCK_NAME:
                continue
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()


# ------------------------------------------------------------------------------------------------------ running
def recipe_path(dataset: str) -> Path:
    path = Path(__file__).resolve().parents[2] / "recipes" / f"tune_{dataset}.py"
    if not path.is_file():
        raise FileNotFoundError(f"--launch runs recipes/tune_{dataset}.py of a source checkout, which is not at "
                                f"{str(path)!r}; run from the repository, or drop --launch to train in this process")
    return path


def launch_command(run: PlannedRun, resume: bool, launch_args: list[str], recipe_args: list[str],
                   show_progress: bool = True) -> list[str]:
    """`accelerate launch [launch_args] recipes/tune_<dataset>.py --config <run>/config.json ...` for one run."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch_args, str(recipe_path(run.cfg.data.dataset)),
           "--config", str(run.run_dir / "config.json"), "--output-dir", str(run.run_dir), *recipe_args]
    if resume:
        cmd += ["--resume", "latest"]
    if not show_progress:
        cmd.append("--no-progress")
    return cmd


def _launch(run: PlannedRun, resume: bool, args: argparse.Namespace, console) -> None:
    """Run one method as an `accelerate launch` job; its output goes to <run>/launch.log, its steps drive a bar."""
    from ..training.engine import TrainingDiverged

    run.run_dir.mkdir(parents=True, exist_ok=True)
    run.cfg.save(run.run_dir / "config.json")
    cmd = launch_command(run, resume, shlex.split(args.launch_args or ""), shlex.split(args.recipe_args or ""),
                         not args.no_progress)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path = run.run_dir / "launch.log"
    last_error = ""
    bar = _LaunchBar(console, run.label, run.cfg.train.max_steps, enabled=not args.no_progress)
    with open(log_path, "a") as log, bar:
        log.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            for line in proc.stdout:
                log.write(line)
                if line.startswith("error:") or "Error" in line.split(":", 1)[0]:
                    last_error = line.strip()
                m = _PLAIN_STEP_LINE.search(line)
                if m:
                    bar.update(int(m.group(1)))
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # the launcher got the same Ctrl-C: let it stop its processes first
            raise
    if rc == 0:
        return
    where = f"; full output in {log_path}"
    if rc == 3:
        raise TrainingDiverged(f"{run.label}: {last_error or 'training diverged'}{where}")
    if rc in (130, -2):
        raise KeyboardInterrupt
    raise ValueError(f"{run.label}: the launched run exited with code {rc}: {last_error or 'no error line'}{where}")


class _LaunchBar:
    """A rich bar fed by the launched run's plain step lines (the run's own bar cannot cross the pipe)."""

    def __init__(self, console, label: str, total: int, enabled: bool):
        self.console, self.label, self.total = console, label, total
        self.enabled = enabled and console.is_terminal
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self

    def update(self, step: int) -> None:
        if self._progress:
            self._progress.update(self._task, completed=step)
        elif self.console is not None:
            self.console.print(f"  {self.label}: step {step}/{self.total}", highlight=False)

    def __exit__(self, *exc):
        if self._progress:
            self._progress.__exit__(*exc)
        return False


def _headline(run: PlannedRun) -> str:
    """Main numbers of a finished run, from its folder."""
    summary = json.loads((run.run_dir / "summary.json").read_text())
    headline = summary.get("headline_metrics") or {}  # the reported evaluation, in the protocol's keys
    parts = [f"{t} {key} {value:.4f}" for t in run.cfg.model.tasks for key, value in headline.get(t, {}).items()
             if value is not None]
    if summary.get("step_time_median_s") is not None:
        parts.append(f"{summary['step_time_median_s']:.3f} s/step")
    if summary.get("step_memory_mb") is not None:
        parts.append(f"step memory {summary['step_memory_mb']:.0f} MiB")
    parts.append(f"{summary['params']['trainable']:,} trainable")
    return ", ".join(parts)


def _command_line(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command as typed, rebuilt from the parsed flags that differ from their defaults."""
    words = ["degmix-tuning", "compare"]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its actions here
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if (value == action.default and action.dest != "methods") or value is None:  # the methods always show
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _setup(cfg) -> dict:
    """What the comparison's runs share, for the table's heading and the figure's title."""
    m, d, t = cfg.model, cfg.data, cfg.train
    if m.checkpoint_path:
        weights = f"from {m.checkpoint_path}"
    elif m.pretrained:
        weights = "pretrained"
    else:
        weights = f"random init, seed {t.seed}"
    data = "synthetic" if d.synthetic else (f"Arrow copy {d.arrow_path}" if d.arrow_path else f"{d.root}")
    size = d.synthetic_size if d.synthetic else d.crop_size
    return {"dataset": m.dataset, "data": data, "backbone": m.backbone, "weights": weights, "tasks": list(m.tasks),
            "max_steps": t.max_steps, "batch_size": t.batch_size, "lr": t.lr, "seed": t.seed,
            "protocol": cfg.protocol, "optimizer": t.optimizer, "schedule": t.schedule,
            "image_size": list(size) if size else None, "head_dim": m.head.dim}


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..reporting.comparison import SINGLE_TASK, build_comparison
    from ..training.recipe import config_from_args, require_data

    console = Console(highlight=False, soft_wrap=True)  # status lines stay one line each, also in a log file
    methods = parse_methods(args.methods)
    reference = args.reference
    if reference != SINGLE_TASK:
        from ..tuning import TUNING_METHODS

        if reference not in TUNING_METHODS:
            raise ValueError(f"--reference {reference!r}: use full, {SINGLE_TASK} or a tuning method "
                             f"({', '.join(TUNING_METHODS.names())})")
        if reference not in methods:
            methods.append(reference)
            console.print(f"added {reference} to the methods: it is the Δm reference (--reference)")
    base = config_from_args(args, args.dataset)
    dataset = base.model.dataset
    require_data(base, dataset)
    from ..training.backbone_weights import require_real_weights
    from ..training.engine import resolve_run_length

    for method in methods:  # before any run starts: no method may freeze random weights by accident
        require_real_weights(dataclasses.replace(base, tuning=method))
    base = resolve_run_length(base)  # a protocol counted in epochs: every run's step count, known up front
    if args.metric != "delta_m" and args.metric not in base.model.tasks:
        raise ValueError(f"--metric {args.metric!r}: use delta_m or one of the tasks {list(base.model.tasks)}")
    out = Path(args.out or f"runs/compare_{'synthetic_' if base.data.synthetic else ''}{dataset}")
    command = _command_line(args._parser, args)  # noqa: SLF001
    resuming = check_manifest(out, shared_config(base), methods, reference, command)
    plan = plan_runs(base, out, methods, reference)

    setup = _setup(base)
    console.print(f"[bold]compare[/] {out}{' (resuming)' if resuming else ''}: {base.model.backbone} "
                  f"({setup['weights']}) on {setup['data']} {dataset} ({', '.join(base.model.tasks)}), "
                  f"{base.train.max_steps} steps, batch {base.train.batch_size}, lr {base.train.lr:g}, seed "
                  f"{base.train.seed}; Δm vs {reference}")
    states = {run.label: run_state(run) for run in plan}
    width = max(len(r.label) for r in plan)
    for run in plan:
        state, step = states[run.label]
        text = {"done": f"done (step {step})", "resume": f"resume from step {step}", "new": "pending"}[state]
        console.print(f"  {run.label:<{width}}  {text}")

    for i, run in enumerate(plan, start=1):
        state, step = states[run.label]
        tag = f"[{i}/{len(plan)}] {run.label}"
        if state == "done":
            console.print(f"{tag}: done, skipped ({_headline(run)})")
            continue
        if state == "new":
            _clear_unfinished(run.run_dir)
        console.print(f"{tag}: {'resumed from step ' + str(step) if state == 'resume' else 'running'}"
                      f"{' (accelerate launch)' if args.launch or args.launch_args else ''}")
        t0 = time.perf_counter()
        if args.launch or args.launch_args:
            _launch(run, state == "resume", args, console)
        else:
            from ..training import engine

            try:
                engine.train(run.cfg, resume_from="latest" if state == "resume" else None,
                             show_progress=not args.no_progress)
            except engine.TrainingDiverged as exc:  # say which method; the finished ones stay finished
                raise engine.TrainingDiverged(f"{run.label}: {exc}") from exc
        console.print(f"{tag}: done in {time.perf_counter() - t0:.0f}s ({_headline(run)})")

    comparison = build_comparison(out, methods, reference, setup, command)
    paths = comparison.write(args.metric)
    from rich.measure import Measurement

    table = comparison.rich_table()
    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    Console(width=max(console.width, needed)).print(table)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def register(sub) -> None:
    from ..training.recipe import add_config_flags

    p = sub.add_parser(
        "compare", help="train several tuning methods on one setup; table + figure of cost vs accuracy",
        description=__doc__.split("\n\n")[1], epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated tuning methods (default {DEFAULT_METHODS})")
    p.add_argument("--dataset", default="nyud", choices=["nyud", "pascal", "cityscapes"], help="default nyud")
    p.add_argument("--reference", default="full", metavar="full|single-task|METHOD",
                   help="Δm reference: the full fine-tuning run (default), single-task (one full fine-tuning run per "
                        "task, trained too: the papers' convention), or another compared method")
    p.add_argument("--out", default=None,
                   help="comparison folder (default runs/compare_<dataset>, runs/compare_synthetic_<dataset>)")
    p.add_argument("--metric", default="delta_m", help="y axis of comparison.png: delta_m (default) or a task name")
    p.add_argument("--launch", action="store_true",
                   help="run each method as its own `accelerate launch recipes/tune_<dataset>.py` job")
    p.add_argument("--launch-args", default=None, metavar="'ARGS'",
                   help="launcher flags, quoted, e.g. '--multi_gpu --num_processes 2' (implies --launch)")
    p.add_argument("--recipe-args", default=None, metavar="'ARGS'",
                   help="extra recipe flags for launched runs, quoted, e.g. '--import my_backbones.py'")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (status lines only)")
    add_config_flags(p, None, skip=("tuning", "output_dir"))
    p.set_defaults(func=_run, _parser=p)
