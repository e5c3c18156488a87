"""Turning predictions into pictures: colourised segmentation, depth and normal maps, and the labelled figure
`predict` saves (input, each task's prediction, its ground truth; shared depth scale in metres, class legends)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


IGNORE_COLOR = (0, 0, 0)  # label 255 (unlabelled / ignored): the only dark colour of the palette
_MIN_LIGHTNESS = 35.0  # CIELAB L* of every class colour: nothing but "no label" may read as black


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] sRGB (uint8 or 0..1 floats) -> CIELAB (D65), to measure how different two colours look."""
    c = np.asarray(rgb, dtype=np.float64)
    c = c / 255.0 if np.asarray(rgb).dtype == np.uint8 else c
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=1)
def _class_colors() -> np.ndarray:
    """255 class colours, each as far as possible (CIELAB distance) from black and from every earlier one: greedy
    farthest-point picks over a 16-level sRGB grid with L* >= 35. So the first N classes of any dataset (NYUD's
    40, PASCAL's 21, its 7 parts) are mutually distinct and none looks like the black of "no label"."""
    levels = np.linspace(0, 255, 16)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid / 255.0)
    keep = lab[:, 0] >= _MIN_LIGHTNESS
    grid, lab = grid[keep], lab[keep]
    nearest = np.linalg.norm(lab - srgb_to_lab(np.array(IGNORE_COLOR, np.uint8)), axis=1)
    picked = []
    for _ in range(255):
        i = int(np.argmax(nearest))
        picked.append(grid[i])
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[i], axis=1))
    return np.round(np.array(picked)).astype(np.uint8)


def palette(n: int = 256) -> np.ndarray:
    """[n, 3] uint8 colours of class ids 0..n-1 (`_class_colors`), with id 255 ("no label", ignored) black."""
    pal = np.zeros((max(n, 256), 3), dtype=np.uint8)
    pal[:255] = _class_colors()
    pal[255] = IGNORE_COLOR
    return pal[:n]


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """[H, W] class ids (255 ignore) -> [H, W, 3] uint8."""
    return palette()[np.clip(labels, 0, 255).astype(np.int64)]


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """[3, H, W] or [H, W, 3] unit normals -> uint8 RGB with 255*(n+1)/2 (the reference saving convention)."""
    n = normals if normals.shape[-1] == 3 else np.moveaxis(normals, 0, -1)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.maximum(norm, 1e-12)
    return np.clip(255.0 * (n + 1.0) / 2.0, 0, 255).astype(np.uint8)


def denormalize_image(image: np.ndarray, mean, std) -> np.ndarray:
    """[3, H, W] normalised float -> [H, W, 3] uint8."""
    img = image.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


_PANEL_INCHES = 3.2  # every panel is drawn this wide, whatever the image size, so small images stay readable
LEGEND_POINTS = 8.5  # class legends: 3.7 % of a panel's width per line of text, at any image size (titles are 9)


_SEG_TASKS = ("semseg", "human_parts")


def _legend_inches(pred: np.ndarray, gt: np.ndarray | None, max_legend: int) -> float:
    """Height of a class legend (2 columns of LEGEND_POINTS text): one line per two shown classes (+ "more")."""
    shown = np.concatenate([np.asarray(v).astype(np.int64).ravel() for v in (pred, gt) if v is not None])
    n = len(np.unique(shown[shown != 255]))
    lines = int(np.ceil((min(n, max_legend) + (n > max_legend)) / 2))
    return 0.1 + lines * 1.45 * LEGEND_POINTS / 72


def prediction_figure(path, image: np.ndarray, preds: dict[str, np.ndarray], labels: dict[str, np.ndarray] | None = None,
                      class_names: dict[str, tuple[str, ...]] | None = None,
                      max_legend: int = 12) -> dict[str, tuple[float, float]]:
    """Save a labelled figure: row 1 input + predictions, row 2 (when `labels`) ground truth under each prediction.

    image: [H, W, 3] uint8. preds: task -> class ids [H, W], probabilities [H, W] / [1, H, W], depth [1, H, W] (m),
    normals [3, H, W]. labels: task -> the dataset's label arrays (255 = ignore). Depth prediction and ground truth
    share one colour scale with a colour bar in metres; segmentation panels get a legend of the classes they show.
    Returns the colour scale (low, high) used per scalar task.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    labels = {t: v for t, v in (labels or {}).items() if t in preds}
    tasks = list(preds)
    rows, cols = (2 if labels else 1), 1 + len(tasks)
    h, w = image.shape[:2]
    panel_h = _PANEL_INCHES * h / w
    legend_h = max([_legend_inches(preds[t], labels.get(t), max_legend) for t in tasks if t in _SEG_TASKS],
                   default=0.0)  # constrained layout makes the room under the panels
    dpi = max(100, int(np.ceil(1.1 * w / _PANEL_INCHES)))  # a panel (inside the layout's margins) >= the image
    fig, axes = plt.subplots(rows, cols, figsize=(cols * _PANEL_INCHES, rows * (panel_h + 0.3) + legend_h), dpi=dpi,
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=9)
    pal = palette() / 255.0
    scales: dict[str, tuple[float, float]] = {}
    for j, task in enumerate(tasks, start=1):
        pred, gt = preds[task], labels.get(task)
        cells = [(axes[0, j], pred, "prediction")] + ([(axes[1, j], gt, "ground truth")] if gt is not None else [])
        if task in _SEG_TASKS:
            for ax, values, what in cells:
                ax.imshow(colorize_labels(values.astype(np.int64).squeeze()), interpolation="nearest")
                ax.set_title(f"{task} {what}", fontsize=9)
            shown = np.concatenate([np.asarray(v).astype(np.int64).ravel() for _, v, _ in cells])
            ids, counts = np.unique(shown[shown != 255], return_counts=True)
            names = (class_names or {}).get(task, ())
            top = ids[np.argsort(-counts)][:max_legend]
            handles = [Patch(facecolor=pal[i], edgecolor="black", linewidth=0.3,
                             label=names[i] if i < len(names) else f"class {i}") for i in sorted(top)]
            if len(ids) > max_legend:
                handles.append(Patch(facecolor="white", edgecolor="white", label=f"+{len(ids) - max_legend} more"))
            cells[-1][0].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2,
                                fontsize=LEGEND_POINTS, frameon=False, handlelength=1.2, columnspacing=1.0)
        elif task == "normals":
            for ax, values, what in cells:
                valid = (values != 255).all(axis=0) if what == "ground truth" else np.ones(values.shape[1:], bool)
                rgb = normals_to_rgb(np.where(valid, values, 0.0))
                rgb[~valid] = 255
                ax.imshow(rgb)
                ax.set_title(f"normals {what}", fontsize=9)
        else:
            is_depth = task == "depth"
            maps = []
            for ax, values, what in cells:
                v = np.asarray(values, dtype=np.float64).squeeze()
                valid = np.isfinite(v) & ((v != 255) & (v > 0) if is_depth and what == "ground truth" else True)
                if not is_depth and what == "ground truth":
                    valid &= v != 255
                maps.append((ax, np.where(valid, v, np.nan), what))
            if is_depth:  # one scale for prediction and ground truth
                finite = np.concatenate([m[np.isfinite(m)] for _, m, _ in maps])
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                cmap, unit = "magma_r", "depth (m)"
            else:
                lo, hi, cmap, unit = 0.0, 1.0, "gray", f"{task} probability"
            scales[task] = (lo, hi)
            cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
            for ax, m, what in maps:
                shown = ax.imshow(m, cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_title(f"{task} {what}", fontsize=9)
            bar = fig.colorbar(shown, ax=[a for a, _, _ in maps], shrink=0.9, aspect=25, pad=0.01)
            bar.set_label(unit + (" (both rows)" if len(maps) > 1 else ""), fontsize=8)
            bar.ax.tick_params(labelsize=7)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return scales
