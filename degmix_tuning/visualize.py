"""Turning predictions into pictures: colourised segmentation, depth and normal maps, side by side with the input."""

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


def colorize_scalar(values: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str = "magma_r"):
    """[H, W] floats (depth, probabilities) -> [H, W, 3] uint8 through a matplotlib colour map."""
    from matplotlib import colormaps

    v = values.astype(np.float64)
    finite = np.isfinite(v)
    lo = float(np.min(v[finite])) if vmin is None and finite.any() else (vmin or 0.0)
    hi = float(np.max(v[finite])) if vmax is None and finite.any() else (vmax or 1.0)
    norm = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    return (colormaps[cmap](norm)[..., :3] * 255).astype(np.uint8)


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


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Concatenate [H, W, 3] uint8 panels horizontally with white gaps."""
    h = max(p.shape[0] for p in panels)
    parts = []
    for i, p in enumerate(panels):
        if p.shape[0] < h:
            p = np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255)
        parts.append(p)
        if i < len(panels) - 1:
            parts.append(np.full((h, gap, 3), 255, dtype=np.uint8))
    return np.concatenate(parts, axis=1)
