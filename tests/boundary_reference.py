"""Frozen copy of the boundary-metric counting path as it was before the incremental rewrite (git 62bd987).

Used only by tests/test_boundary.py (and benchmarks) as the ground truth for `image_boundary_counts`: per image and
threshold, binarise prob >= t, thin with the queue-based Guo-Hall `thin`, and count a maximum matching built from
scratch (`BoundaryMatcher` + `maximum_matching`). Slow on purpose (several seconds per 425x560 image); do not
import it from the package.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import binary_dilation


# ---------------------------------------------------------------------------------- thinning (thinning.py)
# Neighbours x1..x8 counter-clockwise from east: E, NE, N, NW, W, SW, S, SE (row, col) offsets.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _build_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables indexed by the 8-bit neighbourhood code sum(x_k << (k - 1))."""
    first = np.zeros(256, dtype=bool)
    second = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [(code >> k) & 1 for k in range(8)]  # x[0] = x1 ... x[7] = x8
        x = x + [x[0]]  # x9 = x1
        crossing = sum(1 for i in (0, 2, 4, 6) if x[i] == 0 and (x[i + 1] or x[i + 2]))  # X_H
        n1 = sum(x[i] | x[i + 1] for i in (0, 2, 4, 6))
        n2 = sum(x[i + 1] | x[i + 2] for i in (0, 2, 4, 6))
        g12 = crossing == 1 and 2 <= min(n1, n2) <= 3
        x1, x2, x3, x4, x5, x6, x7, x8 = x[:8]
        first[code] = g12 and ((x2 | x3 | (1 - x8)) & x1) == 0
        second[code] = g12 and ((x6 | x7 | (1 - x4)) & x5) == 0
    return first, second


_DELETE_FIRST, _DELETE_SECOND = _build_luts()


def _interior(padded: np.ndarray) -> np.ndarray:
    """Pixels of a zero-padded [H+2, W+2] mask whose 8 neighbours are all set (never deletable: X_H = 0)."""
    core = padded[1:-1, 1:-1].copy()
    for dr, dc in _NEIGHBOURS:
        core &= padded[1 + dr:padded.shape[0] - 1 + dr, 1 + dc:padded.shape[1] - 1 + dc]
    return core


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a 2-D boolean mask to convergence; returns a new boolean array of the same shape."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"thin expects a 2-D mask, got shape {mask.shape}")
    height, width = mask.shape
    stride = width + 2
    padded = np.zeros((height + 2, stride), dtype=bool)  # zero frame so neighbour lookups never wrap
    padded[1:-1, 1:-1] = mask
    on = padded.reshape(-1)
    offsets = np.array([dr * stride + dc for dr, dc in _NEIGHBOURS], dtype=np.int64)
    weights = (1 << np.arange(8)).astype(np.int64)
    border = np.zeros_like(padded)
    border[1:-1, 1:-1] = mask & ~_interior(padded)
    # queue[k]: pixels subiteration k must (re-)examine, flagged in queued[k] so none is queued twice. Interior
    # pixels are never deletable and a pixel's status only changes when a neighbour is deleted, so start from
    # the border and then queue the deletions' neighbours. The bookkeeping costs O(deletions), not O(H * W).
    start = np.flatnonzero(border)
    queue = [start, start]
    queued = [border.reshape(-1), border.reshape(-1).copy()]
    last_seen = np.empty(on.size, dtype=np.int64)  # scratch for de-duplicating neighbour lists
    luts = (_DELETE_FIRST, _DELETE_SECOND)
    quiet = 0  # consecutive subiterations without deletions; two means converged
    which = 0
    while quiet < 2:
        cand = queue[which]
        queued[which][cand] = False
        queue[which] = cand[:0]
        cand = cand[on[cand]]
        codes = on[cand[:, None] + offsets].astype(np.int64) @ weights
        deleted = cand[luts[which][codes]]
        if deleted.size:
            on[deleted] = False
            touched = (deleted[:, None] + offsets).ravel()
            touched = touched[on[touched]]
            order = np.arange(len(touched))
            # with repeated indices one of the writes wins (whichever), so exactly one copy of each index matches
            last_seen[touched] = order
            touched = touched[last_seen[touched] == order]
            for k in (0, 1):
                new = touched[~queued[k][touched]]
                queued[k][new] = True
                queue[k] = np.concatenate([queue[k], new])
            quiet = 0
        else:
            quiet += 1
        which = 1 - which
    return padded[1:-1, 1:-1].copy()


# ---------------------------------------------------------------------------------- matching (matching.py)
def _one_per_key(keys: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Boolean mask keeping exactly one position for each distinct key (scratch: int array indexed by key)."""
    order = np.arange(len(keys))
    scratch[keys] = order  # with repeated keys one write wins, so exactly one position matches below
    return scratch[keys] == order


def _greedy_start(indptr: np.ndarray, indices: np.ndarray, match_left: np.ndarray, match_right: np.ndarray,
                  scratch_right: np.ndarray) -> None:
    """Vectorised greedy rounds: every free left vertex proposes to its FIRST free right neighbour (row order,
    e.g. nearest first), each right vertex accepts one proposal; stop when a round adds nothing. Leaves far
    fewer free vertices for the augmenting phases, which cost one numpy pass per BFS layer."""
    left_of_edge = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    while True:
        open_edge = (match_left[left_of_edge] < 0) & (match_right[indices] < 0)
        lefts, rights = left_of_edge[open_edge], indices[open_edge]
        if lefts.size == 0:
            return
        first = np.concatenate([[True], lefts[1:] != lefts[:-1]])  # edges are grouped by left vertex
        lefts, rights = lefts[first], rights[first]
        accepted = _one_per_key(rights, scratch_right)
        match_left[lefts[accepted]] = rights[accepted]
        match_right[rights[accepted]] = lefts[accepted]


def maximum_matching(indptr: np.ndarray, indices: np.ndarray, num_right: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum matching of a bipartite graph given as CSR rows (left vertices) -> column ids (right vertices).

    Returns (match_left, match_right): the partner of each vertex, -1 when unmatched.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    num_left = len(indptr) - 1
    degree = np.diff(indptr)
    match_left = np.full(num_left, -1, dtype=np.int64)
    match_right = np.full(num_right, -1, dtype=np.int64)
    scratch_right = np.empty(max(num_right, 1), dtype=np.int64)
    scratch_left = np.empty(max(num_left, 1), dtype=np.int64)
    _greedy_start(indptr, indices, match_left, match_right, scratch_right)
    # No matching can exceed the smaller count of non-isolated vertices: when greedy reached it, it is maximum.
    has_edge = np.zeros(max(num_right, 1), dtype=bool)
    has_edge[indices] = True
    bound = min(int((degree > 0).sum()), int(has_edge.sum()))
    while int((match_left >= 0).sum()) < bound:
        parent = np.full(num_right, -1, dtype=np.int64)  # left vertex that reached each right vertex
        root = np.full(num_left, -1, dtype=np.int64)  # free left vertex whose tree holds each left vertex
        done = np.zeros(num_left, dtype=bool)  # roots whose tree already produced an augmenting path
        frontier = np.flatnonzero((match_left < 0) & (degree > 0))
        root[frontier] = frontier
        augmented = 0
        while frontier.size:
            counts = degree[frontier]
            total = int(counts.sum())
            src = np.repeat(frontier, counts)
            offset_in_row = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            edge = np.repeat(indptr[frontier], counts) + offset_in_row
            right = indices[edge]
            keep = (parent[right] < 0) & ~done[root[src]]
            src, right = src[keep], right[keep]
            unique = _one_per_key(right, scratch_right)
            src, right = src[unique], right[unique]
            parent[right] = src
            free = match_right[right] < 0
            ends, end_roots = right[free], root[src[free]]
            first = _one_per_key(end_roots, scratch_left)
            for end, tree_root in zip(ends[first].tolist(), end_roots[first].tolist()):
                r = end
                while True:  # flip the alternating path back to the root
                    left = int(parent[r])
                    previous = int(match_left[left])
                    match_left[left] = r
                    match_right[r] = left
                    if left == tree_root:
                        break
                    r = previous
                done[tree_root] = True
                augmented += 1
            matched_right = right[~free]
            frontier = match_right[matched_right]
            frontier_root = root[parent[matched_right]]
            alive = ~done[frontier_root]
            frontier = frontier[alive]
            root[frontier] = frontier_root[alive]
        if augmented == 0:
            break
    return match_left, match_right


def maximum_matching_size(indptr: np.ndarray, indices: np.ndarray, num_right: int) -> int:
    """Number of pairs in a maximum matching (see `maximum_matching`)."""
    return int((maximum_matching(indptr, indices, num_right)[0] >= 0).sum())


# ---------------------------------------------------------------------------------- counting (boundary.py)
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
