"""The parameter-budget report: measured budgets + published comparison, as rich tables, Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .budget import MethodBudget, budget_model_config, param_budget
from .published import RULES
from .reproduce import PublishedComparison, compare_published

MEASURED_COLUMNS = ("method", "adapter (a)", "unfrozen base (b)", "head (c)", "MTLoRA rule a+b+c", "DiTASK rule a+b",
                    "all params", "adapter file (MB)")
PUBLISHED_COLUMNS = ("method", "dataset", "printed (M)", "rule", "ours", "flag", "metrics", "Δm", "Δm recomputed",
                     "source", "prov.")
CONSOLE_PUBLISHED_COLUMNS = ("method", "dataset", "printed (M)", "rule", "ours", "flag", "Δm", "Δm recomputed",
                             "prov.")
CSV_COLUMNS = ("section", "method", "backbone", "dataset", "tasks", "adapter", "unfrozen_base", "head", "mtlora_rule",
               "ditask_rule", "total_params", "adapter_bytes", "published_params_m", "rule", "reproduced_count",
               "flag", "delta_m", "delta_m_recomputed", "source", "provenance")
PROVENANCE = {
    "P": "in at least two secondary copies of the paper table",
    "S": "a single secondary copy (paper note or README)",
    "C": "computed from the public code",
    "R": "recalled, not found in a stored source: verify before publishing",
}


@dataclass
class BudgetReport:
    backbone: str
    dataset: str
    tasks: tuple[str, ...]
    measured: list[MethodBudget]
    published: list[PublishedComparison] = field(default_factory=list)

    def measured_rows(self) -> list[list[str]]:
        return [[b.method, f"{b.adapter:,}", f"{b.unfrozen_base:,}", f"{b.head:,}", f"{b.mtlora_rule:,}",
                 f"{b.ditask_rule:,}", f"{b.total_params:,}", f"{b.adapter_bytes / 1e6:.2f}"] for b in self.measured]

    def published_rows(self) -> list[list[str]]:
        rows = []
        for c in self.published:
            r = c.row
            metrics = " / ".join(f"{v:g}" for v in r.metrics.values()) if r.metrics else "-"
            rows.append([
                f"{r.method} [{r.backbone}]", r.dataset, r.params or "-", r.rule,
                "-" if c.reproduced is None else f"{c.reproduced:,}", c.flag, metrics,
                "-" if r.delta_m is None else f"{r.delta_m:+.2f}",
                "-" if c.delta_m_recomputed is None else f"{c.delta_m_recomputed:+.2f}", r.source, r.provenance,
            ])
        return rows

    def to_dict(self) -> dict:
        return {
            "setup": {"backbone": self.backbone, "dataset": self.dataset, "tasks": list(self.tasks),
                      "init": "random", "adapter_bytes": "the adapter file a run writes: trainable state (fp32) + config"},
            "rules": RULES,
            "provenance": PROVENANCE,
            "measured": [b.as_dict() for b in self.measured],
            "published": [c.as_dict() for c in self.published],
        }

    def to_markdown(self) -> str:
        def table(cols, rows):
            esc = [[str(v).replace("|", "\\|") for v in r] for r in rows]
            return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                             + ["| " + " | ".join(r) + " |" for r in esc])

        lines = [
            f"# Trainable-parameter budget: {self.backbone}, {self.dataset} ({', '.join(self.tasks)})", "",
            "Counted on randomly initialised models built with each method's default config. (a) parameters the "
            "method adds to the backbone, (b) original backbone parameters it trains, (c) head/decoders. "
            "MTLoRA's papers print a+b+c, DiTASK prints a+b, DeGMix-Tuning prints c.", "",
            table(MEASURED_COLUMNS, self.measured_rows()), "",
        ]
        if self.published:
            lines += [
                "## Published numbers", "",
                "'ours' is the count rebuilt under the row's rule (MTLoRA/DiTASK decoders = MTLoRA's decoder on its "
                "post-merging taps, see reporting/reproduce.py). Metrics for PASCAL: SemSeg / Parts / Sal / Normals; "
                "NYUD: SemSeg / Depth (/ Normals). Δm recomputed against the table's single-task row.", "",
                table(PUBLISHED_COLUMNS, self.published_rows()), "",
                "Counting rules: " + "; ".join(f"**{k}** = {v}" for k, v in RULES.items()) + ".", "",
                "Provenance: " + "; ".join(f"**{k}** = {v}" for k, v in PROVENANCE.items()) + ".", "",
            ]
        return "\n".join(lines)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for b in self.measured:
            w.writerow({"section": "measured", **b.as_dict(), "tasks": ",".join(b.tasks)})
        for c in self.published:
            d = c.as_dict()
            w.writerow({"section": "published", **d, "tasks": ",".join(d["tasks"]),
                        "reproduced_count": "" if c.reproduced is None else c.reproduced})
        return buf.getvalue()

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"md": out / "params.md", "csv": out / "params.csv", "json": out / "params.json"}
        paths["md"].write_text(self.to_markdown())
        paths["csv"].write_text(self.to_csv())
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return paths

    def rich_tables(self):
        from rich.table import Table

        measured = Table(title=f"Trainable parameters: {self.backbone}, {self.dataset} ({', '.join(self.tasks)})")
        for col in MEASURED_COLUMNS:
            measured.add_column(col, justify="left" if col == "method" else "right")
        for row in self.measured_rows():
            measured.add_row(*row)
        tables = [measured]
        if self.published:  # compact on the console: the notes behind each flag are in params.md / .json
            pub = Table(title="Published numbers vs our counts (full notes in params.md)")
            keep = [PUBLISHED_COLUMNS.index(c) for c in CONSOLE_PUBLISHED_COLUMNS]
            flag_at = CONSOLE_PUBLISHED_COLUMNS.index("flag")
            for col in CONSOLE_PUBLISHED_COLUMNS:
                numeric = col.startswith(("printed", "ours", "Δm"))
                pub.add_column(col, overflow="fold", justify="right" if numeric else "left")
            for row in self.published_rows():
                cells = [row[i] for i in keep]
                cells[flag_at] = cells[flag_at].split(";")[0]
                pub.add_row(*cells)
            tables.append(pub)
        return tables


def build_budget_report(backbone: str = "swin_t", dataset: str = "pascal", tasks: tuple[str, ...] | None = None,
                        methods: list[str] | None = None, published: bool = True) -> BudgetReport:
    cfg = budget_model_config(backbone, dataset, tasks)
    measured = param_budget(backbone, dataset, cfg.tasks, methods)
    comparisons = compare_published(backbone, measured) if published else []
    return BudgetReport(backbone, dataset, tuple(cfg.tasks), measured, comparisons)


__all__ = ["BudgetReport", "build_budget_report"]
