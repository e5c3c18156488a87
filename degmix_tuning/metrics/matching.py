"""Maximum-cardinality bipartite matching kept up to date while right-hand vertices come and go.

Used by the boundary metric: the left side is an image's GT boundary pixels (fixed), the right side its thinned
predicted boundary pixels, which change from one threshold to the next. Recomputing a maximum matching per
threshold from scratch cost seconds per image; here each threshold only repairs what changed.

Invariant after every `update` (Koenig / LP duality): besides the matching M the matcher holds a vertex cover C
(every edge between live vertices has an endpoint in C) with exactly one endpoint of every matched edge in C and
no free vertex in C, hence |C| = |M|. Since no matching is larger than any cover, M is maximum: the cover is a
certificate, not a heuristic (`certificate_errors` checks it).

An update breaks the invariant only at "defects", free vertices that have to be in C:
  * a removed right vertex that was matched and outside C leaves its left partner free but in C;
  * an added right vertex with an edge to a left vertex outside C has to enter C while free.
A defect d is repaired by a breadth-first alternating search from d that crosses to the other side only through
live vertices outside C (a matched one leads on to its partner, which is in C). Reaching a free vertex outside C
gives an augmenting path: M grows by one, C is unchanged. Otherwise the search tree T is closed (every edge
leaving T's d-side vertices ends in C or in T), and C - (T on d's side) + (T on the other side) is still a cover,
one vertex smaller. Either way the defect is gone, and no other defect is touched (defects are free and in C, so
a search neither crosses nor ends at one): the defects are repaired one after another.

The repair is a compiled loop (numba): the search is pointer chasing through a few hundred thousand adjacency
entries per image, which costs nanoseconds per entry compiled and far more as numpy passes over arrays.
"""

from __future__ import annotations

import logging

import numba
import numpy as np
import scipy.sparse

_DEAD, _LIVE, _COVERED = 0, 1, 2  # vertex states: switched off (right only) / live outside C / live in C


def _compiled(function):
    """numba.njit with its on-disk cache (next to this file, else the user cache folder); where numba finds no
    writable folder for it, compiled in each process instead (~1 s), said once on the package's logger."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError as exc:
        if "cannot cache" not in str(exc):
            raise
        logging.getLogger("degmix_tuning").info(
            "boundary metric: numba has no writable cache folder (set NUMBA_CACHE_DIR to one to keep the compiled "
            "matcher); compiling it in this process")
        return numba.njit(nogil=True)(function)


@_compiled
def _repair(indptr, indices, num_left, match, state, mark, parent, queue, reached, removed, added, defects, epoch):
    """Apply one update in place and repair its defects; returns (True, change of the matching size, last epoch),
    or (False, 0, epoch) without any change when an id is repeated, out of range, or not currently on (removed) /
    off (added).

    indptr/indices: CSR adjacency over all vertices (left then right); removed/added: vertex ids; mark/parent/
    queue/reached/defects: scratch arrays sized to the vertex count (mark holds the epoch of the search that last
    reached a vertex, so nothing is cleared between searches)."""
    epoch += 1  # validate first, change nothing on bad input: ids distinct, in range, removed on, added off
    for ids, on in ((removed, True), (added, False)):
        for v in ids:
            if v < num_left or v >= len(state) or mark[v] == epoch or (state[v] != _DEAD) != on:
                return False, 0, epoch
            mark[v] = epoch
    change = 0
    num_defects = 0
    for r in removed:
        partner = match[r]
        if partner >= 0:
            match[partner] = -1
            match[r] = -1
            change -= 1
            if state[r] == _LIVE:  # the partner (in C) is now free in C
                defects[num_defects] = partner
                num_defects += 1
        state[r] = _DEAD
    for a in added:
        state[a] = _LIVE
    for a in added:
        for e in range(indptr[a], indptr[a + 1]):
            if state[indices[e]] == _LIVE:  # an uncovered edge: a enters C, free
                state[a] = _COVERED
                defects[num_defects] = a
                num_defects += 1
                break
    for i in range(num_defects):
        root = defects[i]
        epoch += 1
        mark[root] = epoch
        queue[0] = root
        head, tail, num_reached, end = 0, 1, 0, -1
        while head < tail and end < 0:
            x = queue[head]
            head += 1
            for e in range(indptr[x], indptr[x + 1]):
                y = indices[e]
                if state[y] != _LIVE or mark[y] == epoch:
                    continue
                mark[y] = epoch
                parent[y] = x
                reached[num_reached] = y
                num_reached += 1
                if match[y] < 0:
                    end = y
                    break
                queue[tail] = match[y]  # in C; reached only through y, its one partner
                tail += 1
        if end >= 0:  # augment along the path back to the root
            y = end
            while True:
                x = parent[y]
                previous = match[x]
                match[x] = y
                match[y] = x
                if x == root:
                    break
                y = previous
            change += 1
        else:  # closed tree: its root side leaves C, its other side enters
            for k in range(tail):
                state[queue[k]] = _LIVE
            for k in range(num_reached):
                state[reached[k]] = _COVERED
    return True, change, epoch


class DynamicMatching:
    """Maximum matching between fixed left vertices and right vertices switched on/off by `update`.

    indptr/indices: CSR adjacency left -> right (0-based right ids), each row sorted by right id as in a scipy
    CSR matrix. All right vertices start switched off. Both sides share one vertex numbering internally (left
    0..L-1, right L..L+R-1) and one adjacency.
    """

    def __init__(self, indptr, indices, num_right: int):
        indptr, indices = np.asarray(indptr, np.int64), np.asarray(indices, np.int64)
        self.num_left, self.num_right = len(indptr) - 1, int(num_right)
        rows = np.repeat(np.arange(self.num_left), np.diff(indptr))
        if ((np.diff(indices) <= 0) & (rows[1:] == rows[:-1])).any():
            raise ValueError("DynamicMatching: each row of the adjacency must list increasing right ids")
        edges = scipy.sparse.csr_matrix((np.ones(len(indices), dtype=np.int8), indices, indptr),
                                        shape=(self.num_left, self.num_right))
        transposed = edges.T.tocsr()
        self.indptr = np.concatenate([indptr, len(indices) + transposed.indptr[1:]]).astype(np.int64)
        self.indices = np.concatenate([indices + self.num_left, transposed.indices]).astype(np.int64)
        self._edges = (rows, indices + self.num_left)  # every left -> right edge, for `certificate_errors`
        total = self.num_left + self.num_right
        self.match = np.full(total, -1, dtype=np.int64)  # partner of every vertex, -1 = free
        self.state = np.full(total, _LIVE, dtype=np.uint8)  # _DEAD / _LIVE (outside C) / _COVERED (in C)
        self.state[self.num_left:] = _DEAD
        self.size = 0
        self._epoch = 0
        self._mark = np.zeros(total, dtype=np.int64)
        self._scratch = [np.zeros(total, dtype=np.int64) for _ in range(4)]  # parent, queue, reached, defects

    def update(self, removed: np.ndarray, added: np.ndarray) -> int:
        """Switch right vertices (0-based right ids) off (`removed`, currently on) and on (`added`, currently
        off); returns the new maximum matching size."""
        removed = np.asarray(removed, dtype=np.int64) + self.num_left
        added = np.asarray(added, dtype=np.int64) + self.num_left
        valid, change, self._epoch = _repair(self.indptr, self.indices, self.num_left, self.match, self.state,
                                             self._mark, *self._scratch[:3], removed, added, self._scratch[3],
                                             self._epoch)
        if not valid:
            raise ValueError(f"DynamicMatching.update: right ids must be distinct, in 0..{self.num_right - 1}, "
                             "currently on (removed) and currently off (added)")
        self.size += change
        return self.size

    # -- checks (tests) ------------------------------------------------------------------------------------
    def certificate_errors(self) -> list[str]:
        """Violations of the invariant (empty = the matching is maximum and certified by the cover)."""
        errors = []
        live = self.state != _DEAD
        covered = self.state == _COVERED
        if (self.state[:self.num_left] == _DEAD).any():
            errors.append("a left vertex is switched off")
        matched = np.flatnonzero(self.match >= 0)
        partner = self.match[matched]
        if (self.match[partner] != matched).any() or not live[matched].all():
            errors.append("match entries disagree or a switched-off vertex is matched")
        if ((matched < self.num_left) == (partner < self.num_left)).any():
            errors.append("a matched pair lies on one side")
        rows, cols = self._edges
        total = len(self.match)
        edge_keys = rows * total + cols  # increasing: rows in order, ids increasing within a row
        left = matched < self.num_left
        pair_keys = matched[left] * total + partner[left]
        at = np.minimum(np.searchsorted(edge_keys, pair_keys), max(len(edge_keys) - 1, 0))
        if pair_keys.size and (edge_keys[at] != pair_keys).any():
            errors.append("a matched pair is not an edge")
        if ((self.state[rows] == _LIVE) & (self.state[cols] == _LIVE)).any():
            errors.append("an edge between live vertices is not covered")
        if (covered[matched] == covered[partner]).any():
            errors.append("a matched pair has both or neither endpoint in the cover")
        if (covered & (self.match < 0)).any():
            errors.append("a free vertex is in the cover")
        if int(covered.sum()) != self.size or len(matched) != 2 * self.size:
            errors.append(f"cover size {int(covered.sum())}, matched vertices {len(matched)}, size {self.size}")
        return errors


__all__ = ["DynamicMatching"]
