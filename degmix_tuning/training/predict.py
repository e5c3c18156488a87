"""Saving predictions: one picture per image (input | each task) plus raw files in the formats the reference
evaluation reads (SEISM and ATRC/MTI-Net scripts):

- semseg / human_parts: `<task>/<id>.png` uint8 class ids;  sal: `sal/<id>.png` = 255*P(salient) (uint8, truncated)
- edge: `edge/<id>.png` = 255*sigmoid (uint8, truncated) — what SEISM reads; normals: `normals/<id>.png` = 255*(n+1)/2
- depth: `depth/<id>.npy` (ATRC) and `depth/<id>.mat` with key `depth` (MTI-Net/InvPT), metres
Padding added for batching is cropped away (centre crop back to the native size) before saving.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..tasks import get_task
from ..visualize import colorize_labels, colorize_scalar, denormalize_image, normals_to_rgb, side_by_side


def centre_crop(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Undo centre padding: [..., Hp, Wp] -> [..., H, W] with top = (Hp-H)//2, left = (Wp-W)//2."""
    hp, wp = array.shape[-2:]
    h, w = size
    top, left = (hp - h) // 2, (wp - w) // 2
    return array[..., top : top + h, left : left + w]


def postprocess(task: str, logits: torch.Tensor) -> np.ndarray:
    """[C, H, W] raw output -> the task's prediction as numpy ([H, W] ids / probabilities, [1|3, H, W] values)."""
    pred = get_task(task).postprocess(logits[None].float())[0]
    return pred.cpu().numpy()


def label_panel(task: str, label: np.ndarray) -> np.ndarray:
    """A ground-truth label (tasks.py convention, 255 = ignore) as an [H, W, 3] picture for the side-by-side view."""
    if task in ("semseg", "human_parts", "sal"):
        return colorize_labels(label.astype(np.int64))
    if task == "normals":
        valid = (label != 255).all(axis=0)
        return np.where(valid[..., None], normals_to_rgb(np.where(valid, label, 0.0)), 255).astype(np.uint8)
    values = label[0].astype(np.float64)
    valid = values != 255
    if task == "depth":
        valid &= values > 0
    picture = colorize_scalar(np.where(valid, values, np.nan), 0.0 if task == "edge" else None,
                              1.0 if task == "edge" else None, cmap="gray" if task == "edge" else "magma_r")
    picture[~valid] = 255
    return picture


def save_prediction(out_dir: Path, sample_id: str, image: np.ndarray, preds: dict[str, np.ndarray], mean, std,
                    labels: dict[str, np.ndarray] | None = None) -> Path:
    """Write the raw per-task files and `<out>/vis/<id>.png` (input | predictions | ground truth, when `labels`
    are given). `image` is [3, H, W] normalised."""
    from scipy.io import savemat

    panels = [denormalize_image(image, mean, std)]
    for task, p in preds.items():
        folder = out_dir / task
        folder.mkdir(parents=True, exist_ok=True)
        if task in ("semseg", "human_parts"):
            ids = p.astype(np.uint8)
            Image.fromarray(ids).save(folder / f"{sample_id}.png")
            panels.append(colorize_labels(ids))
        elif task in ("sal", "edge"):
            prob = p[0] if p.ndim == 3 else p
            Image.fromarray((255.0 * prob).astype(np.uint8)).save(folder / f"{sample_id}.png")
            panels.append(colorize_scalar(prob, 0.0, 1.0, cmap="gray"))
        elif task == "normals":
            rgb = normals_to_rgb(p)
            Image.fromarray(rgb).save(folder / f"{sample_id}.png")
            panels.append(rgb)
        elif task == "depth":
            depth = p[0].astype(np.float32)
            np.save(folder / f"{sample_id}.npy", depth)
            savemat(folder / f"{sample_id}.mat", {"depth": depth})
            panels.append(colorize_scalar(depth))
        else:
            np.save(folder / f"{sample_id}.npy", p)
    for task, label in (labels or {}).items():
        panels.append(label_panel(task, label))
    vis = out_dir / "vis"
    vis.mkdir(parents=True, exist_ok=True)
    path = vis / f"{sample_id}.png"
    Image.fromarray(side_by_side(panels)).save(path)
    return path
