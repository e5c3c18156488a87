"""Turning predictions into pictures: colourised segmentation, depth and normal maps, and the labelled figure
`predict` saves (input, each task's prediction, its ground truth; shared depth scale in metres, class legends)."""

from __future__ import annotations

import numpy as np


def palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC bit-interleaved colour map: [n, 3] uint8, class 0 black, 255 ignore stays distinguishable."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    pal[255] = (224, 224, 192)
    return pal


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
    legend_h = 0.5 if any(t in ("semseg", "human_parts") for t in tasks) else 0.0  # constrained layout makes room
    fig, axes = plt.subplots(rows, cols, figsize=(cols * _PANEL_INCHES, rows * (panel_h + 0.3) + legend_h), dpi=100,
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
        if task in ("semseg", "human_parts"):
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
            cells[-1][0].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=6,
                                frameon=False, handlelength=1.0, columnspacing=0.8)
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
