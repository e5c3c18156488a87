"""Published numbers for PEFT multi-task dense prediction on Swin, with where each came from.

Source: /work/shared/reference/peft_mtl_baselines.md (tables 0a-0c, section 1). Provenance tags:
  P  the row appears in at least two secondary copies of the paper table (paper notes, DeGMix README)
  S  a single secondary copy (a paper note or a README)
  C  computed from the public code (built on CPU with the repo defaults)
  R  recalled from the MTLoRA/Polyhistor Table 1, not found in any stored source: verify before publishing
Counting rules of the printed parameter numbers:
  mtlora  adapters + unfrozen backbone parameters + decoders (what MTLoRA's main.py prints)
  ditask  adapters + unfrozen backbone parameters, decoders excluded (what DiTASK prints)
  head    the trainable head only (DeGMix-Tuning: the backbone is frozen)
  models  the sum over separately trained models (single-task rows)
  unknown Polyhistor-derived baselines, whose rule is undocumented (MTLoRA issue #8 could not match it), and later
          papers whose rule we have not checked
FLOPs (PUBLISHED_FLOPS): the full DeGMix models' NYUD-v2 figures, as printed; reporting/flops.py has the counting
convention that reproduces them.
Metric units are the papers': mIoU in %, saliency "mIoU" = max-threshold IoU in %, normals = mean angle error in
degrees (labelled "rmse" in these papers), NYUD depth RMSE in metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tasks import get_task

PASCAL4 = ("semseg", "human_parts", "sal", "normals")
NYUD2 = ("semseg", "depth")
NYUD3 = ("semseg", "depth", "normals")

RULES = {
    "mtlora": "adapters + unfrozen backbone + decoders (a+b+c)",
    "ditask": "adapters + unfrozen backbone, no decoders (a+b)",
    "head": "trainable head only (c)",
    "models": "sum over separately trained models",
    "unknown": "undocumented (Polyhistor-derived baselines; later papers not checked)",
}


@dataclass(frozen=True)
class PublishedRow:
    method: str
    backbone: str
    dataset: str
    tasks: tuple[str, ...]
    params: str | None  # trainable parameters in M exactly as printed ("4.95"), or None
    rule: str  # key of RULES
    metrics: dict[str, float] = field(default_factory=dict)  # {task: value} in the paper's units
    delta_m: float | None = None  # as printed
    source: str = ""
    provenance: str = ""  # P / S / C / R
    recipe: str | None = None  # reproduction recipe in reproduce.py for the printed count
    note: str = ""  # what is known about the count, or why it cannot be reproduced
    reference: bool = False  # the single-task row that delta_m is relative to
    plot: bool = True  # False for duplicate rows (the same run counted under another rule)

    @property
    def params_m(self) -> float | None:
        try:
            return float(self.params) if self.params is not None else None
        except ValueError:
            return None


def _m(*values: float, tasks: tuple[str, ...] = PASCAL4) -> dict[str, float]:
    return dict(zip(tasks, values))


_SWIN_T_PASCAL = "MTLoRA Tab.1"
_DITASK_ROUNDING = ("backbone side only, almost all of it the unfrozen PatchMerging/norm/bias extras; the released "
                    "code (+144 dead qkv task scalars on PASCAL) also rounds to 1.60, DiTASK prints 1.61 (1.60 for "
                    "its single-task row): a rounding/counting difference we cannot explain")
PUBLISHED: tuple[PublishedRow, ...] = (
    # ---- PASCAL-Context, Swin-T, 448x448 (table 0a)
    PublishedRow("Single-task full FT (4 models)", "swin_t", "pascal", PASCAL4, "112.62", "models",
                 _m(67.21, 61.93, 62.35, 17.97), 0.0, f"{_SWIN_T_PASCAL} (from Polyhistor)", "P",
                 recipe="single_task", reference=True,
                 note="4 x (Swin-T + one task decoder) by our count; the 0.6M gap is not explained"),
    PublishedRow("MTL - decoders only", "swin_t", "pascal", PASCAL4, "1.94", "mtlora", _m(65.09, 53.48, 57.46, 20.69),
                 -9.95, _SWIN_T_PASCAL, "R", recipe="decoders_only",
                 note="MTLoRA's decoders + downsamplers are 1.947M; the table prints 1.94"),
    PublishedRow("MTL - full FT", "swin_t", "pascal", PASCAL4, "30.06", "mtlora", _m(67.56, 60.24, 65.21, 16.64), 2.23,
                 _SWIN_T_PASCAL, "P", recipe="full",
                 note="Swin-T + MTLoRA decoders is 29.47M; printed delta-m +2.23 recomputes to +2.45"),
    PublishedRow("BitFit", "swin_t", "pascal", PASCAL4, "2.85", "unknown", _m(68.57, 55.99, 60.64, 19.42), -4.60,
                 _SWIN_T_PASCAL, "R", recipe="bitfit",
                 note="larger than decoders (1.94M) + every Swin-T bias; Polyhistor's rule is undocumented"),
    PublishedRow("Relative bias", "swin_t", "pascal", PASCAL4, "2.64", "unknown", _m(63.51, 52.35, 57.74, 21.07), None,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("VPT-shallow", "swin_t", "pascal", PASCAL4, "2.57", "unknown", _m(62.96, 52.27, 58.31, 20.90), None,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("VPT-deep", "swin_t", "pascal", PASCAL4, "3.43", "unknown", _m(64.35, 52.54, 58.15, 21.07), None,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("Compacter", "swin_t", "pascal", PASCAL4, "2.78", "unknown", _m(68.08, 56.41, 60.08, 19.22), -4.55,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("Compacter++", "swin_t", "pascal", PASCAL4, "2.66", "unknown", _m(67.26, 55.69, 59.47, 19.54), -5.84,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("Adapter", "swin_t", "pascal", PASCAL4, "11.24", "unknown", _m(69.21, 57.38, 61.28, 18.83), -2.71,
                 _SWIN_T_PASCAL, "R", recipe="adapter",
                 note="bottleneck width and placement of the baseline are not published"),
    PublishedRow("Low-rank adapter", "swin_t", "pascal", PASCAL4, "2.83", "unknown", _m(68.31, 56.53, 60.29, 19.08),
                 None, _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("LoRA", "swin_t", "pascal", PASCAL4, "2.87", "unknown", _m(70.12, 57.73, 61.90, 18.96), -2.17,
                 _SWIN_T_PASCAL, "R", recipe="lora",
                 note="rank and targets of the baseline are not published (MTLoRA #8: 'most likely' attention only)"),
    PublishedRow("VL-Adapter", "swin_t", "pascal", PASCAL4, "4.74", "unknown", _m(70.21, 59.15, 62.29, 19.26), -1.83,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("HyperFormer", "swin_t", "pascal", PASCAL4, "72.77", "unknown", _m(71.43, 60.73, 65.54, 17.77), 2.64,
                 _SWIN_T_PASCAL, "R", note="not implemented here"),
    PublishedRow("Polyhistor", "swin_t", "pascal", PASCAL4, "8.96", "unknown", _m(70.87, 59.54, 65.47, 17.47), 2.34,
                 _SWIN_T_PASCAL, "R", note="no public code"),
    PublishedRow("MTLoRA (r=16)", "swin_t", "pascal", PASCAL4, "4.95", "mtlora", _m(68.19, 58.99, 64.48, 17.03), 1.35,
                 _SWIN_T_PASCAL, "P", recipe="mtlora_r16", note="code count 4.953M [C]"),
    PublishedRow("MTLoRA (r=32)", "swin_t", "pascal", PASCAL4, "6.08", "mtlora", _m(67.74, 59.46, 64.90, 16.59), 2.16,
                 _SWIN_T_PASCAL, "P", recipe="mtlora_r32", note="code count 6.084M [C]"),
    PublishedRow("MTLoRA (r=64)", "swin_t", "pascal", PASCAL4, "8.34", "mtlora", _m(67.90, 59.84, 65.40, 16.60), 2.55,
                 _SWIN_T_PASCAL, "P", recipe="mtlora_r64", note="code count 8.345M [C]"),
    PublishedRow("MTLoRA (r=64), as printed by DiTASK", "swin_t", "pascal", PASCAL4, "6.40", "ditask",
                 _m(67.90, 59.84, 65.40, 16.60), 2.55, "DiTASK Tab.", "S", recipe="mtlora_r64_ditask_rule",
                 note="= 8.345 - 1.947 (decoders dropped)", plot=False),
    PublishedRow("MTLoRA (r=64), independent rerun", "swin_t", "pascal", PASCAL4, "8.34", "mtlora",
                 _m(68.38, 59.58, 63.85, 16.76), 1.77, "scale-lab/MTLoRA#6", "S", recipe="mtlora_r64"),
    PublishedRow("DiTASK, single-task setting", "swin_t", "pascal", PASCAL4, "1.60", "ditask",
                 _m(72.20, 62.33, 65.70, 16.55), 5.33, "DiTASK Tab.", "S", note="per-task models; not reproduced"),
    PublishedRow("DiTASK", "swin_t", "pascal", PASCAL4, "1.61", "ditask", _m(69.66, 62.02, 65.00, 17.10), 3.22,
                 "DiTASK Tab.", "S", recipe="ditask_ditask_rule", note=_DITASK_ROUNDING),
    PublishedRow("DiTASK, MTLoRA's counting rule", "swin_t", "pascal", PASCAL4, "3.549", "mtlora",
                 _m(69.66, 62.02, 65.00, 17.10), 3.22, "peft_mtl_baselines.md section 1", "C",
                 recipe="ditask_mtlora_rule", note="released config incl. 144 dead qkv task scalars", plot=False),
    PublishedRow("TADFormer (r=16)", "swin_t", "pascal", PASCAL4, "3.56", "unknown", _m(69.79, 59.27, 65.04, 16.91),
                 2.44, "TADFormer CVPR'25", "S", note="not implemented here"),
    PublishedRow("TADFormer (r=32)", "swin_t", "pascal", PASCAL4, "4.78", "unknown", _m(70.20, 60.00, 65.71, 16.57),
                 3.63, "TADFormer CVPR'25", "S", note="not implemented here"),
    PublishedRow("TADFormer (r=64)", "swin_t", "pascal", PASCAL4, "7.38", "unknown", _m(70.82, 60.45, 65.88, 16.48),
                 4.24, "TADFormer CVPR'25", "P", note="not implemented here; Min100KM/TADFormer#2 could not match it"),
    PublishedRow("VMT-Adapter", "swin_t", "pascal", PASCAL4, None, "unknown", {}, 3.96, "AAAI'24 abstract", "P",
                 note="'~1%' of the backbone; per-task numbers not retrieved"),
    PublishedRow("VMT-Adapter-Lite", "swin_t", "pascal", PASCAL4, None, "unknown", {}, 1.34, "AAAI'24 abstract", "P",
                 note="'0.36%' of the backbone; per-task numbers not retrieved"),
    PublishedRow("FAAR", "swin_t", "pascal", PASCAL4, "3.38", "unknown", _m(72.02, 61.25, 66.11, 16.35), 5.28,
                 "FAAR CVPR'26", "S", note="not implemented here"),
    PublishedRow("Free-Sinewich (r=64)", "swin_t", "pascal", PASCAL4, "6.53", "unknown",
                 _m(71.25, 61.38, 66.24, 16.14), 5.39, "Free-Sinewich CVPR'26", "S", note="not implemented here"),
    PublishedRow("Free-Sinewich (r=32)", "swin_t", "pascal", PASCAL4, "4.04", "unknown",
                 _m(71.02, 60.75, 65.94, 16.44), 4.51, "Free-Sinewich CVPR'26", "S", note="not implemented here"),
    PublishedRow("DeGMix-Tuning", "swin_t", "pascal", PASCAL4, "2.2", "head", {}, None, "yangyangxu0/DeGMix README",
                 "S", recipe="degmix", note="README metrics row is column-shifted and unusable"),
    # ---- PASCAL-Context, Swin-L (table 0b)
    PublishedRow("DiTASK", "swin_l", "pascal", PASCAL4, "7.1", "unknown", _m(76.23, 67.53, 64.07, 16.9), None,
                 "DeGMix README citing DiTASK", "S",
                 note="the released Swin-L config counts 9.08M (a+b+c) / 6.40M (a+b); the setting behind 7.1 is "
                      "unknown"),
    PublishedRow("DeGMix-Tuning", "swin_l", "pascal", PASCAL4, "3.2", "head", _m(78.14, 64.44, 64.20, 16.3), None,
                 "DeGMix README", "S", recipe="degmix"),
    # ---- NYUD-v2, Swin-T (table 0c)
    PublishedRow("DiTASK", "swin_t", "nyud", NYUD2, "1.61", "ditask", _m(43.85, 0.606, tasks=NYUD2), None,
                 "DeGMix README citing DiTASK", "S", recipe="ditask_ditask_rule", note=_DITASK_ROUNDING),
    PublishedRow("DeGMix-Tuning", "swin_t", "nyud", NYUD2, "1.3", "head", _m(44.90, 0.615, tasks=NYUD2), None,
                 "DeGMix README", "S", recipe="degmix"),
    PublishedRow("Single task (3 models)", "swin_t", "nyud", NYUD3, "84.00", "models",
                 _m(42.65, 0.60, 22.83, tasks=NYUD3), 0.0, "FAAR CVPR'26", "S", reference=True,
                 note="FAAR's decoder is not described"),
    PublishedRow("MTL - full FT", "swin_t", "nyud", NYUD3, "28.10", "unknown", _m(38.85, 0.66, 24.33, tasks=NYUD3),
                 -8.49, "FAAR CVPR'26", "S", note="FAAR's decoder is not described"),
    PublishedRow("TADFormer (r=64)", "swin_t", "nyud", NYUD3, "8.90", "unknown", _m(40.85, 0.64, 27.48, tasks=NYUD3),
                 -10.42, "FAAR CVPR'26", "S", note="not implemented here"),
    PublishedRow("FAAR", "swin_t", "nyud", NYUD3, "2.85", "unknown", _m(41.27, 0.63, 26.35, tasks=NYUD3), -7.88,
                 "FAAR CVPR'26", "S", note="not implemented here"),
)


# ---- FLOPs of the full (not tuned) DeGMix models, NYUD-v2 (DeGMix README table, identical in the DeMTG README)
NYUD4 = ("semseg", "depth", "normals", "edge")
FLOPS_UNIT = "GMac as ptflops 0.6.x counts them (printed as 'G' FLOPs)"


@dataclass(frozen=True)
class PublishedFlops:
    """A printed FLOPs figure and the configuration it was counted on (reporting/flops.py: the convention).

    `size` and `head` are the input and head settings of the count that reproduces the figure: the official code
    computes the task interaction as `interaction="official"` and the task query as `query_attention="pixel"`.
    """

    method: str
    backbone: str
    dataset: str
    tasks: tuple[str, ...]
    printed: str  # as printed, without the "G" ("125.49"; "-" where the README prints "-G")
    params: str  # the row's parameter count as printed
    size: tuple[int, int] = (425, 560)
    head: tuple[tuple[str, object], ...] = (("dim", 256), ("interaction", "official"), ("query_attention", "pixel"))
    source: str = "yangyangxu0/DeGMix README (= yangyangxu0/DeMTG README)"
    provenance: str = "S"
    note: str = ""
    repeats: str = ""  # set when the printed numbers are another row's, not a figure of this model

    @property
    def gflops(self) -> float | None:
        try:
            return float(self.printed)
        except ValueError:
            return None

    @property
    def as_printed(self) -> str:
        return f"{self.printed}G"

    def matches(self, size: tuple[int, int], head: dict) -> bool:
        """True when a count at `size` with these head settings is the configuration of this figure."""
        return tuple(size) == tuple(self.size) and all(head.get(k) == v for k, v in self.head)


PUBLISHED_FLOPS: tuple[PublishedFlops, ...] = (
    PublishedFlops("DeGMix", "swin_t", "nyud", NYUD4, "125.49", "33.2M",
                   note="ptflops 0.6.9 on the official DeMTG code: 125,489,624,260 MACs; ours the same [C]"),
    PublishedFlops("DeGMix", "swin_s", "nyud", NYUD4, "145.84", "54.52M",
                   note="ptflops 0.6.9 on the official DeMTG code: 145,838,040,772 MACs; ours the same [C]"),
    PublishedFlops("DeGMix", "swin_b", "nyud", NYUD4, "-", "94.4M", note="the README prints '-G'"),
    PublishedFlops("DeGMix", "swin_l", "nyud", NYUD4, "321.22", "202.92",
                   note="ptflops 0.6.9 on the official DeMTG code with Swin-L window 12 (the window the parameter "
                        "count implies): 321,223,667,668 MACs; ours the same; window 7 counts 302.05 [C]. The "
                        "README's ViT-B row repeats these Swin-L numbers"),
)

# Printed rows that are NOT figures of their model (never returned by `published_flops`): the DeGMix README's ViT-B
# row repeats the Swin-L row word for word (202.92, 321.22G, 57.55 / 0.5037 / 19.21 / 79.0; it links another
# checkpoint). The official DeGMix ViT-B with DemtViTHead has 98,014,721 parameters (97,645,313 without its unused
# linear1), so neither number is ViT-B's. No ViT FLOPs are published.
REPEATED_ROWS: tuple[PublishedFlops, ...] = (
    PublishedFlops("DeGMix", "vit_b", "nyud", NYUD4, "321.22", "202.92", repeats="swin_l",
                   note="the DeGMix README's ViT-B row repeats the Swin-L row (202.92, 321.22G, 57.55 / 0.5037 / "
                        "19.21 / 79.0); not a ViT-B figure (DeGMix ViT-B has 98.01M parameters)"),
)


def repeated_row(backbone: str, dataset: str, tasks: tuple[str, ...] | None = None) -> PublishedFlops | None:
    """A printed row that only repeats another backbone's numbers (the README's ViT-B row), or None."""
    for row in REPEATED_ROWS:
        if row.repeats and row.backbone == backbone and row.dataset == dataset and (
                tasks is None or tuple(tasks) == row.tasks):
            return row
    return None


def published_flops(backbone: str, dataset: str, tasks: tuple[str, ...] | None = None) -> PublishedFlops | None:
    """The printed FLOPs figure of a full DeGMix model (backbone, dataset and, when given, the same task set)."""
    for row in PUBLISHED_FLOPS:
        if row.backbone == backbone and row.dataset == dataset and (tasks is None or tuple(tasks) == row.tasks):
            return row
    return None


def delta_m(metrics: dict[str, float], reference: dict[str, float]) -> float:
    """Multi-task performance vs a reference (Maninis et al. 2019), in %: mean over tasks of the signed relative gain.

    Every task of `reference` must be in `metrics`; lower-is-better tasks (depth, normals) count with a minus sign.
    """
    missing = [t for t in reference if t not in metrics]
    if missing:
        raise ValueError(f"delta-m needs every reference task; missing {missing}")
    gains = []
    for task, ref in reference.items():
        sign = 1.0 if get_task(task).higher_is_better else -1.0
        gains.append(sign * (metrics[task] - ref) / ref)
    return 100.0 * sum(gains) / len(gains)


def reference_row(backbone: str, dataset: str, tasks: tuple[str, ...] | None = None) -> PublishedRow | None:
    """The single-task row delta-m is relative to, for a backbone/dataset (and task set, when given)."""
    for row in PUBLISHED:
        if row.reference and row.backbone == backbone and row.dataset == dataset:
            if tasks is None or set(tasks) <= set(row.tasks):
                return row
    return None


def recomputed_delta_m(row: PublishedRow) -> float | None:
    """delta-m recomputed from the row's metrics against its table's single-task row (None if not possible)."""
    ref = reference_row(row.backbone, row.dataset)
    if ref is None or not row.metrics or set(row.metrics) != set(ref.metrics):
        return None
    return delta_m(row.metrics, ref.metrics)


__all__ = ["FLOPS_UNIT", "NYUD2", "NYUD3", "NYUD4", "PASCAL4", "PUBLISHED", "PUBLISHED_FLOPS", "PublishedFlops",
           "PublishedRow", "REPEATED_ROWS", "RULES", "delta_m", "published_flops", "recomputed_delta_m",
           "reference_row", "repeated_row"]
