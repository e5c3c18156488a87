"""Evaluation-metric speed, before vs after, side by side in one process: per-meter ms/image and a full NYUD
validation-sized evaluation (654 images at 425x560, tasks semseg/depth/normals/edge) without the model forward.

"Before" is `degmix_tuning/metrics/` at git revision --before (default 0d85e00, main before the meter speed-ups):
the package tree at that revision is extracted with `git archive` into a temporary directory as
`degmix_tuning_before` (its root and `data` package `__init__` files replaced by empty ones so that only the
metrics and what they import -- tasks.py, registry.py, data/info.py -- are loaded; nothing else is rewritten,
the relative imports resolve inside the extracted copy). "After" is the working tree's `degmix_tuning.metrics`.

Inputs are generated on the fly, one batch at a time, deterministically per image index (so before and after see
the same images), and generation is never timed. They imitate what the model and the datasets give:
  * a Voronoi-cell scene per image (blocky 4-pixel cell borders), each cell with a class (Zipf-like frequencies)
    or 255 (~6 % of the cells unlabelled), plus an unlabelled border band (4-11 px) on half of the images;
  * semseg: float32 logits [B, 40, H, W] = bilinear-upsampled smooth noise + a bump on the predicted class (the
    true class for ~70 % of the cells); labels int64 [B, H, W] with 255 (~20 % of the pixels);
  * depth: float32 metres [B, 1, H, W] >= 0.7, a smooth per-image field plus per-cell offsets, 255 in the border
    band and in "missing depth" cells (~4 %); predictions = label x (1 + 8 % smooth noise) + pixel noise;
  * normals: labels float32 [B, 3, H, W] unit normals per cell (facing the camera) with a smooth perturbation,
    all three channels 255 in the border band and in invalid cells (~6 %); predictions unnormalised (noisy normal
    x a smooth scale field in 0.5..2);
  * edge: labels float32 [B, 1, H, W] in {0, 1}, the cell-class boundaries (no 255: NYUD's edge maps have none);
    logits = -4 + 8 x a blurred edge map + smooth noise, so probabilities ridge along the true edges;
  * PASCAL-like meters for the per-meter table: semseg (21 classes), human_parts (7, mostly background, some
    images entirely 255 as for images without a person) and saliency (2-channel logits, binary labels + 255).

Per-meter table (--meter-images images per meter, --edge-meter-images for the slow boundary meter): each batch is
fed to the before and the after meter in alternating order, every update runs --repeats times and the fastest
repetition counts (the machine is shared; read the ratios). The meters' computed metrics are compared.

End-to-end: "before" runs the old `MultiTaskEvaluator` on the first --before-images images (the old boundary
meter needs 1-5 s/image depending on the edge maps, ~1.4 s on these, so a full 654-image before run would take
15-60 minutes) and its time is EXTRAPOLATED to --images, clearly labelled as such (--before-images equal to
--images measures it instead). "After" runs the current evaluator on the same subset (for the metric comparison
and a like-for-like rate) and then, measured, on all --images images. Timed: every `evaluator.update` plus the
final `compute()`, with a per-task breakdown of the update time. With worker processes each timed update also
waits for the batch's images to be counted (`evaluator.state()`), so the pool's work cannot overlap the untimed
input generation (~0.3 s/image) and drop out of the measurement; the wall time including generation is printed
too. --eval-workers N is passed as `workers=N` if the current
`MultiTaskEvaluator` accepts it (else as the boundary meter's `workers` if that exists, else ignored). The
before/after metrics (per-meter rows and the end-to-end subset) must agree to --tol (max abs difference, default
0: bit-identical); the script exits with status 1 otherwise.

    python benchmarks/eval_speed.py --images 654 --size 425 560 --threads 1 --eval-workers 2

Boundary-only mode (--boundary-densities): per-image `image_boundary_counts` (99 thresholds, NYUD tolerance) on
synthetic NYUD-like edge maps at the given boundary-pixel densities, before (--before) vs after, alternating in one
process, --boundary-repeats times each; prints min and median wall and CPU (process) seconds per image and checks
that the per-threshold counts are identical. The GT is the union of the edge maps of `render_indoor_scene` rooms
(scene 0: 1.9 %, scene 1: 3.4 %, scenes 0+1+4: 6.8 %; other densities add scenes until reached); the prediction is
the GT displaced by a smooth field, a ridge of varying strength around it and smoothed clutter
(--boundary-variant nyud: ~70 % of the pixels pass t = 0.01; dense: ~97 %, the harder case). Pin it to one core:

    taskset -c 1 python benchmarks/eval_speed.py --boundary-densities 0.019,0.034,0.07 --before 16d65db
"""

from __future__ import annotations

import argparse
import inspect
import io
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import degmix_tuning.metrics as after_metrics  # noqa: E402
from degmix_tuning.data.info import get_dataset_info  # noqa: E402

IGNORE = 255
GENERATION_THREADS = os.cpu_count() or 1
NYUD_TASKS = ("semseg", "depth", "normals", "edge")


# ------------------------------------------------------------------------------------------- the "before" code
def load_before(rev: str, workdir: str):
    """Extract degmix_tuning/ at `rev` as package `degmix_tuning_before` under `workdir`; return its metrics module."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "degmix_tuning"],
                             check=True, capture_output=True).stdout
    root = Path(workdir) / "degmix_tuning_before"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".py"):
                continue
            target = root / Path(member.name).relative_to("degmix_tuning")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    # minimal package roots: the revision's own __init__ files import the models, data loaders etc.
    (root / "__init__.py").write_text(f'"""degmix_tuning at {rev}, metrics only (benchmarks/eval_speed.py)."""\n')
    (root / "data" / "__init__.py").write_text("")
    sys.path.insert(0, workdir)
    import importlib

    metrics = importlib.import_module("degmix_tuning_before.metrics")
    info = importlib.import_module("degmix_tuning_before.data.info")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    return metrics, info, commit


# ------------------------------------------------------------------------------------------------- inputs
def _smooth(generator: torch.Generator, channels: int, size: tuple[int, int], cell: int) -> torch.Tensor:
    """[channels, H, W] smooth noise: N(0, 1) on a coarse grid (one node per `cell` pixels), bilinear upsampled."""
    h, w = size
    coarse = torch.randn(1, channels, h // cell + 2, w // cell + 2, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0]


def _cells(generator: torch.Generator, size: tuple[int, int], num_cells: int) -> torch.Tensor:
    """[H, W] int64 Voronoi cell ids, computed at 1/4 resolution and upsampled (nearest)."""
    h, w = size
    hq, wq = (h + 3) // 4, (w + 3) // 4
    seeds = torch.rand(num_cells, 2, generator=generator) * torch.tensor([hq, wq])
    yy, xx = torch.meshgrid(torch.arange(hq) + 0.5, torch.arange(wq) + 0.5, indexing="ij")
    dist = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    ids = dist.argmin(0)
    return ids.repeat_interleave(4, 0).repeat_interleave(4, 1)[:h, :w].contiguous()


def _class_map(generator: torch.Generator, cells: torch.Tensor, num_cells: int, num_classes: int,
               ignore_fraction: float, background: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell classes (Zipf-like, optional background share for class 0) -> ([H, W] label with 255, cell classes)."""
    weights = 1.0 / torch.arange(1, num_classes + 1, dtype=torch.float64)
    if background:
        weights[0] = background * weights[1:].sum() / (1 - background)
    cell_class = torch.multinomial(weights, num_cells, replacement=True, generator=generator)
    ignored = torch.rand(num_cells, generator=generator) < ignore_fraction
    label_of_cell = torch.where(ignored, torch.full_like(cell_class, IGNORE), cell_class)
    return label_of_cell[cells], cell_class


def _logits(generator: torch.Generator, cells: torch.Tensor, cell_class: torch.Tensor, num_classes: int,
            accuracy: float = 0.7) -> torch.Tensor:
    """[C, H, W] float32 logits: smooth noise (std 1.5) + 3 on the predicted class (the true class for `accuracy` of
    the cells). No per-pixel noise: drawing 40 x 425 x 560 Gaussians per image would dominate input generation."""
    size = tuple(cells.shape)
    wrong = torch.rand(len(cell_class), generator=generator) > accuracy
    guess = torch.where(wrong, torch.randint(0, num_classes, cell_class.shape, generator=generator), cell_class)
    logits = _smooth(generator, num_classes, size, 24).mul_(1.5)
    logits.view(num_classes, -1).scatter_add_(0, guess[cells].view(1, -1), torch.full((1, cells.numel()), 3.0))
    return logits


def _border(generator: torch.Generator, size: tuple[int, int]) -> torch.Tensor:
    """[H, W] bool unlabelled border band (NYUD-style), on about half of the images."""
    band = torch.zeros(size, dtype=torch.bool)
    if torch.rand((), generator=generator) < 0.5:
        width = int(torch.randint(4, 12, (), generator=generator))
        band[:width], band[-width:], band[:, :width], band[:, -width:] = True, True, True, True
    return band


def nyud_sample(index: int, size: tuple[int, int], tasks, seed: int) -> tuple[dict, dict]:
    """(outputs, labels) for one image, each value without the batch dim; deterministic in (seed, index)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    num_cells = int(torch.randint(30, 70, (), generator=g))
    cells = _cells(g, size, num_cells)
    semseg, cell_class = _class_map(g, cells, num_cells, 40, 0.06)
    band = _border(g, size)
    semseg[band] = IGNORE
    unlabelled = semseg == IGNORE
    outputs, labels = {}, {}
    if "semseg" in tasks:
        outputs["semseg"], labels["semseg"] = _logits(g, cells, cell_class, 40), semseg
    if "depth" in tasks:
        depth = 2.0 + 6.0 * torch.rand((), generator=g) + 1.2 * _smooth(g, 1, size, 140)[0]
        depth = (depth + 0.8 * torch.randn(num_cells, generator=g)[cells]).clamp_min(0.7)
        missing = (torch.rand(num_cells, generator=g) < 0.04)[cells] | band
        pred = depth * (1.0 + 0.08 * _smooth(g, 1, size, 32)[0]) + 0.05 * torch.randn(size, generator=g)
        outputs["depth"] = pred[None]
        labels["depth"] = torch.where(missing, torch.full_like(depth, IGNORE), depth)[None]
    if "normals" in tasks:
        cell_normal = F.normalize(torch.randn(num_cells, 3, generator=g) + torch.tensor([0.0, 0.0, 1.5]), dim=1)
        normal = F.normalize(cell_normal[cells].permute(2, 0, 1) + 0.1 * _smooth(g, 3, size, 48), dim=0)
        invalid = band | (torch.rand(num_cells, generator=g) < 0.06)[cells]
        noisy = normal + 0.35 * _smooth(g, 3, size, 16) + 0.05 * torch.randn(3, *size, generator=g)
        scale = 1.25 + 0.75 * torch.tanh(_smooth(g, 1, size, 96))
        outputs["normals"] = noisy * scale
        labels["normals"] = torch.where(invalid[None], torch.full_like(normal, IGNORE), normal)
    if "edge" in tasks:
        cls = torch.where(unlabelled & ~band, torch.full_like(semseg, -1), cell_class[cells])
        edge = torch.zeros(size)
        edge[:, 1:] += (cls[:, 1:] != cls[:, :-1]).float()
        edge[1:, :] += (cls[1:, :] != cls[:-1, :]).float()
        edge = (edge > 0).float()
        blur = F.avg_pool2d(F.avg_pool2d(edge[None, None], 5, 1, 2), 5, 1, 2)[0, 0]
        outputs["edge"] = (-4.0 + 8.0 * blur / blur.max().clamp_min(1e-6) + _smooth(g, 1, size, 16)[0])[None]
        labels["edge"] = edge[None]
    return outputs, labels


def pascal_sample(index: int, size: tuple[int, int], tasks, seed: int) -> tuple[dict, dict]:
    """PASCAL-like semseg (21), human_parts (7) and sal for the per-meter table."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + 500_000 + index)
    num_cells = int(torch.randint(20, 50, (), generator=g))
    cells = _cells(g, size, num_cells)
    band = _border(g, size)
    outputs, labels = {}, {}
    if "semseg" in tasks:
        semseg, cell_class = _class_map(g, cells, num_cells, 21, 0.05, background=0.5)
        semseg[band] = IGNORE
        outputs["semseg"], labels["semseg"] = _logits(g, cells, cell_class, 21), semseg
    if "human_parts" in tasks:
        parts, cell_class = _class_map(g, cells, num_cells, 7, 0.03, background=0.7)
        if index % 3 == 2:  # images without a person with parts are entirely 255
            parts.fill_(IGNORE)
        parts[band] = IGNORE
        outputs["human_parts"], labels["human_parts"] = _logits(g, cells, cell_class, 7), parts
    if "sal" in tasks:
        salient_cell = torch.rand(num_cells, generator=g) < 0.3
        sal = salient_cell[cells].long()
        sal[band] = IGNORE
        guess = salient_cell ^ (torch.rand(num_cells, generator=g) < 0.15)
        logit = 3.0 * (guess[cells].float() * 2 - 1) + 1.5 * _smooth(g, 1, size, 24)[0]
        outputs["sal"] = torch.stack([torch.zeros_like(logit), logit])
        labels["sal"] = sal
    return outputs, labels


def batches(sample_fn, tasks, start: int, stop: int, batch: int, size, seed: int):
    """Yield (outputs, labels) batches for images start..stop-1, generated on demand."""
    for first in range(start, stop, batch):
        timed_threads = torch.get_num_threads()
        torch.set_num_threads(GENERATION_THREADS)  # generation is untimed: let it use every core
        try:
            samples = [sample_fn(i, size, tasks, seed) for i in range(first, min(first + batch, stop))]
        finally:
            torch.set_num_threads(timed_threads)
        yield ({t: torch.stack([s[0][t] for s in samples]) for t in tasks},
               {t: torch.stack([s[1][t] for s in samples]) for t in tasks})


# --------------------------------------------------------------------------------- boundary-only (densities)
BOUNDARY_SCENES = {0.019: (0,), 0.034: (1,), 0.07: (0, 1, 4)}  # render_indoor_scene seeds: 1.9 %, 3.4 %, 6.8 %
BOUNDARY_VARIANTS = {  # prediction recipe: (ridge width px, clutter std, bias)
    "nyud": (2.0, 2.5, -4.0),
    "dense": (3.0, 5.0, -2.5),
}


def boundary_image(density: float, size: tuple[int, int], variant: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(prob float64 [H, W], GT bool [H, W]) of one synthetic NYUD-like image near `density` boundary pixels."""
    from scipy import ndimage as ndi

    from degmix_tuning.data.synthetic.render import render_indoor_scene

    scenes = BOUNDARY_SCENES.get(round(density, 3))
    edge = np.zeros(size, dtype=bool)
    if scenes is not None:
        for scene in scenes:
            edge |= render_indoor_scene(scene, size).edge.astype(bool)
    else:
        for scene in range(64):
            if edge.mean() >= density:
                break
            edge |= render_indoor_scene(scene, size).edge.astype(bool)
    width, clutter, bias = BOUNDARY_VARIANTS[variant]
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size[0], :size[1]]
    shift = [22.5 * ndi.gaussian_filter(rng.standard_normal(size), 15) for _ in range(2)]  # misalignment
    moved = ndi.map_coordinates(edge.astype(float), [rows + shift[0], cols + shift[1]], order=1) > 0.5
    strength = ndi.gaussian_filter(rng.random(size), 8)
    strength = (strength - strength.min()) / (np.ptp(strength) + 1e-12)
    logit = (bias + (3 + 6 * strength) * np.exp(-ndi.distance_transform_edt(~moved) / width)
             + 3 * clutter * ndi.gaussian_filter(rng.standard_normal(size), 2))
    return 1 / (1 + np.exp(-logit)), edge


def boundary_speed(args, size) -> None:
    """Per-image boundary counting time at several densities, before vs after (see the module docstring)."""
    import importlib
    import statistics

    from degmix_tuning.metrics.boundary import boundary_thresholds, image_boundary_counts

    thresholds = boundary_thresholds()
    tolerance = get_dataset_info("nyud").edge_tolerance
    with tempfile.TemporaryDirectory(prefix="eval_speed_before_") as workdir:
        _, _, commit = load_before(args.before, workdir)
        old = importlib.import_module("degmix_tuning_before.metrics.boundary").image_boundary_counts
        print(f"boundary counts per image, {size[0]}x{size[1]}, {len(thresholds)} thresholds, tolerance {tolerance}, "
              f"variant {args.boundary_variant}; before = {args.before} ({commit}), after = working tree; "
              f"{args.boundary_repeats} runs each, alternating; load average {load_average()}", flush=True)
        print(f"{'density':>8s} {'t=0.01':>7s} {'before wall min/med':>20s} {'cpu min/med':>14s} "
              f"{'after wall min/med':>19s} {'cpu min/med':>14s} {'cpu min ratio':>13s} {'identical':>9s}")
        failures = []
        for density in (float(d) for d in args.boundary_densities.split(",")):
            prob, gt = boundary_image(density, size, args.boundary_variant, args.seed)
            valid = np.ones_like(gt)
            times = {"before": ([], []), "after": ([], [])}
            counts = {}
            fns = (("before", old), ("after", image_boundary_counts))
            for r in range(args.boundary_repeats):
                for name, fn in (fns if r % 2 == 0 else fns[::-1]):
                    wall, cpu = time.perf_counter(), time.process_time()
                    counts.setdefault(name, []).append(fn(prob, gt, valid, thresholds, tolerance))
                    times[name][0].append(time.perf_counter() - wall)
                    times[name][1].append(time.process_time() - cpu)
            same = all(np.array_equal(c, counts["before"][0]) for c in counts["before"] + counts["after"])
            if not same:
                failures.append(density)
            mm = {k: [f"{min(v):.3f}/{statistics.median(v):.3f}" for v in times[k]] for k in times}
            print(f"{gt.mean():8.2%} {(prob >= thresholds[0]).mean():7.0%} {mm['before'][0]:>20s} "
                  f"{mm['before'][1]:>14s} {mm['after'][0]:>19s} {mm['after'][1]:>14s} "
                  f"{min(times['before'][1]) / min(times['after'][1]):12.2f}x {str(same):>9s}", flush=True)
        print(f"load average at the end: {load_average()}")
        if failures:
            print(f"FAIL: before/after counts differ at densities {failures}")
            raise SystemExit(1)


# ----------------------------------------------------------------------------------------------- helpers
def flatten(results: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                out[f"{name}[{i}]"] = float(v)
        else:
            out[name] = float(value)
    return out


def max_abs_diff(a: dict, b: dict) -> dict[str, float]:
    """Per metric (lists such as iou_per_class folded into one row), max |a - b|; NaN == NaN counts as equal."""
    fa, fb = flatten(a), flatten(b)
    if set(fa) != set(fb):
        raise SystemExit(f"before/after report different metrics: {sorted(set(fa) ^ set(fb))}")
    rows: dict[str, float] = {}
    for key in fa:
        x, y = fa[key], fb[key]
        diff = 0.0 if (x == y or (math.isnan(x) and math.isnan(y))) else abs(x - y)
        if math.isnan(diff):
            diff = math.inf
        row = key.split("[")[0]
        rows[row] = max(rows.get(row, 0.0), diff)
    return rows


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def evaluator_kwargs(cls, workers: int | None, tasks) -> tuple[dict, str]:
    if workers is None:
        return {}, "not requested"
    if "workers" in inspect.signature(cls.__init__).parameters:
        return {"workers": workers}, f"MultiTaskEvaluator(workers={workers})"
    if "edge" in tasks and "workers" in inspect.signature(after_metrics.BoundaryMeter.__init__).parameters:
        return {"meter_kwargs": {"edge": {"workers": workers}}}, f"BoundaryMeter(workers={workers}) via meter_kwargs"
    return {}, f"ignored (--eval-workers {workers}: neither MultiTaskEvaluator nor BoundaryMeter accepts workers)"


def describe_boundary(rev: str) -> str:
    """Which boundary implementation the working tree has: its module docstring's first line, the files that differ
    from `rev`, and whether the evaluator / meter accept `workers`."""
    import degmix_tuning.metrics.boundary as boundary

    changed = []
    for name in ("boundary.py", "matching.py", "thinning.py", "evaluator.py"):
        path = REPO / "degmix_tuning" / "metrics" / name
        old = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:degmix_tuning/metrics/{name}"],
                             capture_output=True).stdout
        if not path.exists() or path.read_bytes() != old:
            changed.append(name)
    workers = [cls.__name__ for cls in (after_metrics.MultiTaskEvaluator, after_metrics.BoundaryMeter)
               if "workers" in inspect.signature(cls.__init__).parameters]
    first_line = (boundary.__doc__ or "").strip().splitlines()[0]
    return (f"current boundary meter: {first_line!r}; files differing from {rev}: {', '.join(changed) or 'none'}; "
            f"accepts workers: {', '.join(workers) or 'none'}")


def close(evaluator) -> None:
    for obj in (evaluator, *getattr(evaluator, "meters", {}).values()):
        fn = getattr(obj, "close", None)
        if callable(fn):
            fn()


# -------------------------------------------------------------------------------------------- per-meter table
def meter_table(before, args, size) -> tuple[list, dict]:
    nyud_info_after = get_dataset_info("nyud")
    specs: list[tuple[str, str, Callable, str]] = [
        # (row, task, meter factory(metrics module), which sample generator)
        ("semseg (NYUD, 40)", "semseg", lambda m: m.SegmentationMeter(40, name="semseg"), "nyud"),
        ("semseg (PASCAL, 21)", "semseg", lambda m: m.SegmentationMeter(21, name="semseg"), "pascal"),
        ("human_parts (7)", "human_parts", lambda m: m.SegmentationMeter(7, name="human_parts"), "pascal"),
        ("normals", "normals", lambda m: m.NormalsMeter(), "nyud"),
        ("depth", "depth", lambda m: m.DepthMeter(), "nyud"),
        ("sal (maxF + per-image mIoU)", "sal", lambda m: m.SaliencyMeter(), "pascal"),
        ("edge (NYUD, 1 process)", "edge", lambda m: m.BoundaryMeter(nyud_info_after.edge_tolerance), "nyud"),
    ]
    wanted = None if args.meters == "all" else set(args.meters.split(","))
    rows, diffs = [], {}
    for row, task, factory, kind in specs:
        if wanted is not None and task not in wanted and row not in wanted:
            continue
        images = args.edge_meter_images if task == "edge" else args.meter_images
        if images <= 0:
            continue
        sample_fn = nyud_sample if kind == "nyud" else pascal_sample
        try:
            rows.append(time_meter(row, task, factory, sample_fn, images, before, args, size))
        except Exception as error:  # e.g. a meter being rewritten in the working tree: report it, keep going
            rows.append((row, images, None, None, {"error": math.inf}))
            print(f"  {row}: FAILED with {type(error).__name__}: {error}", flush=True)
            continue
        diffs[row] = rows[-1][4]
        print(f"  measured {row}: {images} images", flush=True)
    return rows, diffs


def time_meter(row, task, factory, sample_fn, images, before, args, size):
    """One per-meter row: (row, images, before ms/img or None, after ms/img, {metric: max abs diff})."""
    meters = {"before": factory(before) if before else None, "after": factory(after_metrics)}
    times = {"before": 0.0, "after": 0.0}
    warm = True
    for b_index, (outputs, labels) in enumerate(batches(sample_fn, (task,), 0, images, args.batch, size,
                                                        args.seed)):
        pred, label = outputs[task], labels[task]
        if warm:  # first call of each implementation untimed (lazy imports, allocator warm-up)
            for name in meters:
                if meters[name] is not None and task != "edge":
                    factory(before if name == "before" else after_metrics).update(pred, label)
            warm = False
        order = ["before", "after"] if b_index % 2 == 0 else ["after", "before"]
        for name in order:
            meter = meters[name]
            if meter is None:
                continue
            best = math.inf
            repeats = 1 if task == "edge" else args.repeats
            for r in range(repeats):
                target = meter if r == 0 else factory(before if name == "before" else after_metrics)
                start = time.perf_counter()
                target.update(pred, label)
                best = min(best, time.perf_counter() - start)
            times[name] += best
    ms = {k: 1e3 * v / images for k, v in times.items()}
    diff = max_abs_diff(meters["before"].compute(), meters["after"].compute()) if meters["before"] else {}
    return row, images, ms["before"] if meters["before"] else None, ms["after"], diff


# ---------------------------------------------------------------------------------------------- end to end
def time_meter_updates(evaluator) -> dict[str, float]:
    """Wrap each meter's `update` of `evaluator` (instance attribute) to add its seconds to the returned dict."""
    spent: dict[str, float] = {}
    for task, meter in getattr(evaluator, "meters", {}).items():
        def timed(pred, label, _update=meter.update, _task=task):
            t0 = time.perf_counter()
            _update(pred, label)
            spent[_task] = spent.get(_task, 0.0) + time.perf_counter() - t0
        meter.update = timed
    return spent


def run_eval(evaluator, start: int, stop: int, args, size, tasks, also=None, progress: str = "") -> float:
    """Feed images start..stop-1; returns the timed seconds (updates + compute). `also`: [(evaluator, seconds)]
    fed with the same batches right after (used for the before/after subset run)."""
    evaluator.update_seconds_ = time_meter_updates(evaluator)
    for entry in also or []:
        entry[0].update_seconds_ = time_meter_updates(entry[0])
    seconds = 0.0
    done = start
    last_print = time.time()
    for outputs, labels in batches(nyud_sample, tasks, start, stop, args.batch, size, args.seed):
        t0 = time.perf_counter()
        evaluator.update(outputs, labels)
        evaluator.state()  # waits for worker processes: their work must not hide behind the untimed generation
        seconds += time.perf_counter() - t0
        for entry in also or []:
            t0 = time.perf_counter()
            entry[0].update(outputs, labels)
            entry[0].state()
            entry[1] += time.perf_counter() - t0
        done += next(iter(labels.values())).shape[0]
        if progress and time.time() - last_print > 30:
            print(f"  {progress}: {done - start}/{stop - start} images, {seconds:.1f} s timed", flush=True)
            last_print = time.time()
    t0 = time.perf_counter()
    results = evaluator.compute()
    seconds += time.perf_counter() - t0
    evaluator.results_ = results
    for entry in also or []:
        t0 = time.perf_counter()
        entry[0].results_ = entry[0].compute()
        entry[1] += time.perf_counter() - t0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=654, help="end-to-end evaluation size (NYUD val: 654)")
    parser.add_argument("--size", type=int, nargs=2, default=(425, 560), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--eval-workers", type=int, default=None,
                        help="workers=N for the current MultiTaskEvaluator (if it accepts it)")
    parser.add_argument("--before", default="0d85e00", help="git revision of the 'before' metrics")
    parser.add_argument("--skip-before", action="store_true", help="no before/after end-to-end comparison")
    parser.add_argument("--before-images", type=int, default=20,
                        help="images of the end-to-end before run (then extrapolated to --images)")
    parser.add_argument("--tasks", default=",".join(NYUD_TASKS), help="end-to-end tasks (NYUD)")
    parser.add_argument("--meters", default="all",
                        help="per-meter rows: all or a comma list of semseg,human_parts,normals,depth,sal,edge")
    parser.add_argument("--meter-images", type=int, default=10, help="images per meter in the per-meter table")
    parser.add_argument("--edge-meter-images", type=int, default=2, help="images for the boundary meter's row")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per update (fastest counts)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=0.0, help="allowed max abs before/after metric difference")
    parser.add_argument("--boundary-densities", default=None, metavar="D[,D...]",
                        help="boundary-only mode: time image_boundary_counts at these edge-pixel densities "
                             "(e.g. 0.019,0.034,0.07) before vs after, then exit")
    parser.add_argument("--boundary-variant", default="nyud", choices=tuple(BOUNDARY_VARIANTS),
                        help="prediction recipe of the boundary-only mode (dense: ~97%% of pixels above t=0.01)")
    parser.add_argument("--boundary-repeats", type=int, default=5, help="runs per implementation and density")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    unknown = set(tasks) - set(NYUD_TASKS)
    if unknown:
        parser.error(f"--tasks: NYUD has no {sorted(unknown)} (choose from {NYUD_TASKS})")
    print(f"eval_speed: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, torch "
          f"{torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, "
          f"load average {load_average()}")
    print(f"size {size[0]}x{size[1]}, batch {args.batch}, seed {args.seed}")
    if args.boundary_densities:
        boundary_speed(args, size)
        return
    after_cls = after_metrics.MultiTaskEvaluator
    print(describe_boundary(args.before))

    with tempfile.TemporaryDirectory(prefix="eval_speed_before_") as workdir:
        before, before_info, commit = load_before(args.before, workdir)
        print(f"before: degmix_tuning/metrics at {args.before} ({commit}), imported as degmix_tuning_before.metrics")

        # ---------------------------------------------------------------------------- per-meter
        print(f"\nper-meter timing ({args.meter_images} images per meter, {args.edge_meter_images} for edge; "
              f"fastest of {args.repeats} repetitions per batch; 1 process, {args.threads} thread(s)):", flush=True)
        rows, meter_diffs = meter_table(before, args, size)
        failures = []
        print(f"\n{'meter':30s} {'images':>6s} {'before ms/img':>14s} {'after ms/img':>13s} {'speed-up':>9s}  "
              f"max |before - after| over its metrics")
        for row, images, ms_before, ms_after, diff in rows:
            if ms_after is None:
                print(f"{row:30s} {images:6d} {'FAILED (see above)':>28s}")
                failures.append(row)
                continue
            worst = max(diff.values()) if diff else float("nan")
            ratio = f"{ms_before / ms_after:8.1f}x" if ms_before else "      n/a"
            before_text = f"{ms_before:14.2f}" if ms_before is not None else f"{'n/a':>14s}"
            print(f"{row:30s} {images:6d} {before_text} {ms_after:13.2f} {ratio}  {worst:.3g}")

        # ---------------------------------------------------------------------------- end to end
        nyud_after = get_dataset_info("nyud")
        kwargs, workers_note = evaluator_kwargs(after_cls, args.eval_workers, tasks)
        print(f"\nend-to-end NYUD evaluation, tasks {','.join(tasks)}, {args.images} images "
              f"(batch {args.batch}), no model forward; workers: {workers_note}", flush=True)
        subset = 0 if args.skip_before else min(args.before_images, args.images)
        before_seconds = after_subset_seconds = None
        if subset:
            old = before.MultiTaskEvaluator(tasks, before_info.get_dataset_info("nyud"))
            new_subset = after_cls(tasks, nyud_after, **kwargs)
            entry = [new_subset, 0.0]
            print(f"  before and after on images 0..{subset - 1} (each batch to both) ...", flush=True)
            before_seconds = run_eval(old, 0, subset, args, size, tasks, also=[entry], progress="before subset")
            after_subset_seconds = entry[1]
            close(new_subset)
            diffs = max_abs_diff(old.results_, new_subset.results_)
        new = after_cls(tasks, nyud_after, **kwargs)
        print(f"  after on all {args.images} images ...", flush=True)
        wall = time.perf_counter()
        after_seconds = run_eval(new, 0, args.images, args, size, tasks, progress="after")
        wall = time.perf_counter() - wall
        close(new)

        print(f"\n{'end-to-end evaluation':44s} {'images':>6s} {'seconds':>9s} {'s/img':>8s}")
        if subset:
            label = f"EXTRAPOLATED from {subset} images"
            per_image = before_seconds / subset
            print(f"{'before, measured':44s} {subset:6d} {before_seconds:9.1f} {per_image:8.3f}")
            print(f"{'after, measured (same images)':44s} {subset:6d} {after_subset_seconds:9.1f} "
                  f"{after_subset_seconds / subset:8.3f}")
            if subset != args.images:
                print(f"{'before, ' + label:44s} {args.images:6d} {per_image * args.images:9.1f} {per_image:8.3f}")
        print(f"{'after, measured':44s} {args.images:6d} {after_seconds:9.1f} {after_seconds / args.images:8.3f}")
        if subset:
            print(f"end-to-end speed-up (before per-image rate / after full-run rate): "
                  f"{(before_seconds / subset) / (after_seconds / args.images):.1f}x")
        print("where the time goes (ms/img inside evaluator.update, per task):")
        runs = [("after, all images", new, args.images)]
        if subset:
            runs = [("before, subset", old, subset), ("after, subset", new_subset, subset)] + runs
        for name, evaluator, count in runs:
            spent = getattr(evaluator, "update_seconds_", {})
            print(f"  {name:20s} " + ", ".join(f"{t} {1e3 * spent.get(t, 0.0) / count:.1f}" for t in tasks))
        target = 180.0
        print(f"target after <= {target:.0f} s ({args.images} images): "
              f"{'PASS' if after_seconds <= target else 'FAIL'} ({after_seconds:.1f} s timed, "
              f"{wall:.1f} s wall incl. input generation)")

        print("\nafter metrics (all images):")
        for task, res in new.results_.items():
            shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in res.items()
                     if not isinstance(v, (list, tuple))}
            print(f"  {task}: {shown}")

        print("\nbefore vs after, max |difference| per metric:")
        for row, diff in meter_diffs.items():
            text = ", ".join(f"{k} {v:.3g}" for k, v in diff.items())
            print(f"  per-meter {row}: {text}")
            failures += [f"{row}.{k}" for k, v in diff.items() if not v <= args.tol]
        if subset:
            for task in tasks:
                text = ", ".join(f"{k.split('.', 1)[1]} {v:.3g}" for k, v in diffs.items() if k.startswith(task + "."))
                print(f"  end-to-end ({subset} images) {task}: {text}")
            failures += [k for k, v in diffs.items() if not v <= args.tol]
        else:
            print("  end-to-end: skipped (--skip-before)")
        print(f"load average at the end: {load_average()}")
        if failures:
            print(f"\nFAIL: before/after metrics differ by more than --tol {args.tol}: {failures}")
            raise SystemExit(1)
        print(f"\nOK: before/after metrics agree (max abs difference <= {args.tol})")


if __name__ == "__main__":
    main()
