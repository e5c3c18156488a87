"""Morphological thinning of binary masks to 1-pixel-wide curves (Guo-Hall two-subiteration algorithm).

This is the algorithm MATLAB's `bwmorph(BW, 'thin', Inf)` documents (Lam, Lee & Suen 1992, "algorithm A1" of Guo &
Hall 1989), which SEISM applies to binarised boundary maps before matching. Written here from the published
conditions so the boundary metric needs only numpy/scipy. Each subiteration deletes, simultaneously, every
foreground pixel whose 3x3 neighbourhood satisfies G1, G2 and G3 (first) or G3' (second); iterate to convergence.

Why bit-parallel: the boundary metric thins one mask per threshold (99 per image), so thinning must be cheap in
bulk. Masks are packed 64 pixels per uint64 word and the deletion conditions are evaluated as bitwise formulas on
whole words (`_deletions`), for many masks ("layers") at once: the layers are stacked in one flat word array,
separated by zero rows, so one pass of ~75 numpy operations advances every layer by a subiteration. Later
subiterations only revisit rows next to recent deletions, and a layer stops once two consecutive subiterations
deleted nothing in it. `_DELETE_FIRST/_DELETE_SECOND` spell the published conditions per 8-neighbour code; the
tests check the word formulas against them, and `thin` against a pixel-by-pixel implementation.
"""

from __future__ import annotations

import numpy as np

# Neighbours x1..x8 counter-clockwise from east: E, NE, N, NW, W, SW, S, SE (row, col) offsets.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _build_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables indexed by the 8-bit neighbourhood code sum(x_k << (k - 1)): the published conditions."""
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

_ONE = np.uint64(1)
_TOP_BIT = np.uint64(63)
_CHUNK_WORDS = 24_000  # words per processed group of layers: keeps the ~16 temporaries near the L2 cache


class PackedLayers:
    """Several H x W binary masks packed 64 pixels per uint64 word in one flat array (`words`).

    Layout: one guard word and one zero row, then per layer H data rows followed by one zero separator row, then a
    zero row and a guard word. Pixel (r, c) of layer i is bit c % 64 of word `start(i) + r * row_words + c // 64`.
    Each row has at least one unused (zero) bit after its last pixel, so the west neighbour of column 0 (the
    previous row's top bit) and the east neighbour of column W - 1 always read background; zero rows do the same
    vertically, which lets one shifted-word formula advance every layer at once.
    """

    def __init__(self, height: int, width: int, num_layers: int):
        self.height, self.width, self.num_layers = int(height), int(width), int(num_layers)
        self.row_words = self.width // 64 + 1
        self.layer_words = (self.height + 1) * self.row_words
        self.base = self.row_words + 1
        self.words = np.zeros(self.base + self.num_layers * self.layer_words + self.row_words + 1, dtype=np.uint64)

    def start(self, layer: int) -> int:
        return self.base + layer * self.layer_words

    def rows(self, layer: int) -> np.ndarray:
        """[H, row_words] view of one layer's data words."""
        begin = self.start(layer)
        return self.words[begin:begin + self.height * self.row_words].reshape(self.height, self.row_words)

    def pack_rows(self, mask: np.ndarray) -> np.ndarray:
        """[H, W] bool -> [H, row_words] uint64 in this layout's bit order."""
        padded = np.zeros((self.height, self.row_words * 64), dtype=bool)
        padded[:, :self.width] = mask
        return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64, copy=False)

    def set_layer(self, layer: int, mask: np.ndarray) -> None:
        self.rows(layer)[:] = self.pack_rows(mask)

    def set_level_sets(self, levels: np.ndarray, cuts) -> None:
        """Layer i = pixels with levels > cuts[i] (levels: [H, W] non-negative ints).

        Packs the bit planes of `levels` once and evaluates each comparison bit-sliced on words, so filling
        ~100 threshold masks costs ~100 x 14 word operations instead of ~100 full-image packs.
        """
        levels = np.asarray(levels)
        top = int(levels.max(initial=0))
        planes = [self.pack_rows(((levels >> bit) & 1).astype(bool)) for bit in range(max(1, top.bit_length()))]
        above = np.empty_like(planes[0])
        equal = np.empty_like(planes[0])
        for layer, cut in enumerate(int(c) for c in cuts):
            if cut >= top:
                self.rows(layer)[:] = 0
                continue
            above[:] = 0  # levels > cut, decided from the most significant bit down
            equal[:] = ~np.uint64(0)
            for bit in range(len(planes) - 1, -1, -1):
                if (cut >> bit) & 1:
                    equal &= planes[bit]
                else:
                    above |= equal & planes[bit]
                    equal &= ~planes[bit]
            self.rows(layer)[:] = above

    def layer(self, layer: int) -> np.ndarray:
        """One layer unpacked to an [H, W] bool array."""
        rows = np.ascontiguousarray(self.rows(layer)).astype("<u8", copy=False)
        bits = np.unpackbits(rows.view(np.uint8), axis=1, bitorder="little")
        return bits[:, :self.width].astype(bool)


class _Scratch:
    """Reusable word buffers for `_deletions` (allocating ~16 temporaries per call would dominate small layers)."""

    def __init__(self, size: int):
        self.buffers = [np.empty(size, dtype=np.uint64) for _ in range(16)]

    def take(self, size: int) -> list[np.ndarray]:
        return [buffer[:size] for buffer in self.buffers]


def _deletions(centre: np.ndarray, up: np.ndarray, down: np.ndarray, first: bool, scratch: _Scratch) -> np.ndarray:
    """Words of the pixels one subiteration deletes (a view into scratch; not applied).

    centre / up / down: the words of some pixel rows and of the rows above / below them, each with one extra word
    before and after (the west / east neighbour words, background at row ends). x1..x8 are the neighbour bits of
    every pixel at once (E, NE, N, NW, W, SW, S, SE); E/W shift each word by one bit and carry the edge bit in
    from the adjacent word. The published conditions per pixel p:
      G1: X_H(p) = 1, X_H = #{i : x_{2i-1} = 0 and (x_{2i} or x_{2i+1})}        ("exactly one b_i")
      G2: 2 <= min(N1, N2) <= 3, N1 = #{i : x_{2i-1} or x_{2i}}, N2 = #{i : x_{2i} or x_{2i+1}}
      G3: (x2 or x3 or not x8) and x1 == 0  (first);  G3': (x6 or x7 or not x4) and x5 == 0  (second)
    """
    size = len(centre) - 2
    x1, x2, x4, x5, x6, x8, tmp, c1, c2, c3, c4, a1, a2, a3, a4, g3 = scratch.take(size)
    bor, band, bnot = np.bitwise_or, np.bitwise_and, np.invert

    def east(out, row):  # neighbour at column + 1
        np.right_shift(row[1:-1], _ONE, out=out)
        np.left_shift(row[2:], _TOP_BIT, out=tmp)
        bor(out, tmp, out=out)

    def west(out, row):  # neighbour at column - 1
        np.left_shift(row[1:-1], _ONE, out=out)
        np.right_shift(row[:-2], _TOP_BIT, out=tmp)
        bor(out, tmp, out=out)

    east(x1, centre)
    east(x2, up)
    west(x4, up)
    west(x5, centre)
    west(x6, down)
    east(x8, down)
    x3, x7, centre = up[1:-1], down[1:-1], centre[1:-1]
    bor(x2, x3, out=c1), bor(x4, x5, out=c2), bor(x6, x7, out=c3), bor(x8, x1, out=c4)  # N2 terms
    bor(x1, x2, out=a1), bor(x3, x4, out=a2), bor(x5, x6, out=a3), bor(x7, x8, out=a4)  # N1 terms
    if first:  # g3 = pixels G3 keeps
        bnot(x8, out=g3), bor(g3, c1, out=g3), band(g3, x1, out=g3)
    else:
        bnot(x4, out=g3), bor(g3, c3, out=g3), band(g3, x5, out=g3)
    b1, b2, b3, b4 = x2, x4, x6, x8  # b_i = c_i and not x_{2i-1}; the x's are no longer needed
    bnot(x1, out=tmp), band(c1, tmp, out=b1)
    bnot(x3, out=tmp), band(c2, tmp, out=b2)
    bnot(x5, out=tmp), band(c3, tmp, out=b3)
    bnot(x7, out=tmp), band(c4, tmp, out=b4)
    one_b, any_b = x1, x5
    bor(b1, b2, out=one_b), bor(b3, b4, out=any_b)
    band(b1, b2, out=b1), band(b3, b4, out=b3), bor(b1, b3, out=b1)
    band(one_b, any_b, out=tmp), bor(b1, tmp, out=b1)  # b1 = at least two b_i
    bor(one_b, any_b, out=one_b), bnot(b1, out=b1), band(one_b, b1, out=one_b)  # G1
    band(a1, a2, out=b2), band(a3, a4, out=b3)
    bor(a1, a2, out=a1), bor(a3, a4, out=a3), band(a1, a3, out=a1)
    bor(a1, b2, out=a1), bor(a1, b3, out=a1)  # a1 = N1 >= 2
    band(b2, b3, out=a2)  # a2 = N1 == 4
    band(c1, c2, out=b2), band(c3, c4, out=b3)
    bor(c1, c2, out=c1), bor(c3, c4, out=c3), band(c1, c3, out=c1)
    bor(c1, b2, out=c1), bor(c1, b3, out=c1)  # c1 = N2 >= 2
    band(b2, b3, out=c2)  # c2 = N2 == 4
    band(a2, c2, out=a2), bnot(a2, out=a2)  # min(N1, N2) <= 3
    band(one_b, a1, out=one_b), band(one_b, c1, out=one_b), band(one_b, a2, out=one_b)
    bnot(g3, out=g3), band(one_b, g3, out=one_b), band(one_b, centre, out=one_b)
    return one_b


def thin_layers(packed: PackedLayers) -> None:
    """Thin every layer of `packed` to convergence, in place.

    A pixel's verdict can only change if a pixel of its 3x3 neighbourhood was deleted in one of the two previous
    subiterations (the one before has the same conditions), so after the first two subiterations only the rows
    within one row of a deletion are evaluated: gathered into scratch rows when they are a minority, else in
    place over whole layers. A layer is done after two subiterations without deletions.
    """
    num_layers, height, row_words = packed.num_layers, packed.height, packed.row_words
    if num_layers == 0 or height == 0:
        return
    words = packed.words
    rows_per_layer = height + 1  # data rows + separator
    # every row of the array from the leading zero row to the trailing one: layer i's data row r is
    # 1 + i * rows_per_layer + r
    grid = words[1:1 + (num_layers * rows_per_layer + 2) * row_words].reshape(-1, row_words)
    is_data = np.ones(len(grid), dtype=bool)
    is_data[0::rows_per_layer] = False  # leading zero row and every separator (row 1 + i * rows_per_layer + H)
    is_data[-1] = False
    per_chunk = max(1, _CHUNK_WORDS // packed.layer_words)
    scratch = _Scratch(max(per_chunk * packed.layer_words, _CHUNK_WORDS))
    quiet = np.zeros(num_layers, dtype=np.int64)  # consecutive subiterations without deletions; 2 = converged
    recent = [is_data & grid.any(axis=1), np.zeros(len(grid), dtype=bool)]  # rows with deletions (2 steps)
    first = True
    while True:
        active_layers = quiet < 2
        if not active_layers.any():
            return
        todo = recent[0] | recent[1]
        todo[1:] |= todo[:-1].copy()
        todo[:-1] |= todo[1:].copy()
        todo &= is_data & np.repeat(np.concatenate([[False], active_layers, [False]]),
                                    [1] + [rows_per_layer] * num_layers + [1])[:len(grid)]
        # layers with most rows to visit: in place, whole; the others: their rows gathered
        busy = todo[1:1 + num_layers * rows_per_layer].reshape(num_layers, rows_per_layer).sum(axis=1) * 2 > height
        todo[np.repeat(np.concatenate([[False], busy, [False]]), [1] + [rows_per_layer] * num_layers + [1])] = False
        deleted_rows = np.zeros(len(grid), dtype=bool)
        if busy.any():
            _thin_step_layers(packed, np.flatnonzero(busy), per_chunk, first, scratch, deleted_rows, grid)
        _thin_step_rows(grid, np.flatnonzero(todo), first, scratch, deleted_rows)
        deleted_any = deleted_rows[1:1 + num_layers * rows_per_layer].reshape(num_layers, rows_per_layer).any(1)
        quiet = np.where(deleted_any, 0, quiet + 1)
        recent = [deleted_rows, recent[0]]
        first = not first


def _thin_step_layers(packed, active, per_chunk, first, scratch, deleted_rows, grid) -> None:
    """One subiteration over whole layers, in place: consecutive active layers are contiguous in memory, and
    layers never interact (zero separator rows), so each group of layers is updated before the next is read."""
    words, row_words, layer_words = packed.words, packed.row_words, packed.layer_words
    breaks = np.flatnonzero(np.diff(active) != 1) + 1
    for run in np.split(active, breaks):
        for lo in range(int(run[0]), int(run[-1]) + 1, per_chunk):
            hi = min(lo + per_chunk, int(run[-1]) + 1)
            begin, end = packed.start(lo), packed.start(hi)
            gone = _deletions(words[begin - 1:end + 1], words[begin - row_words - 1:end - row_words + 1],
                              words[begin + row_words - 1:end + row_words + 1], first, scratch)
            first_row = (begin - 1) // row_words
            deleted_rows[first_row:first_row + (end - begin) // row_words] = gone.reshape(-1, row_words).any(1)
            np.invert(gone, out=gone)
            np.bitwise_and(words[begin:end], gone, out=words[begin:end])


def _thin_step_rows(grid, rows, first, scratch, deleted_rows) -> None:
    """One subiteration over the given rows only, gathered into contiguous scratch rows. Gathered rows may sit
    next to unrelated rows, which is harmless: the bit after a row's last pixel is always background, so the
    carries across the row ends read background or only affect that spare bit. All verdicts are taken before
    any is applied (neighbouring rows may fall into different chunks)."""
    step = max(1, _CHUNK_WORDS // grid.shape[1])
    verdicts = []
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        centre, up, down = (_padded(grid[chunk + shift]) for shift in (0, -1, 1))
        verdicts.append(_deletions(centre, up, down, first, scratch).reshape(len(chunk), -1).copy())
    if verdicts:
        gone = np.concatenate(verdicts)
        deleted_rows[rows] = gone.any(axis=1)
        grid[rows] &= ~gone


def _padded(rows: np.ndarray) -> np.ndarray:
    """Gathered rows as one flat word array with a zero word before and after."""
    flat = np.zeros(rows.size + 2, dtype=np.uint64)
    flat[1:-1] = rows.ravel()
    return flat


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a 2-D boolean mask to convergence; returns a new boolean array of the same shape."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"thin expects a 2-D mask, got shape {mask.shape}")
    if mask.size == 0:
        return mask.copy()
    packed = PackedLayers(mask.shape[0], mask.shape[1], 1)
    packed.set_layer(0, mask)
    thin_layers(packed)
    return packed.layer(0)


__all__ = ["PackedLayers", "thin", "thin_layers"]
