"""Boundary detection: ODS / OIS F-measure, an APPROXIMATION of SEISM (Pont-Tuset) in numpy/scipy/numba.

What it does, per image and per threshold t (default 99 thresholds 0.01..0.99 = MTI-Net's no-NMS protocol;
`thresholds="hed"` gives SEISM's 101 HED thresholds 0.001, 0.01..0.99, 0.999):
  1. prob = sigmoid(logit); pixels whose label is 255 are removed from prediction and ground truth;
  2. binarise prob >= t and thin the result to 1-pixel curves (`thinning.py`, the bwmorph 'thin' algorithm);
     the GT boundary map (label == 1) is thinned once as SEISM does;
  3. match predicted to GT boundary pixels one-to-one within maxDist x image diagonal (maxDist from
     `DatasetInfo.edge_tolerance`: 0.011 NYUD, 0.0075 PASCAL) with a MAXIMUM-CARDINALITY bipartite matching
     (pixel pairs within the radius, `matching.py`), standing in for BSDS `correspondPixels`'
     min-cost assignment (which, with its large outlier cost, also maximises the number of matches);
  4. add cntR = matched GT pixels, sumR = GT pixels, cntP = matched predicted pixels, sumP = predicted pixels.
ODS-F = max_t 2PR/(P+R) with P = sum cntP / sum sumP and R = sum cntR / sum sumR over the set (no interpolation
between thresholds). OIS picks each image's best threshold and pools the counts at those thresholds.

The per-threshold counts are exactly those of thinning and matching every threshold from scratch (the tests
compare against a frozen copy of that implementation), but the work is shared across thresholds
(`image_boundary_counts`): all distinct masks are thinned together, 64 pixels per machine word, and one maximum
matching is carried from the highest threshold down and repaired where the thinned map changed (a compiled
loop, `matching.py`). Cost with 99 thresholds, one core, 425x560: ~0.09-0.24 s per image on synthetic NYUD-like
data (1.9-7 % boundary pixels; `benchmarks/eval_speed.py --boundary-densities`), up to ~1 s when nearly every pixel
passes the low thresholds and 10-20 % of the pixels are GT boundary (thinning then dominates); `workers` spreads
images over processes.

Known differences from SEISM: no edge NMS (the InvPT/ATRC tool runs Piotr's NMS first), no quantisation of the
prediction to an 8-bit PNG, a deterministic matcher (correspondPixels is randomised, ~0.001 noise), distances
<= radius count as matched, and the diagonal is that of the bounding box of non-ignored pixels (equal to the image
diagonal unless the label carries 255 padding, in which case it is the unpadded image's diagonal). Label the
number "odsF (SEISM-style approx.)" when comparing with published tables.

A set without a single ground-truth boundary pixel has no recall, so every F is undefined: the metrics are then
missing (None, with the reason; the BSDS convention would print 0).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import IGNORE_INDEX, Meter, check_batch_shapes, missing_result
from .matching import DynamicMatching
from .thinning import PackedLayers, thin, thin_layers


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


def _disk_offsets(radius: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(reach, dy, dx) of the integer offsets with distance <= radius, nearest first (ties in raster order)."""
    reach = int(math.floor(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    inside = dy ** 2 + dx ** 2 <= radius ** 2 + 1e-9
    nearest_first = np.argsort((dy ** 2 + dx ** 2)[inside], kind="stable")
    return reach, dy[inside][nearest_first], dx[inside][nearest_first]


def _near_words(packed: PackedLayers, gt_map: np.ndarray, radius: float) -> np.ndarray:
    """[H, row_words] words of the pixels within `radius` of a GT pixel (a disk dilation done on packed rows).

    The disk is the union over row offsets dy of horizontal runs |dx| <= w(dy): dilate the GT rows horizontally
    one pixel at a time and OR each run width into the rows dy away.
    """
    reach, dy, dx = _disk_offsets(radius)
    half_width = {int(d): int(np.abs(dx[dy == d]).max()) for d in np.unique(dy)}
    run = packed.pack_rows(gt_map)
    valid = packed.pack_rows(np.ones((1, packed.width), dtype=bool))  # keeps the spare bits after column W-1 zero
    near = np.zeros_like(run)
    height = packed.height
    for width in range(max(half_width.values()) + 1):
        if width:
            right = run >> np.uint64(1)
            right[:, :-1] |= run[:, 1:] << np.uint64(63)
            left = run << np.uint64(1)
            left[:, 1:] |= run[:, :-1] >> np.uint64(63)
            run = (run | right | left) & valid
        for d, w in half_width.items():
            if w == width and abs(d) < height:
                if d >= 0:
                    near[:height - d] |= run[d:]
                else:
                    near[-d:] |= run[:height + d]
    return near


def _word_bits(words: np.ndarray) -> np.ndarray:
    """Bit positions (word index * 64 + bit) of the set bits of a 1-D uint64 array, ascending."""
    nonzero = np.flatnonzero(words)
    position = np.flatnonzero(np.unpackbits(words[nonzero].astype("<u8").view(np.uint8), bitorder="little"))
    return nonzero[position >> 6] * 64 + (position & 63)


class BoundaryGraph:
    """Candidate pairs of one image: GT boundary pixels x predicted pixels within the radius of one.

    `candidates` are the only predicted pixels that ever need a vertex ([N, 2] rows/cols, e.g. the union of every
    threshold's thinned map near the GT); candidate i is vertex i. Pairs come from the integer pixel offsets
    inside the radius (distance <= radius), looked up in an image of candidate ids around each GT pixel.
    """

    def __init__(self, gt_map: np.ndarray, radius: float, candidates: np.ndarray):
        self.radius = float(radius)
        reach, dy, dx = _disk_offsets(self.radius)
        height, width = gt_map.shape
        stride = width + 2 * reach
        ids = np.full((height + 2 * reach) * stride, -1, dtype=np.int32)
        rows, cols = candidates[:, 0], candidates[:, 1]
        ids[(rows + reach) * stride + cols + reach] = np.arange(len(candidates))
        gt_rows, gt_cols = np.nonzero(gt_map)
        self.num_gt = len(gt_rows)
        centres = (gt_rows + reach) * stride + gt_cols + reach
        neighbours = np.sort(ids[centres[:, None] + (dy * stride + dx)[None, :]], axis=1)  # [num_gt, offsets]
        has = neighbours >= 0
        self.gt_indptr = np.concatenate([[0], np.cumsum(has.sum(axis=1))]).astype(np.int64)
        self.gt_indices = neighbours[has].astype(np.int64)  # each GT pixel's candidates, increasing id
        self.num_pred = len(candidates)

    def matcher(self) -> DynamicMatching:
        return DynamicMatching(self.gt_indptr, self.gt_indices, self.num_pred)


def match_count(pred_map: np.ndarray, gt_map: np.ndarray, radius: float) -> int:
    """Size of a maximum one-to-one matching between the True pixels of two maps, pairs at most `radius` apart."""
    pred_map, gt_map = np.asarray(pred_map, dtype=bool), np.asarray(gt_map, dtype=bool)
    graph = BoundaryGraph(gt_map, radius, np.argwhere(pred_map))
    return graph.matcher().update(np.zeros(0, dtype=np.int64), np.arange(graph.num_pred))


def image_boundary_counts(prob: np.ndarray, gt: np.ndarray, valid: np.ndarray, thresholds: np.ndarray,
                          max_dist: float, thin_gt: bool = True) -> np.ndarray:
    """Counts for one image: array [T, 4] of (cntR, sumR, cntP, sumP) per threshold (int64).

    prob: [H, W] boundary probability; gt: [H, W] bool boundary map; valid: [H, W] bool (False = ignored).

    Same numbers as thinning and matching every threshold from scratch, shared across thresholds: the masks
    prob >= t are nested, so every distinct one is a bit-plane comparison of one "level" map (number of
    thresholds <= prob); all of them are thinned together (`thin_layers`), and one `DynamicMatching` is carried
    from the highest threshold down, updated with the pixels that enter or leave the thinned map near the GT.
    (Thinning is not monotone in t, so both happen.)
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    counts = np.zeros((len(thresholds), 4), dtype=np.int64)
    if not valid.any():
        return counts
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    diagonal = math.hypot(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    gt_map = thin(gt & valid) if thin_gt else (gt & valid)
    prob = np.asarray(prob, dtype=np.float64)
    usable = valid & ~np.isnan(prob)
    # level = number of thresholds <= prob, so prob >= thresholds[k] exactly when level > k
    levels = np.where(usable, np.searchsorted(thresholds, np.where(usable, prob, -np.inf), side="right"), 0)
    present = np.bincount(levels.ravel(), minlength=len(thresholds) + 1)
    top = int(levels.max())
    cuts = [k for k in range(min(top, len(thresholds))) if k == 0 or present[k] > 0]  # distinct non-empty masks
    packed = PackedLayers(prob.shape[0], prob.shape[1], len(cuts))
    packed.set_level_sets(levels, cuts)
    thin_layers(packed)
    num_gt = int(gt_map.sum())
    counts[:, 1] = num_gt
    if not cuts:
        return counts
    near = _near_words(packed, gt_map, max_dist * diagonal).ravel()
    # Walk the thinned maps from the highest threshold (smallest map) down: pixels near the GT that leave or
    # enter, as bit keys (row * 64 * row_words + column). Only pixels that appear at some threshold get a matcher
    # vertex (ids in order of first appearance).
    pred_id = np.full(len(near) * 64, -1, dtype=np.int64)
    steps, seen, previous = [], 0, np.zeros_like(near)
    for i in range(len(cuts) - 1, -1, -1):
        current = packed.rows(i).ravel()
        changed = _word_bits((previous ^ current) & near)
        entering = (current[changed >> 6] >> (changed & 63).astype(np.uint64)) & np.uint64(1) == 1
        new = changed[entering][pred_id[changed[entering]] < 0]
        pred_id[new] = np.arange(seen, seen + len(new))
        seen += len(new)
        steps.append((i, changed[~entering], changed[entering], int(np.bitwise_count(current).sum())))
        previous = current
    keys = np.empty(seen, dtype=np.int64)
    found = np.flatnonzero(pred_id >= 0)
    keys[pred_id[found]] = found
    row_bits = 64 * packed.row_words
    graph = BoundaryGraph(gt_map, max_dist * diagonal, np.stack([keys // row_bits, keys % row_bits], axis=1))
    matcher = graph.matcher()
    layer_counts = np.zeros((len(cuts), 2), dtype=np.int64)  # (matched, thinned pixels) per distinct mask
    for i, leaving, entering, thinned in steps:
        layer_counts[i] = (matcher.update(pred_id[leaving], pred_id[entering]), thinned)
    layer_of = np.searchsorted(np.asarray(cuts), np.arange(len(thresholds)), side="right") - 1
    has_layer = np.arange(len(thresholds)) < top
    counts[has_layer, 0] = counts[has_layer, 2] = layer_counts[layer_of[has_layer], 0]
    counts[has_layer, 3] = layer_counts[layer_of[has_layer], 1]
    return counts


def f_measure(cnt_r: np.ndarray, sum_r: np.ndarray, cnt_p: np.ndarray, sum_p: np.ndarray):
    """(P, R, F) arrays with 0 where a denominator is 0 (the BSDS convention)."""
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(a, dtype=np.float64) for a in (cnt_r, sum_r, cnt_p, sum_p))
    precision = np.divide(cnt_p, sum_p, out=np.zeros_like(cnt_p), where=sum_p > 0)
    recall = np.divide(cnt_r, sum_r, out=np.zeros_like(cnt_r), where=sum_r > 0)
    total = precision + recall
    f = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return precision, recall, f


def _start_worker() -> None:
    """Pool initializer: one thread per worker process (the pool itself is the parallelism)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"
    torch.set_num_threads(1)


def _shut_down(executor: ProcessPoolExecutor) -> None:
    executor.shutdown(wait=True, cancel_futures=True)


class BoundaryMeter(Meter):
    """State: per-threshold cntR/sumR/cntP/sumP, the OIS counts and the image count (all int64).

    workers > 1: images are counted in a pool of that many processes (spawned on the first `update`); `update`
    only submits them and every read of the state (`state`, `compute`, `reduce_`, `merge_`, ...) first adds the
    finished counts. Sums of integer counts do not depend on the completion order, so any number of workers gives
    identical results. `compute()` and `close()` shut the pool down; the next `update` starts a new one.
    """

    def __init__(self, max_dist: float, thresholds: str | int | Sequence[float] = "default", thin_gt: bool = True,
                 name: str = "edge", workers: int = 1):
        if not 0 < max_dist < 1:
            raise ValueError(f"{name}: max_dist is a fraction of the image diagonal (0.011 NYUD, 0.0075 PASCAL), "
                             f"got {max_dist}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"{name}: workers must be a positive number of processes, got {workers!r}")
        self.name = name
        self.max_dist = float(max_dist)
        self.thresholds = boundary_thresholds(thresholds)
        self.thin_gt = thin_gt
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._pending: list[Future] = []
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
        jobs = [(prob[i], gt[i] == 1, valid[i], self.thresholds, self.max_dist, self.thin_gt)
                for i in range(prob.shape[0])]
        if self.workers == 1:
            self._add_images([image_boundary_counts(*job) for job in jobs])
        else:
            executor = self._pool()
            for job in jobs:
                while len(self._pending) >= 4 * self.workers:  # bounded backlog: keep memory flat
                    self._add_images([self._result(self._pending.pop(0))])
                self._pending.append(executor.submit(image_boundary_counts, *job))
        self._add("num_images", torch.tensor(prob.shape[0]))

    def _add_images(self, image_counts: list[np.ndarray]) -> None:
        """Add per-image [T, 4] counts: to the pooled counts, and each image's best-F row to the OIS counts."""
        if not image_counts:
            return
        ois = np.zeros(4, dtype=np.int64)
        for counts in image_counts:
            _, _, f = f_measure(*counts.T)
            ois += counts[int(np.argmax(f))]
        self._add("counts", torch.from_numpy(np.sum(image_counts, axis=0)))
        self._add("ois_counts", torch.from_numpy(ois))

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: the workers start clean (no forked torch/OpenMP state), which works on every platform
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_worker)
            self._finalizer = weakref.finalize(self, _shut_down, self._executor)  # no leaked processes
        return self._executor

    def _collect(self) -> None:
        """Wait for the submitted images and add their counts."""
        pending, self._pending = self._pending, []
        self._add_images([self._result(job) for job in pending])

    def _result(self, job: Future) -> np.ndarray:
        try:
            return job.result()
        except BrokenProcessPool:
            raise RuntimeError(
                f"{self.name}: a boundary-metric worker process died before finishing; a script that evaluates "
                "with workers > 1 must run its code under `if __name__ == \"__main__\":` (worker processes are "
                "spawned and import the script), otherwise use workers=1") from None

    def close(self) -> None:
        """Add what is still pending and shut the worker pool down (a later `update` starts a new one)."""
        self._collect()
        if self._executor is not None:
            self._finalizer()
            self._executor = None

    def state(self) -> dict[str, Tensor]:
        self._collect()
        return super().state()

    def load_state(self, state: dict[str, Tensor]) -> None:
        self._collect()
        super().load_state(state)

    def reduce_(self, fn) -> None:
        self._collect()
        super().reduce_(fn)

    def merge_(self, other: "Meter") -> None:
        self._collect()
        super().merge_(other)

    def to(self, device) -> "BoundaryMeter":
        self._collect()
        return super().to(device)

    def reset(self) -> None:
        """Forget everything, including images still being counted."""
        for job in getattr(self, "_pending", []):
            job.cancel()
        self._pending = []
        super().reset()

    def compute(self) -> dict:
        self.close()
        counts = self._state["counts"].cpu().numpy()
        if not counts[:, 1].any():  # sumR = 0 at every threshold: recall, hence every F, is undefined
            return missing_result(("odsf", "odsf_threshold", "ods_precision", "ods_recall", "oisf"),
                                  f"no ground-truth {self.name} (boundary) pixel",
                                  num_images=int(self._state["num_images"]))
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
    "BoundaryGraph", "BoundaryMeter", "boundary_thresholds", "f_measure", "image_boundary_counts", "match_count",
]
