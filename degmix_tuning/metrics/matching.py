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
A defect d is repaired by an alternating search from d that crosses to the other side only through live vertices
outside C (a matched one leads on to its partner, which is in C). Reaching a free vertex outside C gives an
augmenting path: M grows by one, C is unchanged. Otherwise the search tree T is closed (every edge leaving T's
d-side vertices ends in C or in T), and C - (T on d's side) + (T on the other side) is still a cover, one vertex
smaller. Either way the defect is gone.

All defects of an update are repaired together, vectorised (numpy only): first direct matches to free neighbours
outside C (`_greedy`, which resolves ~95 % of them), then Hopcroft-Karp-like phases of breadth-first trees grown
from every remaining defect at once (`_search`).
"""

from __future__ import annotations

import numpy as np

_DEAD, _LIVE, _COVERED = 0, 1, 2  # vertex states: switched off (right only) / live outside C / live in C


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") for non-negative ints, as 16-bit radix passes (numpy sorts uint16 keys
    with a radix sort, ~10x faster than its general stable sort on this size)."""
    order = np.arange(len(keys))
    top = int(keys.max(initial=0))
    shift = 0
    while shift == 0 or top >> shift:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def _transpose_csr(indptr: np.ndarray, indices: np.ndarray, num_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the transposed 0/1 matrix (rows of the result = columns of the input, entries in row order)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = _stable_order(indices)
    counts = np.bincount(indices, minlength=num_cols)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rows[order].astype(np.int64)


class DynamicMatching:
    """Maximum matching between fixed left vertices and right vertices switched on/off by `update`.

    indptr/indices: CSR adjacency left -> right (0-based right ids), each row sorted by right id as in a scipy
    CSR matrix. All right vertices start switched off.

    Internally both sides share one vertex numbering (left 0..L-1, right L..L+R-1) and one adjacency, so searches
    from left and right defects run in the same vectorised passes: they never touch the same vertices (a left
    search crosses into right vertices outside C and continues from left vertices in C, a right search the other
    way round).
    """

    def __init__(self, indptr, indices, num_right: int):
        indptr, indices = np.asarray(indptr, np.int64), np.asarray(indices, np.int64)
        self.num_left, self.num_right = len(indptr) - 1, int(num_right)
        total = self.num_left + self.num_right
        rows = np.repeat(np.arange(self.num_left), np.diff(indptr))
        step = np.diff(indices)
        step[indptr[1:-1][(indptr[1:-1] > 0) & (indptr[1:-1] < len(indices))] - 1] = 1  # row boundaries
        if (step <= 0).any():
            raise ValueError("DynamicMatching: each row of the adjacency must list increasing right ids")
        right_indptr, right_indices = _transpose_csr(indptr, indices, self.num_right)
        # Adjacency: left rows first, right rows after them, in one index array.
        # Left rows only list right vertices up to the highest id ever switched on (`_revealed`): a caller that
        # numbers right vertices in order of first use (the boundary metric does) keeps the many not-yet-used
        # ones out of every search without any filtering pass.
        self.indices = np.concatenate([indices + self.num_left, right_indices])
        start = np.concatenate([indptr[:-1], len(indices) + right_indptr[:-1]])
        self.length = np.concatenate([np.zeros(self.num_left, dtype=np.int64), np.diff(right_indptr)])
        self.stop = start + self.length  # row v is indices[stop[v] - length[v]:stop[v]]
        self._edges = (rows, indices + self.num_left)  # every left -> right edge, for `certificate_errors`
        self._revealed = 0
        self.match = np.full(total, -1, dtype=np.int64)  # partner of every vertex, -1 = free
        self.state = np.full(total, _LIVE, dtype=np.uint8)  # _DEAD / _LIVE (outside C) / _COVERED (in C)
        self.state[self.num_left:] = _DEAD
        self.size = 0
        self._phase = 0
        self._claims = np.zeros(total, dtype=np.int64)  # (search phase << 32) + tree that last claimed a vertex
        self._parent = np.zeros(total, dtype=np.int64)  # vertex it was reached from
        self._scratch = np.empty(max(total, 1), dtype=np.int64)
        self._count = np.arange(1024, dtype=np.int64)

    def _neighbours(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `rows`, neighbour) for every neighbour of the given vertices, row-major."""
        lengths = self.length[rows]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        owner = np.repeat(self._counting(len(rows)), lengths)
        entry = np.repeat(self.stop[rows] - ends, lengths)  # + position in the concatenation = entry index
        entry += self._counting(total)
        return owner, self.indices[entry]

    def _counting(self, size: int) -> np.ndarray:
        """0, 1, ..., size - 1 (a view of a cached array: these are needed in every pass)."""
        if size > len(self._count):
            self._count = np.arange(2 * size, dtype=np.int64)
        return self._count[:size]

    # -- the update ----------------------------------------------------------------------------------------
    def update(self, removed: np.ndarray, added: np.ndarray) -> int:
        """Switch right vertices (0-based right ids) off (`removed`, currently on) and on (`added`, currently
        off); returns the new maximum matching size."""
        removed = np.asarray(removed, dtype=np.int64) + self.num_left
        added = np.asarray(added, dtype=np.int64) + self.num_left
        for ids, want, what in ((removed, self.state != _DEAD, "on"), (added, self.state == _DEAD, "off")):
            if ids.size and (ids.min() < self.num_left or ids.max() >= len(self.state) or not want[ids].all()):
                raise ValueError(f"DynamicMatching.update: right ids must be in 0..{self.num_right - 1} and "
                                 f"currently {what}")
        if added.size and added.max() >= self.num_left + self._revealed:  # extend the left rows
            newly = np.arange(self.num_left + self._revealed, added.max() + 1)
            grown = np.bincount(self._neighbours(newly)[1], minlength=self.num_left)
            self.length[:self.num_left] += grown
            self.stop[:self.num_left] += grown
            self._revealed = int(added.max()) + 1 - self.num_left
        match, state = self.match, self.state
        partners = match[removed]
        matched = partners >= 0
        # a removed vertex in C takes its cover duty with it; one outside C leaves its partner (in C) free
        left_defects = partners[matched & (state[removed] == _LIVE)]
        match[partners[matched]] = -1
        self.size -= int(matched.sum())
        match[removed] = -1
        state[removed] = _DEAD
        state[added] = _LIVE
        owner, left = self._neighbours(added)  # added right vertex (position), left neighbour
        new_right = added[owner]
        uncovered = state[left] == _LIVE
        first = owner[uncovered]  # nondecreasing
        right_defects = added[first[np.concatenate([[True], first[1:] != first[:-1]])]] if first.size else added[:0]
        state[right_defects] = _COVERED  # keeps every edge covered until repaired
        # Direct matches first (augmenting paths of length one). The pairs gathered above already hold every
        # candidate of a right defect and the most likely ones of a left defect (whose right partner was just
        # replaced by a nearby new vertex); only left defects left over need their (long) own rows.
        defects = np.concatenate([left_defects, right_defects])
        position = self._scratch
        position[defects] = self._counting(len(defects))
        is_left_defect = np.zeros(len(state), dtype=bool)
        is_left_defect[left_defects] = True
        free = match[left] < 0
        for_right = uncovered & free & (state[new_right] == _COVERED)
        for_left = is_left_defect[left] & (state[new_right] == _LIVE) & (match[new_right] < 0)
        own = np.concatenate([position[new_right[for_right]], position[left[for_left]]])
        candidate = np.concatenate([left[for_right], new_right[for_left]])
        order = _stable_order(own)
        self._greedy(defects, own[order], candidate[order])
        rest = left_defects[match[left_defects] < 0]
        owner, other = self._neighbours(rest)
        self._greedy(rest, owner, other)
        defects = defects[match[defects] < 0]
        if defects.size:
            self._search(defects)
        return self.size

    def _greedy(self, defects: np.ndarray, owner: np.ndarray, other: np.ndarray) -> None:
        """Match defects to free usable neighbours directly, in rounds: every defect proposes to the free candidate
        fewest other defects want, and every candidate accepts the proposer with the fewest candidates (ties:
        candidate order / lowest position), which leaves far fewer defects for `_search` than first-come choices.
        owner/other: candidate pairs (position in `defects`, neighbour), grouped by owner."""
        match, state = self.match, self.state
        usable = (state[other] == _LIVE) & (match[other] < 0)
        owner, other = owner[usable], other[usable]
        best = self._scratch
        while owner.size:
            size = len(owner)
            lowest = int(other.min())
            demand = np.bincount(other - lowest)[other - lowest]  # defects still wanting each candidate
            starts = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
            pick = np.minimum.reduceat(demand * size + np.arange(size), starts) % size  # least wanted, first
            proposer, proposed = owner[pick], other[pick]
            options = np.diff(np.append(starts, size))  # candidates per proposing defect
            bid = options * size + np.arange(len(pick))
            best[proposed] = np.iinfo(np.int64).max
            np.minimum.at(best, proposed, bid)
            accepted = best[proposed] == bid
            own = defects[proposer[accepted]]
            match[own] = proposed[accepted]
            match[proposed[accepted]] = own
            self.size += len(own)
            pending = (match[defects[owner]] < 0) & (match[other] < 0)
            owner, other = owner[pending], other[pending]

    def _search(self, defects: np.ndarray) -> None:
        """Repair defects (free vertices in C) that have no free usable neighbour; see the module docstring.

        Phase: breadth-first trees from all remaining defects at once, crossing only live vertices outside C. A
        vertex belongs to the first tree that reaches it. A tree that reaches a free vertex augments and stops;
        its vertices are released, and every vertex of another tree that was turned away by one of them is
        expanded again. At the end of the phase the failed trees are closed unless they were turned away by a
        tree that is not moved (see `_closed_trees`); closed trees are moved across the cover, the others retried.
        """
        match, state, claims, parent = self.match, self.state, self._claims, self._parent
        while defects.size:
            self._phase += 1
            base = self._phase << 32  # claims[v] = base + tree for vertices claimed in this phase
            num_trees = len(defects)
            done = np.zeros(num_trees, dtype=bool)  # augmented
            # turned away: vertex waiting[i] of tree waiting_tree[i] met a vertex of tree holder[i]
            waiting, waiting_tree, holder = [], [], []
            frontier, roots = defects, np.arange(num_trees)
            tree_own, tree_other = [(defects, roots)], []
            augmented = 0
            while frontier.size:
                owner, other = self._neighbours(frontier)
                claim = claims[other]
                mine = (base + roots)[owner]
                ok = (state[other] == _LIVE) & (claim != mine)  # usable and not in this tree yet
                taken = ok & (claim >= base)  # ... but in another tree: usable only if that tree augmented
                if taken.any():
                    at = np.flatnonzero(taken)
                    holding = claim[at] - base
                    blocked = ~done[holding]
                    if blocked.any():
                        at, holding = at[blocked], holding[blocked]
                        ok[at] = False
                        waiting.append(frontier[owner[at]])
                        waiting_tree.append(roots[owner[at]])
                        holder.append(holding)
                other, owner = other[ok], owner[ok]
                if other.size == 0:
                    break
                reached_roots = roots[owner]
                first = self._one_per_key(other)  # reached twice in this layer: the first tree holds it
                winner = reached_roots[self._scratch[other]]
                foreign = winner != reached_roots  # ... and trees that lost it wait
                if foreign.any():
                    waiting.append(frontier[owner[foreign]])
                    waiting_tree.append(reached_roots[foreign])
                    holder.append(winner[foreign])
                other, owner, reached_roots = other[first], owner[first], reached_roots[first]
                claims[other] = base + reached_roots
                parent[other] = frontier[owner]
                tree_other.append((other, reached_roots))
                partner = match[other]
                going_on = partner >= 0
                if not going_on.all():  # free vertices reached: one augmenting path per tree
                    ends, end_roots = other[~going_on], reached_roots[~going_on]
                    one = self._one_per_key(end_roots)
                    for end, root in zip(ends[one].tolist(), end_roots[one].tolist()):
                        self._flip(end, int(defects[root]))
                    done[end_roots[one]] = True
                    augmented += int(one.sum())
                    going_on &= ~done[reached_roots]
                    if waiting:
                        frontier, roots = partner[going_on], reached_roots[going_on]
                        frontier, roots, waiting, waiting_tree, holder = self._rejoin(
                            frontier, roots, done, waiting, waiting_tree, holder)
                        tree_own.append((frontier, roots))
                        continue
                frontier, roots = partner[going_on], reached_roots[going_on]
                tree_own.append((frontier, roots))
            self.size += augmented
            met_tree = np.concatenate(holder) if holder else np.zeros(0, dtype=np.int64)
            met_by = np.concatenate(waiting_tree) if waiting_tree else met_tree
            closed = self._closed_trees(~done, met_tree, met_by)
            if closed.any():
                clash = self._clashes(defects, closed, tree_own)
                if clash.any():
                    closed = self._closed_trees(closed & ~clash, met_tree, met_by)
                state[np.concatenate([vertices[closed[tree]] for vertices, tree in tree_own])] = _LIVE
                if tree_other:
                    state[np.concatenate([vertices[closed[tree]] for vertices, tree in tree_other])] = _COVERED
            defects = defects[~done & ~closed]

    def _rejoin(self, frontier, roots, done, waiting, waiting_tree, holder):
        """Add to the frontier the vertices that were turned away by trees that have augmented since."""
        waiting, waiting_tree, holder = np.concatenate(waiting), np.concatenate(waiting_tree), np.concatenate(holder)
        alive = ~done[waiting_tree]
        retry = alive & done[holder]
        if retry.any():
            again = self._one_per_key(waiting[retry])
            frontier = np.concatenate([frontier, waiting[retry][again]])
            roots = np.concatenate([roots, waiting_tree[retry][again]])
        pending = alive & ~retry
        return frontier, roots, [waiting[pending]], [waiting_tree[pending]], [holder[pending]]

    def _flip(self, end: int, start: int) -> None:
        """Augment along the search path that reached the free vertex `end` back to the defect `start`."""
        match, parent = self.match, self._parent
        while True:
            own = int(parent[end])
            previous = int(match[own])
            match[own] = end
            match[end] = own
            if own == start:
                return
            end = previous

    @staticmethod
    def _closed_trees(candidates: np.ndarray, met_tree, met_by) -> np.ndarray:
        """The candidate trees whose union is closed: a tree stopped by a vertex of a tree outside the union
        (one that augmented, or that is not moved this phase) did not explore what lies behind that vertex, nor
        did any tree stopped by such a tree, and so on."""
        closed = candidates.copy()
        if len(met_tree):
            while True:
                open_ = ~closed[met_tree] & closed[met_by]
                if not open_.any():
                    break
                closed[met_by[open_]] = False
        return closed

    def _clashes(self, defects: np.ndarray, closed: np.ndarray, tree_own: list) -> np.ndarray:
        """Right trees to leave for the next phase: moving a closed left tree and a closed right tree across the
        cover together would uncover any edge between their own-side vertices (both in C before)."""
        from_left = defects < self.num_left
        if not (closed & from_left).any() or not (closed & ~from_left).any():
            return np.zeros(len(defects), dtype=bool)
        left_own = np.zeros(len(self.match), dtype=bool)
        pieces = [(vertices[closed[tree] & from_left[tree]], tree[closed[tree] & ~from_left[tree]],
                   vertices[closed[tree] & ~from_left[tree]]) for vertices, tree in tree_own]
        left_own[np.concatenate([left for left, _, _ in pieces])] = True
        right_roots = np.concatenate([tree for _, tree, _ in pieces])
        right_own = np.concatenate([right for _, _, right in pieces])
        owner, other = self._neighbours(right_own)
        clash = np.zeros(len(defects), dtype=bool)
        clash[right_roots[owner[left_own[other]]]] = True
        return clash

    def _one_per_key(self, keys: np.ndarray) -> np.ndarray:
        """Mask keeping exactly one position per distinct key (the one whose write to the scratch array won)."""
        order = self._counting(len(keys))
        self._scratch[keys] = order
        return self._scratch[keys] == order

    # -- checks (tests) ------------------------------------------------------------------------------------
    def certificate_errors(self) -> list[str]:
        """Violations of the invariant (empty = the matching is maximum and certified by the cover)."""
        errors = []
        live = self.state != _DEAD
        covered = self.state == _COVERED
        left = np.arange(self.num_left)
        if (self.state[left] == _DEAD).any():
            errors.append("a left vertex is switched off")
        matched = np.flatnonzero(self.match >= 0)
        partner = self.match[matched]
        if (self.match[partner] != matched).any() or not live[matched].all():
            errors.append("match entries disagree or a switched-off vertex is matched")
        if ((matched < self.num_left) == (partner < self.num_left)).any():
            errors.append("a matched pair lies on one side")
        owner, other = self._neighbours(matched)
        if np.bincount(owner[other == partner[owner]], minlength=len(matched)).min(initial=1) == 0:
            errors.append("a matched pair is not an edge")
        rows, cols = self._edges
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
