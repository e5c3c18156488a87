"""Accuracy vs trainable parameters (log x), like the DeGMix paper figure: published rows + measured runs.

Published x values are the counts *as printed*, and the papers count differently (reporting/published.py RULES), so
points are coloured by counting rule. Measured runs use a+b+c (MTLoRA's rule: everything that trains).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .published import PUBLISHED, delta_m, recomputed_delta_m, reference_row
from .runs import count_trainable_from_config, find_runs, load_run

RULE_STYLE = {
    "mtlora": ("#1f77b4", "o", "a+b+c (MTLoRA rule)"),
    "ditask": ("#ff7f0e", "s", "a+b (DiTASK rule)"),
    "head": ("#2ca02c", "D", "head only"),
    "models": ("#7f7f7f", "P", "separate models"),
    "unknown": ("#b0b0b0", "o", "rule undocumented"),
}
RUN_STYLE = ("#d62728", "*")
METRIC_LABELS = {"semseg": "mIoU (%)", "human_parts": "mIoU (%)", "sal": "max-threshold IoU (%)",
                 "normals": "mean angle error (deg)", "depth": "RMSE (m)", "edge": "odsF (%)"}
DATASET_NAMES = {"pascal": "PASCAL-Context", "nyud": "NYUD-v2", "cityscapes": "Cityscapes"}
BACKBONE_NAMES = {"swin_t": "Swin-T", "swin_s": "Swin-S", "swin_b": "Swin-B", "swin_l": "Swin-L"}


@dataclass
class PlotResult:
    path: Path
    published: int
    runs: int
    skipped: list[str] = field(default_factory=list)  # why runs were left out
    points: list[tuple[str, float, float, str]] = field(default_factory=list)  # runs: (folder, params M, y, note)


def _partial_delta_m(values: dict[str, float], ref) -> tuple[float, str] | None:
    """Δm over the point's own tasks when it has fewer than the reference (e.g. NYUD semseg+depth): (Δm, tasks)."""
    if ref is None or not values or not set(values) < set(ref.metrics):
        return None
    return delta_m(values, {t: ref.metrics[t] for t in values}), "+".join(values)


def _comparison_delta_m(run_dir: Path) -> tuple[float | None, str] | None:
    """(Δm, reference) of a run inside a `degmix-tuning compare` folder, as that comparison computed it (against its
    own `full` run or single-task runs), or None when the run is in no comparison folder. Used where no published
    single-task reference exists (e.g. swin_synthetic), so the runs `compare` plotted are plotted here too."""
    for folder in (run_dir.parent, run_dir.parent.parent):
        path = folder / "comparison.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        label = run_dir.relative_to(folder).as_posix()
        for row in data.get("rows", []) + data.get("single_task", []):
            if row.get("method") == label:
                return row.get("delta_m"), str(data.get("reference", "?"))
    return None


def _y_published(row, metric: str) -> tuple[float | None, str]:
    """-> (y, note): note names the tasks when Δm covers only the row's own tasks."""
    if metric == "delta_m":
        y = row.delta_m if row.delta_m is not None else recomputed_delta_m(row)
        if y is None:
            partial = _partial_delta_m(dict(row.metrics), reference_row(row.backbone, row.dataset))
            if partial:
                return partial[0], partial[1]
        return y, ""
    return row.metrics.get(metric), ""


def _plain_log_ticks(axis) -> None:
    """0.3, 1, 3, 10 instead of 3x10^-1, 10^0, 3x10^0 on a log axis (labels at 1, 2, 5 per decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _place_labels(ax, points: list[tuple[float, float, str, str]], avoid=()) -> None:
    """Annotate points with a leader line, trying offsets so labels overlap neither each other nor the markers."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [a.get_window_extent(renderer).expanded(1.08, 1.08) for a in avoid]
    for x, y, _, _ in points:  # keep the markers themselves free
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 6, py - 6, px + 6, py + 6))
    offsets = [(7, 5), (7, -11), (-7, 5), (-7, -11), (10, 16), (10, -22), (-10, 16), (-10, -22), (14, 0), (-14, 0),
               (20, 28), (-20, 28), (20, -34), (-20, -34)]
    for x, y, text, color in sorted(points, key=lambda p: p[1], reverse=True):
        chosen = offsets[0]
        for dx, dy in offsets:
            probe = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                                ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top")
            box = probe.get_window_extent(renderer).expanded(1.02, 1.15)  # the text only, no leader line
            probe.remove()
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(t) for t in taken):
                chosen = (dx, dy)
                taken.append(box)
                break
        dx, dy = chosen
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7, color=color,
                    ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
                    arrowprops=dict(arrowstyle="-", lw=0.4, color=color, shrinkA=0, shrinkB=3))


def plot_budget(out: str | Path, runs_dir: str | Path | None = None, backbone: str | None = None,
                dataset: str | None = None, metric: str = "delta_m") -> PlotResult:
    """Write the figure to `out` (PNG/PDF/SVG by extension). `metric`: "delta_m" or a task name (paper metric).

    `backbone` / `dataset` default to those the runs share (so `--runs runs/` plots the runs it finds), else
    swin_t / pascal.
    """
    if runs_dir is not None and (backbone is None or dataset is None):
        found = {(r.backbone, r.dataset) for r in map(load_run, find_runs(runs_dir))}
        if len(found) == 1:
            (only_backbone, only_dataset), = found
            backbone, dataset = backbone or only_backbone, dataset or only_dataset
    backbone, dataset = backbone or "swin_t", dataset or "pascal"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = [r for r in PUBLISHED if r.plot and r.backbone == backbone and r.dataset == dataset]
    pts, notes = [], {}
    for r in rows:
        y, note = _y_published(r, metric)
        if r.params_m is not None and y is not None:
            pts.append((r, r.params_m, y))
            notes[id(r)] = note
    skipped: list[str] = []
    runs = []
    if runs_dir is not None:
        ref = reference_row(backbone, dataset)
        for run_dir in find_runs(runs_dir):
            rec = load_run(run_dir)
            if rec.backbone != backbone or rec.dataset != dataset:
                skipped.append(f"{run_dir}: {rec.backbone}/{rec.dataset}, the plot is {backbone}/{dataset}")
                continue
            values = rec.paper_metrics()
            note = ""
            if metric == "delta_m":
                own = {t: v for t, v in values.items() if ref is not None and t in ref.metrics}
                partial = _partial_delta_m(own, ref)
                compared = _comparison_delta_m(Path(run_dir)) if ref is None else None
                if ref is not None and all(t in values for t in ref.metrics):
                    y = delta_m({t: values[t] for t in ref.metrics}, ref.metrics)
                elif partial:
                    y, note = partial
                elif compared is not None and compared[0] is not None:
                    y, note = compared[0], f"vs {compared[1]} of {Path(run_dir).parent.name}"
                elif compared is not None:
                    skipped.append(f"{run_dir}: a Δm reference run of its comparison (Δm undefined for it)")
                    continue
                else:
                    need = (f"tasks of {list(ref.metrics)}" if ref else
                            f"a reference: no published single-task row for {backbone}/{dataset}, and the run is in "
                            "no `compare` folder")
                    skipped.append(f"{run_dir}: delta-m needs {need}, the run has {sorted(values)}; "
                                   "try --metric TASK")
                    continue
            elif metric in values:
                y = values[metric]
            else:
                skipped.append(f"{run_dir}: no {metric} metric in its last evaluation")
                continue
            trainable = rec.trainable if rec.trainable is not None else count_trainable_from_config(rec.config)
            runs.append((rec, trainable / 1e6, y, note))
    if not pts and not runs:
        why = f" ({skipped[0]}{f'; {len(skipped) - 1} more skipped' if len(skipped) > 1 else ''})" if skipped else ""
        raise ValueError(f"nothing to plot for {backbone}/{dataset} with metric {metric!r}: no published row has it "
                         f"and no run matched{why}")

    fig, ax = plt.subplots(figsize=(9, 6), dpi=150)
    labels = []
    def tag(text: str, note: str) -> str:
        return f"{text} [Δm {note}]" if note else text

    for rule, (color, marker, name) in RULE_STYLE.items():
        sel = [(r, x, y) for r, x, y in pts if r.rule == rule]
        if sel:
            ax.scatter([x for _, x, _ in sel], [y for _, _, y in sel], c=color, marker=marker, s=36, label=name,
                       edgecolors="black", linewidths=0.4, zorder=3)
            labels += [(x, y, tag(r.method, notes[id(r)]), color) for r, x, y in sel]
    if runs:
        color, marker = RUN_STYLE
        ax.scatter([x for _, x, _, _ in runs], [y for _, _, y, _ in runs], c=color, marker=marker, s=140,
                   edgecolors="black", linewidths=0.5, label="our runs (a+b+c)", zorder=4)
        labels += [(x, y, tag(f"{rec.method} ({rec.path.name})", note), color) for rec, x, y, note in runs]
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    if metric == "delta_m":
        ax.axhline(0.0, color="#555555", lw=0.8, ls="--", zorder=1)
        ax.set_ylabel("Δm vs single-task full fine-tuning (%)\n[Δm x+y]: over tasks x and y only")
    else:
        ax.set_ylabel(f"{metric}: {METRIC_LABELS.get(metric, 'paper units')}")
    ax.set_xlabel("trainable parameters (M, log scale; published counts as printed)")
    ax.set_title(f"{DATASET_NAMES.get(dataset, dataset)}, {BACKBONE_NAMES.get(backbone, backbone)}: "
                 f"{'Δm' if metric == 'delta_m' else metric} vs trainable parameters")
    ax.grid(True, which="both", alpha=0.25)
    legend = ax.legend(loc="lower right", fontsize=8, title="parameter counting", title_fontsize=8)
    fig.tight_layout()  # before placing labels: they are laid out in display coordinates
    _place_labels(ax, labels, avoid=[legend])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return PlotResult(out, len(pts), len(runs), skipped, [(str(rec.path), x, y, note) for rec, x, y, note in runs])


__all__ = ["PlotResult", "plot_budget"]
