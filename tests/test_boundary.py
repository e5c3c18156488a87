"""Boundary odsF (SEISM-style approximation) and the Guo-Hall thinning it relies on, on hand-built images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import time

import scipy.ndimage as ndi
from scipy.sparse import random as sparse_random
from scipy.sparse.csgraph import maximum_bipartite_matching

from degmix_tuning.metrics import BoundaryMeter, boundary_thresholds, thin
from degmix_tuning.metrics.boundary import BoundaryMatcher, image_boundary_counts, match_count
from degmix_tuning.metrics.matching import maximum_matching

SIZE = 20
# diagonal of a 20x20 image = 28.28 px; max_dist 0.05 -> radius 1.414: a 1-px shift (also diagonal) is inside,
# a 2-px shift is outside.
MAX_DIST = 0.05


def vertical_line(col: int, rows: range = range(2, 18), size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[list(rows), col] = True
    return m


def logits_from(*layers: tuple[np.ndarray, float], size: int = SIZE) -> torch.Tensor:
    """[1, 1, H, W] logits whose sigmoid is `prob` on each mask and 0.001 elsewhere."""
    prob = np.full((size, size), 0.001)
    for mask, p in layers:
        prob[mask] = p
    return torch.logit(torch.tensor(prob, dtype=torch.float32)).view(1, 1, size, size)


def label_from(mask: np.ndarray) -> torch.Tensor:
    return torch.tensor(mask, dtype=torch.float32).view(1, 1, *mask.shape)


def run(pred_logits: torch.Tensor, label: torch.Tensor, **kwargs) -> dict:
    meter = BoundaryMeter(MAX_DIST, **kwargs)
    meter.update(pred_logits, label)
    return meter.compute()


# ---------------------------------------------------------------------------------------------- thinning
def naive_thin(mask: np.ndarray) -> np.ndarray:
    """Full-sweep Guo-Hall thinning written pixel by pixel, as an independent check of the LUT version."""
    img = np.pad(mask.astype(int), 1)
    order = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))  # x1..x8 from east, CCW
    changed = True
    while changed:
        changed = False
        for sub in (0, 1):
            delete = []
            for r, c in zip(*np.nonzero(img)):
                x = [img[r + dr, c + dc] for dr, dc in order]
                x9 = x + [x[0]]
                xh = sum(1 for i in range(4) if x9[2 * i] == 0 and (x9[2 * i + 1] or x9[2 * i + 2]))
                n1 = sum(x9[2 * k] or x9[2 * k + 1] for k in range(4))
                n2 = sum(x9[2 * k + 1] or x9[2 * k + 2] for k in range(4))
                g3 = (x[1] or x[2] or not x[7]) and x[0] if sub == 0 else (x[5] or x[6] or not x[3]) and x[4]
                if xh == 1 and 2 <= min(n1, n2) <= 3 and not g3:
                    delete.append((r, c))
            for r, c in delete:
                img[r, c] = 0
            changed |= bool(delete)
    return img[1:-1, 1:-1].astype(bool)


def test_thin_bar_becomes_one_pixel_line():
    bar = np.zeros((7, 12), dtype=bool)
    bar[2:5, 1:11] = True
    expected = np.zeros_like(bar)
    expected[3, 2:10] = True
    np.testing.assert_array_equal(thin(bar), expected)
    line = vertical_line(5)
    np.testing.assert_array_equal(thin(line), line)  # already thin: unchanged, end points kept


def test_thin_matches_naive_full_sweep_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(6):
        mask = rng.random((14, 15)) < 0.55
        np.testing.assert_array_equal(thin(mask), naive_thin(mask))


# ---------------------------------------------------------------------------------------------- matching
def test_match_count_is_one_to_one_within_radius():
    gt = np.zeros((5, 5), dtype=bool)
    gt[2, 2] = True
    two_preds = np.zeros_like(gt)
    two_preds[2, 1] = two_preds[2, 3] = True
    assert match_count(two_preds, gt, 1.0) == 1  # both are 1 px away but only one may take the GT pixel
    # maximum matching beats greedy: pred A near GT 1 and 2, pred B near GT 1 only -> 2 matches.
    gt2 = np.zeros((1, 6), dtype=bool)
    gt2[0, [1, 3]] = True
    pred2 = np.zeros_like(gt2)
    pred2[0, [0, 2]] = True
    assert match_count(pred2, gt2, 1.0) == 2
    assert match_count(pred2, gt2, 0.5) == 0


def konig_cover_size(indptr, indices, num_right, match_left, match_right) -> int:
    """Size of the Koenig vertex cover built from a matching; it equals the matching size iff it is maximum."""
    seen_left, seen_right = set(), set()
    stack = [u for u in range(len(indptr) - 1) if match_left[u] < 0]
    seen_left.update(stack)
    while stack:  # alternating reachability from free left vertices
        u = stack.pop()
        for v in indices[indptr[u]:indptr[u + 1]].tolist():
            if v not in seen_right:
                seen_right.add(v)
                w = int(match_right[v])
                if w >= 0 and w not in seen_left:
                    seen_left.add(w)
                    stack.append(w)
    cover_left = set(range(len(indptr) - 1)) - seen_left
    for u in range(len(indptr) - 1):  # it must cover every edge
        for v in indices[indptr[u]:indptr[u + 1]].tolist():
            assert u in cover_left or v in seen_right
    return len(cover_left) + len(seen_right)


def check_matching(indptr, indices, num_right):
    match_left, match_right = maximum_matching(indptr, indices, num_right)
    size = int((match_left >= 0).sum())
    for u in np.flatnonzero(match_left >= 0):  # a valid one-to-one matching along existing edges
        assert match_left[u] in indices[indptr[u]:indptr[u + 1]] and match_right[match_left[u]] == u
    assert int((match_right >= 0).sum()) == size
    assert konig_cover_size(indptr, indices, num_right, match_left, match_right) == size  # certificate: maximum
    return size


def test_maximum_matching_is_certified_and_agrees_with_scipy_on_random_graphs():
    rng = np.random.default_rng(0)
    for _ in range(60):
        rows, cols = rng.integers(1, 30, size=2)
        graph = sparse_random(rows, cols, density=rng.random() * 0.3, format="csr", random_state=rng.integers(1 << 30))
        size = check_matching(graph.indptr, graph.indices, cols)
        assert size == int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())


def test_maximum_matching_fast_on_contour_graph_that_stalls_scipy():
    # a thinned prediction running along a GT contour on a 425x560 image: on graphs built like this one (same
    # image, thresholds 0.69-0.71) scipy 1.17's maximum_bipartite_matching took 11-120 s (scipy issue #26147).
    rng = np.random.default_rng(0)
    region = ndi.gaussian_filter(rng.random((425, 560)), 21) > 0.5
    gt = (region != np.roll(region, 1, 0)) | (region != np.roll(region, 1, 1))
    prob = np.exp(-ndi.distance_transform_edt(~gt) / 1.5) + 0.1 * rng.standard_normal(gt.shape)
    matcher = BoundaryMatcher(thin(gt), 0.011 * math.hypot(425, 560))
    pred = thin(prob >= 0.70)
    rows, cols = np.nonzero(pred & matcher.near_gt)
    neighbours = matcher.gt_ids[((rows + matcher.pad) * matcher.stride + cols + matcher.pad)[:, None]
                                + matcher.offsets[None, :]]
    indptr = np.concatenate([[0], np.cumsum((neighbours >= 0).sum(axis=1))])
    start = time.perf_counter()
    size = check_matching(indptr, neighbours[neighbours >= 0], matcher.num_gt)
    assert size == matcher.num_gt == matcher.count(pred)  # every GT pixel finds a partner
    assert time.perf_counter() - start < 10.0  # includes the pure-Python certificate


# ------------------------------------------------------------------------------------------------- odsF
def test_exact_match_gives_f_one():
    out = run(logits_from((vertical_line(8), 0.9)), label_from(vertical_line(8)))
    assert (out["odsf"], out["ods_precision"], out["ods_recall"], out["oisf"]) == (1.0, 1.0, 1.0, 1.0)


def test_one_pixel_shift_inside_tolerance_still_matches():
    assert run(logits_from((vertical_line(9), 0.9)), label_from(vertical_line(8)))["odsf"] == 1.0


def test_two_pixel_shift_outside_tolerance_is_unmatched():
    out = run(logits_from((vertical_line(10), 0.9)), label_from(vertical_line(8)))
    assert out["odsf"] == 0.0 and out["ods_recall"] == 0.0


def test_thick_prediction_is_thinned_before_matching():
    band = np.zeros((SIZE, SIZE), dtype=bool)
    band[2:18, 7:10] = True  # a 3-px-wide band around the GT column 8: 48 pixels before thinning
    meter = BoundaryMeter(MAX_DIST, thresholds=[0.5])
    meter.update(logits_from((band, 0.9)), label_from(vertical_line(8)))
    cnt_r, sum_r, cnt_p, sum_p = meter.state()["counts"][0].tolist()
    assert sum_p == int(thin(band).sum()) < 48  # unthinned it would be 48 predicted pixels and P = 16/48
    assert cnt_p == sum_p  # every skeleton pixel sits on or next to the GT line
    assert meter.compute()["ods_precision"] == 1.0


def test_partial_match_precision_and_recall():
    # prediction = the left half of the GT line (8 of 16 px) plus a false 4-px line far away.
    pred = vertical_line(8, range(2, 10)) | vertical_line(16, range(2, 6))
    out = run(logits_from((pred, 0.9)), label_from(vertical_line(8)))
    precision, recall = 8 / 12, 8 / 16
    assert out["ods_precision"] == pytest.approx(precision)
    assert out["ods_recall"] == pytest.approx(recall)
    assert out["odsf"] == pytest.approx(2 * precision * recall / (precision + recall))  # = 4/7


def test_ignored_pixels_are_neither_predictions_nor_ground_truth():
    label = label_from(vertical_line(8))
    label[..., :, 14:] = 255  # a false prediction inside the ignored strip must not cost precision
    pred = vertical_line(8) | vertical_line(16)
    assert run(logits_from((pred, 0.9)), label)["odsf"] == 1.0


def test_padding_with_255_keeps_the_unpadded_diagonal():
    padded = torch.full((1, 1, 40, 40), 255.0)
    padded[..., :SIZE, :SIZE] = label_from(vertical_line(8))
    near, far = np.zeros((40, 40), dtype=bool), np.zeros((40, 40), dtype=bool)
    near[:SIZE, :SIZE], far[:SIZE, :SIZE] = vertical_line(9), vertical_line(10)
    # the radius comes from the 20x20 valid box (1.41 px), not the 40x40 padded one (2.83 px)
    assert run(logits_from((near, 0.9), size=40), padded)["odsf"] == 1.0
    assert run(logits_from((far, 0.9), size=40), padded)["odsf"] == 0.0


def test_ods_pools_counts_and_ois_takes_each_image_best():
    gt = vertical_line(5)
    # image A: correct line at 0.9 plus a false line at 0.35; image B: correct line at 0.25 only.
    meter = BoundaryMeter(MAX_DIST)
    meter.update(logits_from((gt, 0.9), (vertical_line(15), 0.35)), label_from(gt))
    meter.update(logits_from((gt, 0.25)), label_from(gt))
    out = meter.compute()
    # t <= 0.25: A P 16/32 R 1, B P 1 R 1 -> pooled P 32/48, R 1 -> F 0.8 (best);
    # t in (0.25, 0.35]: P 16/32, R 16/32 -> 0.5; t in (0.35, 0.9]: P 1, R 1/2 -> 2/3.
    assert out["odsf"] == pytest.approx(0.8)
    assert out["ods_precision"] == pytest.approx(2 / 3) and out["ods_recall"] == 1.0
    assert out["odsf_threshold"] == pytest.approx(0.01)
    assert out["oisf"] == 1.0  # each image at its own best threshold is perfect
    counts = meter.state()["counts"].numpy()
    assert counts[30].tolist() == [16, 32, 16, 32]  # t = 0.31: (cntR, sumR, cntP, sumP)


def test_thresholds_sets_and_state_sum():
    assert len(boundary_thresholds()) == 99 and len(boundary_thresholds("hed")) == 101
    assert boundary_thresholds("hed")[0] == 0.001 and boundary_thresholds("hed")[-1] == 0.999
    with pytest.raises(ValueError, match="unknown boundary threshold set"):
        boundary_thresholds("bsds")
    np.testing.assert_allclose(boundary_thresholds([0.25, 0.5, 0.75]), [0.25, 0.5, 0.75])
    with pytest.raises(ValueError, match="increasing list inside"):
        boundary_thresholds([0.5, 0.2])
    coarse = BoundaryMeter(MAX_DIST, thresholds=[0.3, 0.7])
    coarse.update(logits_from((vertical_line(8), 0.5)), label_from(vertical_line(8)))
    assert coarse.state()["counts"].tolist() == [[16, 16, 16, 16], [0, 16, 0, 0]]  # found at 0.3, gone at 0.7
    inclusive = BoundaryMeter(MAX_DIST, thresholds=[0.5])
    inclusive.update(logits_from((vertical_line(8), 0.5)), label_from(vertical_line(8)))  # sigmoid(0) == 0.5
    assert inclusive.compute()["odsf"] == 1.0  # binarisation is prob >= t
    a, b, both = (BoundaryMeter(MAX_DIST) for _ in range(3))
    cases = [(logits_from((vertical_line(9), 0.6)), label_from(vertical_line(8))),
             (logits_from((vertical_line(3, range(2, 9)), 0.8)), label_from(vertical_line(3)))]
    a.update(*cases[0])
    b.update(*cases[1])
    both.update(torch.cat([cases[0][0], cases[1][0]]), torch.cat([cases[0][1], cases[1][1]]))
    a.load_state({k: v + b.state()[k] for k, v in a.state().items()})
    assert a.compute() == both.compute()
    assert a.compute()["num_images"] == 2


def test_rejects_bad_labels_and_tolerance():
    with pytest.raises(ValueError, match="0, 1 or 255"):
        run(logits_from(), label_from(vertical_line(8)) * 2)
    with pytest.raises(ValueError, match="fraction of the image diagonal"):
        BoundaryMeter(7.7)


def test_image_counts_gt_is_thinned_and_sum_r_constant():
    thick = np.zeros((SIZE, SIZE), dtype=bool)
    thick[2:18, 7:10] = True  # 3-px-wide GT band thins to a single column
    prob = np.where(vertical_line(8), 0.9, 0.001)
    counts = image_boundary_counts(prob, thick, np.ones_like(thick), boundary_thresholds(), MAX_DIST)
    assert len(set(counts[:, 1].tolist())) == 1
    assert counts[0, 1] == thin(thick).sum() < thick.sum()
    assert math.isclose(counts[50, 0] / counts[50, 1], 1.0)
