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
from ..visualize import denormalize_image, normals_to_rgb, prediction_figure


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


def save_prediction(out_dir: Path, sample_id: str, image: np.ndarray, preds: dict[str, np.ndarray], mean, std,
                    labels: dict[str, np.ndarray] | None = None,
                    class_names: dict[str, tuple[str, ...]] | None = None) -> Path:
    """Write the raw per-task files and `<out>/vis/<id>.png` (a labelled figure: input, predictions and, when
    `labels` are given, the ground truth under each prediction). `image` is [3, H, W] normalised."""
    from scipy.io import savemat

    for task, p in preds.items():
        folder = out_dir / task
        folder.mkdir(parents=True, exist_ok=True)
        if task in ("semseg", "human_parts"):
            Image.fromarray(p.astype(np.uint8)).save(folder / f"{sample_id}.png")
        elif task in ("sal", "edge"):
            prob = p[0] if p.ndim == 3 else p
            Image.fromarray((255.0 * prob).astype(np.uint8)).save(folder / f"{sample_id}.png")
        elif task == "normals":
            Image.fromarray(normals_to_rgb(p)).save(folder / f"{sample_id}.png")
        elif task == "depth":
            depth = p[0].astype(np.float32)
            np.save(folder / f"{sample_id}.npy", depth)
            savemat(folder / f"{sample_id}.mat", {"depth": depth})
        else:
            np.save(folder / f"{sample_id}.npy", p)
    vis = out_dir / "vis"
    vis.mkdir(parents=True, exist_ok=True)
    path = vis / f"{sample_id}.png"
    prediction_figure(path, denormalize_image(image, mean, std), preds, labels, class_names)
    return path
