"""Morphological thinning of binary masks to 1-pixel-wide curves (Guo-Hall two-subiteration algorithm).

This is the algorithm MATLAB's `bwmorph(BW, 'thin', Inf)` documents (Lam, Lee & Suen 1992, "algorithm A1" of Guo &
Hall 1989), which SEISM applies to binarised boundary maps before matching. Written here from the published
conditions so the boundary metric needs only numpy/scipy. Each subiteration deletes, simultaneously, every
foreground pixel whose 3x3 neighbourhood satisfies G1, G2 and G3 (first) or G3' (second); iterate to convergence.
Only pixels next to a deletion can change status, so after the first pass only those are re-examined.
"""

from __future__ import annotations

import numpy as np

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


__all__ = ["thin"]
