"""Boundary detection: ODS / OIS F-measure, an APPROXIMATION of SEISM (Pont-Tuset) written in numpy/scipy.

What it does, per image and per threshold t (default 99 thresholds 0.01..0.99 = MTI-Net's no-NMS protocol;
`thresholds="hed"` gives SEISM's 101 HED thresholds 0.001, 0.01..0.99, 0.999):
  1. prob = sigmoid(logit); pixels whose label is 255 are removed from prediction and ground truth;
  2. binarise prob >= t and thin the result to 1-pixel curves (`thinning.thin`, the bwmorph 'thin' algorithm);
     the GT boundary map (label == 1) is thinned once as SEISM does;
  3. match predicted to GT boundary pixels one-to-one within maxDist x image diagonal (maxDist from
     `DatasetInfo.edge_tolerance`: 0.011 NYUD, 0.0075 PASCAL) with a MAXIMUM-CARDINALITY bipartite matching
     (pixel pairs within the radius + augmenting paths, `matching.py`), standing in for BSDS `correspondPixels`'
     min-cost assignment (which, with its large outlier cost, also maximises the number of matches);
  4. add cntR = matched GT pixels, sumR = GT pixels, cntP = matched predicted pixels, sumP = predicted pixels.
ODS-F = max_t 2PR/(P+R) with P = sum cntP / sum sumP and R = sum cntR / sum sumR over the set (no interpolation
between thresholds). OIS picks each image's best threshold and pools the counts at those thresholds.

Known differences from SEISM: no edge NMS (the InvPT/ATRC tool runs Piotr's NMS first), no quantisation of the
prediction to an 8-bit PNG, a deterministic matcher (correspondPixels is randomised, ~0.001 noise), distances
<= radius count as matched, and the diagonal is that of the bounding box of non-ignored pixels (equal to the image
diagonal unless the label carries 255 padding, in which case it is the unpadded image's diagonal). Label the
number "odsF (SEISM-style approx.)" when comparing with published tables.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes
from .matching import maximum_matching_size
from .thinning import thin


def boundary_thresholds(kind: str | int | Sequence[float] = "default") -> np.ndarray:
    """'default' / 99: 0.01..0.99 (MTI-Net, no NMS); 'hed' / 101: 0.001, 0.01..0.99, 0.999 (SEISM HED.txt);
    or an explicit increasing sequence in (0, 1) (fewer thresholds = proportionally faster, coarser ODS)."""
    if isinstance(kind, str) or isinstance(kind, int):
        if kind in ("default", 99):
            return np.arange(1, 100) / 100.0
        if kind in ("hed", 101):
            return np.concatenate([[0.001], np.arange(1, 100) / 100.0, [0.999]])
        raise ValueError(f"unknown boundary threshold set {kind!r}; use 'default' (99 values), 'hed' (101 values) "
                         "or a list of increasing thresholds in (0, 1)")
    values = np.asarray(kind, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or (values <= 0).any() or (values >= 1).any() or (
            np.diff(values) <= 0).any():
        raise ValueError(f"boundary thresholds must be a non-empty increasing list inside (0, 1), got {kind!r}")
    return values


class BoundaryMatcher:
    """Maximum one-to-one matching of predicted boundary pixels to one image's GT boundary pixels within a radius.

    Candidate pairs come from the integer pixel offsets inside the radius (distance <= radius), looked up in an
    image of GT pixel ids; predicted pixels farther than the radius from every GT pixel are dropped up front.
    The maximum matching is `matching.maximum_matching` (scipy's `maximum_bipartite_matching` can take
    exponential time on such chain-like graphs, see matching.py).
    """

    def __init__(self, gt_map: np.ndarray, radius: float):
        self.radius = float(radius)
        reach = int(math.floor(self.radius))
        dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
        disk = dy ** 2 + dx ** 2 <= self.radius ** 2 + 1e-9
        height, width = gt_map.shape
        self.pad = reach
        self.stride = width + 2 * reach
        nearest_first = np.argsort((dy ** 2 + dx ** 2)[disk], kind="stable")  # greedy start proposes nearest GT
        self.offsets = (dy[disk] * self.stride + dx[disk]).astype(np.int64)[nearest_first]
        self.num_gt = int(gt_map.sum())
        ids = np.full((height + 2 * reach, self.stride), -1, dtype=np.int64)
        ids[reach:reach + height, reach:reach + width][gt_map] = np.arange(self.num_gt)
        self.gt_ids = ids.ravel()
        self.near_gt = binary_dilation(gt_map, structure=disk) if self.num_gt else np.zeros_like(gt_map)

    def count(self, pred_map: np.ndarray) -> int:
        """Number of matched pairs for a boolean prediction map of the GT's shape."""
        rows, cols = np.nonzero(pred_map & self.near_gt)
        if len(rows) == 0:
            return 0
        centres = (rows + self.pad) * self.stride + (cols + self.pad)
        neighbours = self.gt_ids[centres[:, None] + self.offsets[None, :]]  # [num_pred, num_offsets], nearest first
        pred_ids, ranks = np.nonzero(neighbours >= 0)
        gt_ids = neighbours[pred_ids, ranks]
        if len(rows) <= self.num_gt:  # the matcher is fastest with the smaller side as its "left" vertices
            indptr = np.concatenate([[0], np.cumsum(np.bincount(pred_ids, minlength=len(rows)))])
            return maximum_matching_size(indptr, gt_ids, self.num_gt)
        order = np.lexsort((ranks, gt_ids))  # GT-major, each GT pixel's candidates still nearest first
        indptr = np.concatenate([[0], np.cumsum(np.bincount(gt_ids, minlength=self.num_gt))])
        return maximum_matching_size(indptr, pred_ids[order], len(rows))


def match_count(pred_map: np.ndarray, gt_map: np.ndarray, radius: float) -> int:
    """Size of a maximum one-to-one matching between the True pixels of two maps, pairs at most `radius` apart."""
    return BoundaryMatcher(np.asarray(gt_map, dtype=bool), radius).count(np.asarray(pred_map, dtype=bool))


def image_boundary_counts(prob: np.ndarray, gt: np.ndarray, valid: np.ndarray, thresholds: np.ndarray,
                          max_dist: float, thin_gt: bool = True) -> np.ndarray:
    """Counts for one image: array [T, 4] of (cntR, sumR, cntP, sumP) per threshold (int64).

    prob: [H, W] boundary probability; gt: [H, W] bool boundary map; valid: [H, W] bool (False = ignored).
    """
    counts = np.zeros((len(thresholds), 4), dtype=np.int64)
    if not valid.any():
        return counts
    rows, cols = np.nonzero(valid)
    diagonal = math.hypot(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    gt_map = thin(gt & valid) if thin_gt else (gt & valid)
    matcher = BoundaryMatcher(gt_map, max_dist * diagonal)
    prob = np.where(valid, prob, -np.inf)
    # Masks are nested in t, so an unchanged pixel count means an identical mask: thin and match it once.
    ordered = np.sort(prob, axis=None)
    sizes = ordered.size - np.searchsorted(ordered, thresholds, side="left")  # pixels with prob >= t
    done: dict[int, tuple[int, int]] = {}
    for k, size in enumerate(sizes.tolist()):
        if size not in done:
            pred_map = thin(prob >= thresholds[k])
            done[size] = (matcher.count(pred_map), int(pred_map.sum()))
        matched, num_pred = done[size]
        counts[k] = (matched, matcher.num_gt, matched, num_pred)
    return counts


def f_measure(cnt_r: np.ndarray, sum_r: np.ndarray, cnt_p: np.ndarray, sum_p: np.ndarray):
    """(P, R, F) arrays with 0 where a denominator is 0 (the BSDS convention)."""
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(a, dtype=np.float64) for a in (cnt_r, sum_r, cnt_p, sum_p))
    precision = np.divide(cnt_p, sum_p, out=np.zeros_like(cnt_p), where=sum_p > 0)
    recall = np.divide(cnt_r, sum_r, out=np.zeros_like(cnt_r), where=sum_r > 0)
    total = precision + recall
    f = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return precision, recall, f


class BoundaryMeter(Meter):
    """State: per-threshold cntR/sumR/cntP/sumP, the OIS counts and the image count (all int64)."""

    def __init__(self, max_dist: float, thresholds: str | int | Sequence[float] = "default", thin_gt: bool = True,
                 name: str = "edge"):
        if not 0 < max_dist < 1:
            raise ValueError(f"{name}: max_dist is a fraction of the image diagonal (0.011 NYUD, 0.0075 PASCAL), "
                             f"got {max_dist}")
        self.name = name
        self.max_dist = float(max_dist)
        self.thresholds = boundary_thresholds(thresholds)
        self.thin_gt = thin_gt
        super().__init__()

    def _init_state(self) -> dict[str, Tensor]:
        n = len(self.thresholds)
        return {
            "counts": torch.zeros(n, 4, dtype=torch.int64),  # columns: cntR, sumR, cntP, sumP
            "ois_counts": torch.zeros(4, dtype=torch.int64),
            "num_images": torch.zeros((), dtype=torch.int64),
        }

    def update(self, pred: Tensor, label: Tensor) -> None:
        """pred: [B, 1, H, W] logits; label: [B, 1, H, W] (or [B, H, W]) in {0, 1}, 255 = ignore."""
        pred, label = check_batch_shapes(self.name, pred, label, 1, 1)
        self._follow(pred)
        prob = torch.sigmoid(pred.detach().float())[:, 0].cpu().numpy()
        gt = label[:, 0].cpu().numpy()
        valid = gt != IGNORE_INDEX
        if not np.isin(gt[valid], (0, 1)).all():
            values = np.unique(gt[valid][~np.isin(gt[valid], (0, 1))])[:10].tolist()
            raise ValueError(f"{self.name}: boundary labels must be 0, 1 or {IGNORE_INDEX}, found {values}")
        batch_counts = np.zeros((len(self.thresholds), 4), dtype=np.int64)
        ois = np.zeros(4, dtype=np.int64)
        for i in range(prob.shape[0]):
            counts = image_boundary_counts(prob[i], gt[i] == 1, valid[i], self.thresholds, self.max_dist,
                                           self.thin_gt)
            batch_counts += counts
            _, _, f = f_measure(*counts.T)
            ois += counts[int(np.argmax(f))]
        self._add("counts", torch.from_numpy(batch_counts))
        self._add("ois_counts", torch.from_numpy(ois))
        self._add("num_images", torch.tensor(prob.shape[0]))

    def compute(self) -> dict:
        counts = self._state["counts"].cpu().numpy()
        precision, recall, f = f_measure(*counts.T)
        best = int(np.argmax(f))
        _, _, ois_f = f_measure(*self._state["ois_counts"].cpu().numpy())
        return {
            "odsf": float(f[best]),
            "odsf_threshold": float(self.thresholds[best]),
            "ods_precision": float(precision[best]),
            "ods_recall": float(recall[best]),
            "oisf": float(ois_f),
            "num_images": int(self._state["num_images"]),
        }


__all__ = [
    "BoundaryMatcher", "BoundaryMeter", "boundary_thresholds", "f_measure", "image_boundary_counts", "match_count",
]
