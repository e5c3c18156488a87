"""The comparison of tuning methods trained on one setup: table (Markdown, CSV, JSON) and figure, from run folders.

Why read everything back from the run folders (never from the in-memory results of the training that just ran): the
table then equals what the folders hold by construction, a comparison rebuilt later (or after a resume in another
process) is the same table, and any run folder can be checked against it.

Per run folder (`<comparison>/<method>/`, and `<comparison>/single_task/<task>/`):
  trainable a+b+c   summary.json params.trainable: everything that trains (MTLoRA's rule)
  trainable a+b     adapters + unfrozen backbone, no decoders (DiTASK's rule): rebuilt from the run's config.json
                    (random init: counts do not depend on weights) and checked against summary.json's a+b+c
  adapter MB        summary.json adapter_bytes / 1e6 (the safetensors file of the trained parameters)
  step time/memory  summary.json step_time_median_s / step_memory_mb (training/step_stats.py; MiB = 2**20 bytes)
  task metrics      the last evaluation in metrics.jsonl, each task's main metric (tasks.py: semseg/human_parts miou,
                    depth rmse, normals mean_angle, sal maxf, edge odsf), as fractions / metres / degrees
  Δm                reporting.published.delta_m of those metrics against the reference: the `full` run by default
                    (its row is 0), or the single-task runs (one `full` run per task, the papers' convention)

A metric a run could not compute (null with a reason in metrics.jsonl, e.g. no valid depth pixel in the val split)
shows as "missing"; the Δm of a row that misses one (every row, when the reference misses one) is left empty and
`delta_m_note` gives the reason, never a NaN.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..metrics.base import missing_reason
from ..tasks import get_task
from .published import PUBLISHED, delta_m
from .runs import load_run

SINGLE_TASK = "single-task"  # the --reference value that trains one full fine-tuning run per task
SINGLE_TASK_DIR = "single_task"


@dataclass
class RunRow:
    """One run folder's numbers, exactly as the folder holds them."""

    label: str  # the method, or "single_task/<task>"
    method: str  # the tuning method of the run
    run_dir: Path
    step: int
    tasks: tuple[str, ...]
    trainable: int  # a+b+c
    trainable_ab: int  # a+b
    adapter_bytes: int
    step_time_s: float | None
    step_memory_mb: float | None
    step_memory_kind: str | None
    metrics: dict[str, float | None]  # {task: main metric of the last evaluation}, None when missing
    paper_metrics: dict[str, float]  # {task: the PEFT papers' metric, in their units} (for the figure)
    delta_m: float | None = None
    missing: dict[str, str] = field(default_factory=dict)  # {task: why its metric is missing}

    @property
    def adapter_mb(self) -> float:
        return self.adapter_bytes / 1e6

    def as_dict(self) -> dict:
        return {"method": self.label, "tuning": self.method, "run_dir": str(self.run_dir), "step": self.step,
                "tasks": list(self.tasks), "trainable_mtlora_rule": self.trainable,
                "trainable_ditask_rule": self.trainable_ab, "adapter_mb": self.adapter_mb,
                "adapter_bytes": self.adapter_bytes, "step_time_median_s": self.step_time_s,
                "step_memory_mb": self.step_memory_mb, "step_memory_kind": self.step_memory_kind,
                "metrics": dict(self.metrics), "delta_m": self.delta_m, "missing": dict(self.missing)}


def main_metric(task: str, protocol: str = "degmix") -> str:
    """The result key a task is tabulated with: its protocol's headline key (e.g. saliency per_image_miou under
    mtlora), else the task's main metric."""
    from ..training.protocols import headline_metric

    return headline_metric(protocol, task)


def _ditask_rule(config: dict) -> tuple[int, int]:
    """(a+b, a+b+c) of the run's model, rebuilt at random init from its config.json."""
    from ..models import ModelConfig
    from .budget import measure_method

    model_cfg = ModelConfig.from_dict({**config["model"], "pretrained": False, "checkpoint_path": None})
    budget = measure_method(model_cfg, config.get("tuning", "degmix"), **config.get("tuning_kwargs", {}))
    return budget.ditask_rule, budget.mtlora_rule


def read_run_row(run_dir: str | Path, label: str | None = None) -> RunRow:
    """The table row of a finished run folder (summary.json + metrics.jsonl + config.json)."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"run {str(run_dir)!r} has no summary.json: it has not finished; run the comparison "
                                "again to finish it")
    summary = json.loads(summary_path.read_text())
    record = load_run(run_dir)
    if record.step != summary["step"]:
        raise ValueError(f"run {str(run_dir)!r}: its last evaluation is at step {record.step} but summary.json says "
                         f"step {summary['step']}; run the comparison again to finish it")
    ab, abc = _ditask_rule(record.config)
    if abc != summary["params"]["trainable"]:
        raise ValueError(f"run {str(run_dir)!r}: summary.json counts {summary['params']['trainable']:,} trainable "
                         f"parameters, its config rebuilds to {abc:,}; the folder holds another run")
    protocol = record.config.get("protocol", "degmix")
    selected = summary.get("selected") or {"rule": "last"}
    reported = selected.get("metrics") if selected["rule"] != "last" else record.metrics  # train.select=best
    which = "the last evaluation" if selected["rule"] == "last" else f"the selected evaluation ({selected['rule']})"
    metrics, missing = {}, {}
    for task in record.tasks:
        key = main_metric(task, protocol)
        if key not in (reported or {}).get(task, {}):
            raise ValueError(f"run {str(run_dir)!r}: {which} has no {task} {key}")
        reason = missing_reason(reported[task], key)
        metrics[task] = None if reason else float(reported[task][key])
        if reason:
            missing[task] = f"{label or run_dir.name}: {task} {key} is missing ({reason})"
    return RunRow(
        label=label or run_dir.name, method=record.method, run_dir=run_dir, step=record.step, tasks=record.tasks,
        trainable=int(summary["params"]["trainable"]), trainable_ab=ab, adapter_bytes=int(summary["adapter_bytes"]),
        step_time_s=summary.get("step_time_median_s"), step_memory_mb=summary.get("step_memory_mb"),
        step_memory_kind=summary.get("step_memory_kind"), metrics=metrics,
        paper_metrics=record.paper_metrics(), missing=missing,
    )


@dataclass
class Comparison:
    """Rows of one comparison folder and the reference their Δm is against."""

    out_dir: Path
    setup: dict  # dataset, backbone, tasks, steps, ... (what every run shares)
    reference: str  # a method name, or SINGLE_TASK
    rows: list[RunRow]  # one per method, in the requested order
    single_task: list[RunRow] = field(default_factory=list)  # with reference single-task: one per task
    command: str = ""
    delta_m_note: str = ""  # why Δm is missing, when it is
    delta_m_undefined: bool = False  # no row has a Δm: the reference misses a metric or has a 0

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.setup["tasks"])

    @property
    def protocol(self) -> str:
        return self.setup.get("protocol", "degmix")

    @property
    def reference_metrics(self) -> dict[str, float]:
        if self.reference == SINGLE_TASK:
            return {r.tasks[0]: r.metrics[r.tasks[0]] for r in self.single_task}
        return dict(next(r for r in self.rows if r.label == self.reference).metrics)

    @property
    def single_task_total(self) -> RunRow | None:
        """The single-task runs as one system, like the papers' "single-task (N models)" row: parameters and adapter
        files summed, each task's metric from its own run, Δm 0; step time and memory are per model, so left empty."""
        if not self.single_task:
            return None
        st = self.single_task
        metrics = {r.tasks[0]: r.metrics[r.tasks[0]] for r in st}
        paper = {t: v for r in st for t, v in r.paper_metrics.items()}
        return RunRow(f"single-task total ({len(st)} models)", "full", self.out_dir / SINGLE_TASK_DIR, st[0].step,
                      tuple(metrics), sum(r.trainable for r in st), sum(r.trainable_ab for r in st),
                      sum(r.adapter_bytes for r in st), None, None, None, metrics, paper,
                      None if self.delta_m_undefined else 0.0, {t: m for r in st for t, m in r.missing.items()})

    def all_rows(self) -> list[RunRow]:
        total = self.single_task_total
        return self.rows + self.single_task + ([total] if total else [])

    def reference_label(self) -> str:
        return "single-task full fine-tuning (one run per task)" if self.reference == SINGLE_TASK else self.reference

    # ---------------------------------------------------------------------------------------------- tables
    def columns(self) -> list[str]:
        return (["method", "trainable a+b+c (MTLoRA rule)", "trainable a+b (DiTASK rule)", "adapter (MB)",
                 "step time (s, median)", "step memory (MiB)"]
                + [f"{t} {main_metric(t, self.protocol)}" for t in self.tasks] + [f"Δm vs {self.reference} (%)"])

    def _cells(self, r: RunRow) -> list[str]:
        def num(v, fmt):
            return "—" if v is None else format(v, fmt)

        return ([r.label, f"{r.trainable:,}", f"{r.trainable_ab:,}", f"{r.adapter_mb:.2f}", num(r.step_time_s, ".3f"),
                 num(r.step_memory_mb, ".1f")]
                + ["missing" if t in r.missing else num(r.metrics.get(t), ".4f") for t in self.tasks]
                + [num(r.delta_m, "+.2f")])

    def table_rows(self) -> list[list[str]]:
        return [self._cells(r) for r in self.all_rows()]

    def to_markdown(self) -> str:
        s = self.setup
        cols = self.columns()
        lines = [
            f"# Tuning methods compared: {s['backbone']} on {s['data']} {s['dataset']} ({', '.join(self.tasks)})", "",
            f"Every method trained on the same data, seed ({s['seed']}), schedule ({s['max_steps']} steps, batch "
            f"{s['batch_size']}, lr {s['lr']:g}, {s.get('optimizer', 'sgd')} + {s.get('schedule', 'poly')}; "
            f"protocol {self.protocol}) and backbone weights ({s['weights']}); one run folder per method under "
            f"`{self.out_dir}`.", "",
        ]
        if self.command:
            lines += ["```bash", self.command, "```", ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.table_rows()]
        kinds = sorted({r.step_memory_kind for r in self.rows + self.single_task if r.step_memory_kind})
        lines += [
            "",
            "- **trainable a+b+c**: adapters (a) + unfrozen backbone parameters (b) + head/decoders (c), what MTLoRA "
            "prints; **a+b** leaves out the decoders, what DiTASK prints (reporting/budget.py).",
            "- **adapter (MB)**: the run's `adapter.safetensors` (trained parameters only), 10^6 bytes.",
            "- **step time**: median wall time of one optimizer step (forward, backward, update) after 2 warm-up "
            "steps, of the run's last process (a resumed run: the steps after the resume); data loading, evaluation "
            "and checkpoints excluded. **step memory**: the largest extra memory one step needed: "
            + ("; ".join(kinds) if kinds else "not measured") + ".",
            "- **task metrics**: the evaluation each run reports (the last one, or under `train.select=best` the "
            "one `summary.json` names), each task's headline metric under the protocol (mIoU as a fraction, depth "
            "RMSE in metres, normals mean angle in degrees, saliency maxF — per-image mIoU under `mtlora` — "
            "boundary odsF).",
            f"- **Δm**: mean over tasks of ±(M - M_ref) / M_ref x 100, minus for lower-is-better metrics (depth, "
            f"normals), against {self.reference_label()}"
            + (" — as in the PEFT papers' tables, whose reference is single-task full fine-tuning."
               if self.reference == SINGLE_TASK else
               "; the papers' Δm is against single-task models instead (`--reference single-task`)."),
        ]
        if self.delta_m_note:
            lines.append(f"- **{self.delta_m_note}**.")
        if self.single_task:
            lines.append("- **single_task/<task>** rows: the reference runs, `full` fine-tuning of one task each "
                         "(backbone + that task's head), trained with the same schedule; **single-task total**: "
                         "them as one system (parameters and adapter files summed, Δm 0 by definition).")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        names = (["method", "tuning", "run_dir", "step", "trainable_mtlora_rule", "trainable_ditask_rule",
                  "adapter_mb", "step_time_median_s", "step_memory_mb"]
                 + [f"{t}_{main_metric(t, self.protocol)}" for t in self.tasks] + ["delta_m"])
        w = csv.writer(buf)
        w.writerow(names)
        for r in self.all_rows():
            d = r.as_dict()
            w.writerow([d["method"], d["tuning"], d["run_dir"], d["step"], d["trainable_mtlora_rule"],
                        d["trainable_ditask_rule"], repr(d["adapter_mb"]), _raw(d["step_time_median_s"]),
                        _raw(d["step_memory_mb"])] + [_raw(r.metrics.get(t)) for t in self.tasks]
                       + [_raw(r.delta_m)])
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {"setup": self.setup, "reference": self.reference, "reference_metrics": self.reference_metrics,
                "metrics": {t: main_metric(t, self.protocol) for t in self.tasks}, "command": self.command,
                "delta_m_note": self.delta_m_note, "rows": [r.as_dict() for r in self.rows],
                "single_task": [r.as_dict() for r in self.single_task],
                "single_task_total": self.single_task_total and self.single_task_total.as_dict()}

    def write(self, metric: str = "delta_m") -> dict[str, Path]:
        """comparison.md / .csv / .json / .png in the comparison folder."""
        paths = {k: self.out_dir / f"comparison.{k}" for k in ("md", "csv", "json", "png")}
        paths["md"].write_text(self.to_markdown())
        paths["csv"].write_text(self.to_csv())
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        plot_comparison(self, paths["png"], metric)
        return paths

    def rich_table(self):
        from rich.table import Table

        table = Table(title=f"comparison: {self.out_dir}")
        for col in self.columns():
            table.add_column(col, justify="left" if col == "method" else "right")
        for row in self.table_rows():
            table.add_row(*row)
        return table


def _raw(v) -> str:
    """CSV cell: repr keeps every digit of a float (the CSV equals the run folders exactly); empty for None."""
    return "" if v is None else repr(v)


def build_comparison(out_dir: str | Path, methods: list[str], reference: str, setup: dict,
                     command: str = "") -> Comparison:
    """Read every run folder of a comparison and compute Δm against the reference."""
    out_dir = Path(out_dir)
    rows = [read_run_row(out_dir / m, m) for m in methods]
    single = []
    if reference == SINGLE_TASK:
        single = [read_run_row(out_dir / SINGLE_TASK_DIR / t, f"{SINGLE_TASK_DIR}/{t}") for t in setup["tasks"]]
    elif reference not in methods:
        raise ValueError(f"the Δm reference {reference!r} is not among the compared methods {methods}")
    comparison = Comparison(out_dir, setup, reference, rows, single, command)
    ref = comparison.reference_metrics
    ref_rows = single if reference == SINGLE_TASK else [r for r in rows if r.label == reference]
    ref_missing = [why for r in ref_rows for why in r.missing.values()]
    zero = [f"{t} {main_metric(t, comparison.protocol)}" for t, v in ref.items() if v == 0]
    comparison.delta_m_undefined = bool(ref_missing or zero)
    if ref_missing:  # no relative change from a value that was never measured
        comparison.delta_m_note = f"Δm undefined: the reference misses a metric ({'; '.join(ref_missing)})"
    elif zero:  # a relative change from 0 is undefined: say so instead of dividing
        comparison.delta_m_note = f"Δm undefined: the reference's {', '.join(zero)} is 0"
    skipped = []
    for r in rows:
        if zero or ref_missing or r.missing:
            r.delta_m = None
            skipped += [] if (zero or ref_missing) else list(r.missing.values())
        else:
            r.delta_m = delta_m(r.metrics, ref) + 0.0  # + 0.0: the reference shows 0.00, not -0.00
    if skipped:
        comparison.delta_m_note = f"Δm left out where a metric is missing: {'; '.join(skipped)}"
    return comparison


# ---------------------------------------------------------------------------------------------------------- figure
PUBLISHED_FULL_FT = "MTL - full FT"  # the published row our `full` reference corresponds to


def _published_points(backbone: str, dataset: str, reference: str, metric: str) -> tuple[list, str]:
    """[(row, params M, y, note)] of published rows comparable with this comparison, and why there are none.

    Δm against `full` is recomputed from each row's metrics against the published MTL full fine-tuning row of the
    same table; against single-task runs it is the paper's own Δm (vs single-task full fine-tuning).
    """
    from .plot import _y_published

    rows = [r for r in PUBLISHED if r.plot and r.backbone == backbone and r.dataset == dataset
            and r.params_m is not None]
    if not rows:
        have = sorted({f"{r.backbone}/{r.dataset}" for r in PUBLISHED})
        return [], f"no published numbers for {backbone} on {dataset} (published: {', '.join(have)})"
    points = []
    if metric != "delta_m":
        points = [(r, r.params_m, r.metrics[metric], "") for r in rows if metric in r.metrics]
    elif reference == SINGLE_TASK:
        for r in rows:
            y, note = _y_published(r, "delta_m")
            if y is not None:
                points.append((r, r.params_m, y, note))
    else:
        full = next((r for r in rows if r.method == PUBLISHED_FULL_FT and r.metrics), None)
        if reference != "full" or full is None:
            return [], (f"no published Δm against {reference} for {backbone} on {dataset}; "
                        "use --reference single-task to compare with the papers")
        for r in rows:
            shared = [t for t in r.metrics if t in full.metrics]
            if shared and r is not full:
                note = "" if set(shared) == set(full.metrics) else "+".join(shared)
                points.append((r, r.params_m, delta_m({t: r.metrics[t] for t in shared},
                                                      {t: full.metrics[t] for t in shared}), note))
        points.append((full, full.params_m, 0.0, ""))
    return points, "" if points else f"no published {metric} for {backbone} on {dataset}"


def plot_comparison(comparison: Comparison, out: str | Path, metric: str = "delta_m") -> Path:
    """Δm (or one task's metric, in the papers' units) against trainable parameters (a+b+c, log x): this comparison's
    runs as stars, comparable published rows as circles coloured by their counting rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import BACKBONE_NAMES, DATASET_NAMES, METRIC_LABELS, RULE_STYLE, RUN_STYLE, _place_labels, \
        _plain_log_ticks

    s = comparison.setup
    if metric != "delta_m" and metric not in comparison.tasks:
        raise ValueError(f"--metric {metric!r}: use delta_m or one of the compared tasks {list(comparison.tasks)}")
    ours = []
    for r in comparison.rows:
        y = r.delta_m if metric == "delta_m" else r.paper_metrics.get(metric)
        if y is not None:
            ours.append((r.label, r.trainable / 1e6, y))
    total = comparison.single_task_total
    if total is not None:
        y = total.delta_m if metric == "delta_m" else total.paper_metrics.get(metric)
        if y is not None:
            ours.append((total.label, total.trainable / 1e6, y))
    published, why_none = _published_points(s["backbone"], s["dataset"], comparison.reference, metric)

    fig, ax = plt.subplots(figsize=(9, 6), dpi=150)
    labels = []
    for rule, (color, marker, name) in RULE_STYLE.items():
        sel = [p for p in published if p[0].rule == rule]
        if sel:
            ax.scatter([p[1] for p in sel], [p[2] for p in sel], c=color, marker="o", s=34, edgecolors="black",
                       linewidths=0.4, label=f"published, {name}", zorder=3)
            labels += [(x, y, f"{r.method} [Δm {note}]" if note else r.method, color) for r, x, y, note in sel]
    color, marker = RUN_STYLE
    ax.scatter([p[1] for p in ours], [p[2] for p in ours], c=color, marker=marker, s=150, edgecolors="black",
               linewidths=0.5, label="this comparison (a+b+c)", zorder=4)
    labels += [(x, y, name, color) for name, x, y in ours]
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    if metric == "delta_m":
        ax.axhline(0.0, color="#555555", lw=0.8, ls="--", zorder=1)
        ax.set_ylabel(f"Δm vs {comparison.reference_label()} (%)")
    else:
        ax.set_ylabel(f"{metric}: {METRIC_LABELS.get(metric, 'paper units')}")
    ax.set_xlabel("trainable parameters (M, log scale" + ("; published counts as printed)" if published else ")"))
    title = (f"{DATASET_NAMES.get(s['dataset'], s['dataset'])} ({s['data']}), "
             f"{BACKBONE_NAMES.get(s['backbone'], s['backbone'])}, {s['max_steps']} steps: "
             f"{'Δm' if metric == 'delta_m' else metric} vs trainable parameters")
    ax.set_title(title + (f"\n{why_none}" if why_none else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    legend = ax.legend(loc="best", fontsize=8, title=why_none and "no published points", title_fontsize=8)
    fig.tight_layout()
    _place_labels(ax, labels, avoid=[legend])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


__all__ = ["Comparison", "RunRow", "SINGLE_TASK", "SINGLE_TASK_DIR", "build_comparison", "main_metric",
           "plot_comparison", "read_run_row"]
