"""Boundary odsF (SEISM-style approximation): hand-built cases, exact agreement with the pre-rewrite implementation
(tests/boundary_reference.py) on synthetic NYUD-like images, the bit-parallel Guo-Hall thinning, the dynamic
maximum matching with its cover certificate, and the multi-process meter."""

from __future__ import annotations

import functools
import math
import multiprocessing
import time

import boundary_reference as reference
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random
from scipy.sparse.csgraph import maximum_bipartite_matching

from degmix_tuning.metrics import BoundaryMeter, MultiTaskEvaluator, boundary_thresholds, thin
from degmix_tuning.metrics.boundary import BoundaryGraph, f_measure, image_boundary_counts, match_count
from degmix_tuning.metrics.matching import DynamicMatching
from degmix_tuning.metrics.thinning import (_DELETE_FIRST, _DELETE_SECOND, _NEIGHBOURS, PackedLayers, _deletions,
                                            _Scratch, thin_layers)

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


def meter_inputs(logits: torch.Tensor, label: torch.Tensor, index: int = 0):
    """(prob, gt, valid) of one image exactly as BoundaryMeter.update hands them to image_boundary_counts."""
    prob = torch.sigmoid(logits.float())[index, 0].numpy()
    gt = label.reshape(logits.shape)[index, 0].numpy()
    return prob, gt == 1, gt != 255


# ---------------------------------------------------------------------------------------------- thinning
def naive_thin(mask: np.ndarray) -> np.ndarray:
    """Full-sweep Guo-Hall thinning written pixel by pixel, as an independent check of the packed version."""
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


def test_thin_reduces_a_filled_rectangle_to_its_centre_line():
    # reference from skimage.morphology.thin (which also matched this implementation on 300 random masks)
    mask = np.zeros((7, 11), bool)
    mask[2:5, 1:10] = True
    expect = np.zeros((7, 11), bool)
    expect[3, 2:9] = True
    np.testing.assert_array_equal(thin(mask), expect)
    np.testing.assert_array_equal(thin(expect), expect)  # idempotent


def test_thin_matches_naive_full_sweep_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(6):
        mask = rng.random((14, 15)) < 0.55
        np.testing.assert_array_equal(thin(mask), naive_thin(mask))


def test_packed_deletion_formulas_equal_the_published_conditions_for_every_neighbourhood():
    # every 8-bit neighbourhood code once: centre pixels in a row, each code's neighbours around its own centre
    # (4 columns apart, so no two neighbourhoods share a pixel); one subiteration of each kind must delete exactly
    # the centres the published-condition tables delete
    mask = np.zeros((3, 4 * 256), dtype=bool)
    for code in range(256):
        mask[1, 4 * code + 1] = True
        for k, (dr, dc) in enumerate(_NEIGHBOURS):
            mask[1 + dr, 4 * code + 1 + dc] = bool((code >> k) & 1)
    for first, table in ((True, _DELETE_FIRST), (False, _DELETE_SECOND)):
        packed = PackedLayers(*mask.shape, 1)
        packed.set_layer(0, mask)
        begin, end, row = packed.start(0), packed.start(1), packed.row_words
        words = packed.words
        deleted = _deletions(words[begin - 1:end + 1], words[begin - row - 1:end - row + 1],
                             words[begin + row - 1:end + row + 1], first, _Scratch(end - begin)).copy()
        packed.words[:] = 0
        packed.words[begin:end] = deleted
        np.testing.assert_array_equal(packed.layer(0)[1, 1::4], table, err_msg=f"first subiteration: {first}")


def test_thin_layers_equals_reference_thin_per_layer_on_word_boundaries():
    rng = np.random.default_rng(1)
    for width in (1, 63, 64, 65, 127, 129):  # rows that end exactly on / just past a 64-pixel word
        masks = ndi.gaussian_filter(rng.random((5, 23, width)), (0, 1.5, 1.5)) > np.linspace(0.4, 0.6, 5)[:, None,
                                                                                                            None]
        packed = PackedLayers(23, width, 5)
        for i, mask in enumerate(masks):
            packed.set_layer(i, mask)
        thin_layers(packed)
        for i, mask in enumerate(masks):
            np.testing.assert_array_equal(packed.layer(i), reference.thin(mask), err_msg=f"width {width} layer {i}")


def test_thin_layers_equals_reference_with_tiny_processing_chunks(monkeypatch):
    # chunks of one or a few rows split layers (dense passes) and neighbouring rows (row-gathering passes) across
    # chunk boundaries, which must not change any verdict
    from degmix_tuning.metrics import thinning

    rng = np.random.default_rng(3)
    masks = ndi.gaussian_filter(rng.random((6, 40, 70)), (0, 2, 2)) > np.linspace(0.45, 0.55, 6)[:, None, None]
    for chunk_words in (1, 2, 5, 64):
        monkeypatch.setattr(thinning, "_CHUNK_WORDS", chunk_words)
        packed = PackedLayers(40, 70, 6)
        for i, mask in enumerate(masks):
            packed.set_layer(i, mask)
        thin_layers(packed)
        for i, mask in enumerate(masks):
            np.testing.assert_array_equal(packed.layer(i), reference.thin(mask), err_msg=f"chunk {chunk_words}")


def test_level_sets_are_the_threshold_masks():
    rng = np.random.default_rng(2)
    levels = rng.integers(0, 102, size=(9, 70))
    cuts = [0, 1, 5, 64, 100, 101]
    packed = PackedLayers(9, 70, len(cuts))
    packed.set_level_sets(levels, cuts)
    for i, cut in enumerate(cuts):
        np.testing.assert_array_equal(packed.layer(i), levels > cut)


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


def test_dynamic_matching_stays_maximum_and_certified_while_right_vertices_come_and_go():
    rng = np.random.default_rng(0)
    for _ in range(60):
        rows, cols = rng.integers(1, 30, size=2)
        graph = sparse_random(rows, cols, density=rng.random() * 0.3, format="csr", random_state=rng.integers(1 << 30))
        graph.sort_indices()
        matcher = DynamicMatching(graph.indptr, graph.indices, cols)
        live = np.zeros(cols, dtype=bool)
        for _ in range(6):
            flip = rng.random(cols) < rng.random() * 0.6
            size = matcher.update(np.flatnonzero(flip & live), np.flatnonzero(flip & ~live))
            live ^= flip
            sub = graph[:, np.flatnonzero(live)].tocsr()
            expected = int((maximum_bipartite_matching(sub, perm_type="column") >= 0).sum()) if sub.nnz else 0
            assert size == expected
            assert matcher.certificate_errors() == []  # the cover proves the matching maximum
    single = DynamicMatching([0, 1], [0], 1)
    assert single.update([], [0]) == 1
    with pytest.raises(ValueError, match="currently off"):
        single.update([], [0])  # already on
    assert single.update([0], []) == 0
    with pytest.raises(ValueError, match="currently on"):
        single.update([0], [])  # already off
    with pytest.raises(ValueError, match="increasing right ids"):
        DynamicMatching([0, 2], [3, 1], 4)
    pair = DynamicMatching([0, 2, 3], [0, 1, 1], 2)
    assert pair.update([], [1]) == 1
    for removed, added in (([], [0, 0]), ([1], [1]), ([], [2]), ([1], [0, 1])):  # repeated, both, out of range, on
        with pytest.raises(ValueError, match="distinct"):
            pair.update(removed, added)
        assert pair.size == 1 and pair.certificate_errors() == []  # a rejected update changes nothing
    assert pair.update([], [0]) == 2


def test_dynamic_matching_on_geometric_graphs_with_long_augmenting_paths():
    """Pixel graphs like the metric's (GT curves x nearby predicted pixels, radius 2.5): chains of overlapping disks
    make augmenting paths and closed trees many vertices long, unlike the random graphs above."""
    rng = np.random.default_rng(1)
    for _ in range(8):
        region = ndi.gaussian_filter(rng.random((48, 64)), 4) > 0.5
        gt = (region != np.roll(region, 1, 0)) | (region != np.roll(region, 1, 1))
        near = ndi.binary_dilation(gt, iterations=2)
        candidates = np.argwhere(near)
        graph = BoundaryGraph(gt, 2.5, candidates)
        adjacency = csr_matrix((np.ones(len(graph.gt_indices)), graph.gt_indices, graph.gt_indptr),
                               shape=(graph.num_gt, len(candidates)))
        matcher = graph.matcher()
        live = np.zeros(len(candidates), dtype=bool)
        for _ in range(12):
            flip = rng.random(len(candidates)) < rng.choice([0.05, 0.3, 0.8])
            size = matcher.update(np.flatnonzero(flip & live), np.flatnonzero(flip & ~live))
            live ^= flip
            sub = adjacency[:, np.flatnonzero(live)].tocsr()
            assert size == int((maximum_bipartite_matching(sub, perm_type="column") >= 0).sum())
            assert matcher.certificate_errors() == []


def test_matcher_works_where_numba_has_no_writable_cache_folder():
    """Read-only site-packages and HOME: numba finds no cache locator and would refuse `cache=True` at import."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            "import numba.core.caching as caching; caching.CacheImpl._locator_classes = []\n"
            "from degmix_tuning.metrics.matching import DynamicMatching\n"
            "print(DynamicMatching([0, 2, 3], [0, 1, 1], 2).update([], [0, 1]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "2", run.stderr
    assert "no writable cache folder" in run.stderr and "NUMBA_CACHE_DIR" in run.stderr


def test_matching_fast_on_contour_graph_that_stalls_scipy():
    # a thinned prediction running along a GT contour on a 425x560 image: on graphs built like this one (same
    # image, thresholds 0.69-0.71) scipy 1.17's maximum_bipartite_matching took 11-120 s (scipy issue #26147).
    rng = np.random.default_rng(0)
    region = ndi.gaussian_filter(rng.random((425, 560)), 21) > 0.5
    gt = (region != np.roll(region, 1, 0)) | (region != np.roll(region, 1, 1))
    prob = np.exp(-ndi.distance_transform_edt(~gt) / 1.5) + 0.1 * rng.standard_normal(gt.shape)
    gt_map, pred = thin(gt), thin(prob >= 0.70)
    start = time.perf_counter()
    graph = BoundaryGraph(gt_map, 0.011 * math.hypot(425, 560), np.argwhere(pred))
    matcher = graph.matcher()
    size = matcher.update(np.zeros(0, dtype=np.int64), np.arange(graph.num_pred))
    assert size == graph.num_gt  # every GT pixel finds a partner
    assert time.perf_counter() - start < 10.0
    assert matcher.certificate_errors() == []


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


# ------------------------------------------------------------------- agreement with the pre-rewrite implementation
def hand_built_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, label) of the hand-built odsF tests above."""
    padded = torch.full((1, 1, 40, 40), 255.0)
    padded[..., :SIZE, :SIZE] = label_from(vertical_line(8))
    near = np.zeros((40, 40), dtype=bool)
    near[:SIZE, :SIZE] = vertical_line(9)
    strip = label_from(vertical_line(8))
    strip[..., :, 14:] = 255
    band = np.zeros((SIZE, SIZE), dtype=bool)
    band[2:18, 7:10] = True
    return [
        (logits_from((vertical_line(8), 0.9)), label_from(vertical_line(8))),
        (logits_from((vertical_line(9), 0.9)), label_from(vertical_line(8))),
        (logits_from((vertical_line(10), 0.9)), label_from(vertical_line(8))),
        (logits_from((band, 0.9)), label_from(vertical_line(8))),
        (logits_from((band, 0.9)), label_from(band)),  # thick GT, thinned
        (logits_from((vertical_line(8, range(2, 10)) | vertical_line(16, range(2, 6)), 0.9)),
         label_from(vertical_line(8))),
        (logits_from((vertical_line(8) | vertical_line(16), 0.9)), strip),
        (logits_from((near, 0.9), size=40), padded),
        (logits_from((vertical_line(5), 0.9), (vertical_line(15), 0.35)), label_from(vertical_line(5))),
        (logits_from((vertical_line(5), 0.5)), label_from(vertical_line(5))),  # prob exactly on a threshold
        (logits_from(), label_from(vertical_line(8))),  # nothing predicted
        (logits_from((vertical_line(8), 0.9)), torch.zeros(1, 1, SIZE, SIZE)),  # no GT
        (logits_from((vertical_line(8), 0.9)), torch.full((1, 1, SIZE, SIZE), 255.0)),  # all ignored
    ]


@functools.lru_cache(maxsize=None)
def scene_edges(seed: int) -> np.ndarray:
    """GT boundaries (2 px wide) of one 425x560 synthetic NYUD-like room."""
    from degmix_tuning.data.synthetic.render import render_indoor_scene

    return render_indoor_scene(seed, (425, 560)).edge.astype(bool)


def nyud_like(seed: int, size: tuple[int, int], scenes: tuple[int, ...], ignore: bool):
    """(logits [1, 1, H, W] float32, label) for a crop of the given scenes' boundaries (OR-ed for density).

    The prediction imitates an edge head without NMS: the true edges displaced by a smooth random field, a blurry
    ridge of varying strength around them, smoothed noise (texture responses) and a negative bias. Optional 255
    ignore regions: a border band and a rectangle.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    for _ in range(100):  # crops with 1.5-7 % boundary pixels
        edges = np.zeros(size, dtype=bool)
        for scene in scenes:
            top, left = rng.integers(0, 425 - h + 1), rng.integers(0, 560 - w + 1)
            edges |= scene_edges(scene)[top:top + h, left:left + w]
        if 0.015 <= edges.mean() <= 0.07:
            break
    rows, cols = np.mgrid[:h, :w]
    shift = [25 * ndi.gaussian_filter(rng.standard_normal(size), 12) for _ in range(2)]
    moved = ndi.map_coordinates(edges.astype(float), [rows + shift[0], cols + shift[1]], order=1) > 0.5
    strength = ndi.gaussian_filter(rng.random(size), 8)
    strength = (strength - strength.min()) / (np.ptp(strength) + 1e-12)
    logit = (rng.uniform(-4.5, -3) + (3 + 6 * strength) * np.exp(-ndi.distance_transform_edt(~moved) / rng.uniform(2, 4))
             + rng.uniform(6, 11) * ndi.gaussian_filter(rng.standard_normal(size), 2))
    label = edges.astype(np.float32)
    if ignore:
        label[:, :rng.integers(4, 12)] = 255
        r, c = rng.integers(0, h // 2), rng.integers(0, w // 2)
        label[r:r + h // 4, c:c + w // 5] = 255
    return torch.from_numpy(logit.astype(np.float32))[None, None], torch.from_numpy(label)[None, None]


# 2 full-size images (the scenes of 1.9 % and 3.4 % boundary pixels) and 18 crops of 120x160 at 1.5-7 %
SYNTHETIC = ([(seed, (425, 560), (seed,), seed == 1) for seed in (0, 1)]
             + [(100 + i, (120, 160), (i % 8,) if i % 3 else (i % 8, 7 - i % 8), i % 2 == 0) for i in range(18)])


def test_counts_equal_the_pre_rewrite_implementation_on_hand_built_cases():
    thresholds = boundary_thresholds()
    for logits, label in hand_built_cases():
        prob, gt, valid = meter_inputs(logits, label)
        for max_dist in (MAX_DIST, 0.011):
            for thin_gt in (True, False):
                np.testing.assert_array_equal(image_boundary_counts(prob, gt, valid, thresholds, max_dist, thin_gt),
                                              reference.image_boundary_counts(prob, gt, valid, thresholds, max_dist,
                                                                              thin_gt))
    prob, gt, valid = meter_inputs(*hand_built_cases()[8])
    for kind in ("hed", [0.3, 0.35, 0.36, 0.9]):
        thresholds = boundary_thresholds(kind)
        np.testing.assert_array_equal(image_boundary_counts(prob, gt, valid, thresholds, MAX_DIST),
                                      reference.image_boundary_counts(prob, gt, valid, thresholds, MAX_DIST))


def test_counts_equal_the_pre_rewrite_implementation_on_20_synthetic_nyud_like_images():
    thresholds = boundary_thresholds()
    pooled = {"new": np.zeros((99, 4), dtype=np.int64), "old": np.zeros((99, 4), dtype=np.int64)}
    ois = {"new": np.zeros(4, dtype=np.int64), "old": np.zeros(4, dtype=np.int64)}
    densities = []
    for seed, size, scenes, ignore in SYNTHETIC:
        prob, gt, valid = meter_inputs(*nyud_like(seed, size, scenes, ignore))
        densities.append(gt[valid].mean())
        for name, counts in (("new", image_boundary_counts(prob, gt, valid, thresholds, 0.011)),
                             ("old", reference.image_boundary_counts(prob, gt, valid, thresholds, 0.011))):
            pooled[name] += counts
            ois[name] += counts[int(np.argmax(f_measure(*counts.T)[2]))]
        np.testing.assert_array_equal(pooled["new"], pooled["old"], err_msg=f"image {seed} {size}")
    assert 0.015 <= min(densities) and max(densities) <= 0.07 and np.ptp(densities) > 0.03  # NYUD-like, spread out
    for name in ("new", "old"):  # and so ODS / OIS are equal too (exactly, not just within 1e-9)
        precision, recall, f = f_measure(*pooled[name].T)
        pooled[name] = (f.max(), precision[f.argmax()], recall[f.argmax()], f_measure(*ois[name])[2])
    assert pooled["new"] == pooled["old"]


# ------------------------------------------------------------------------------------------- worker processes
def test_meter_results_identical_with_one_or_two_worker_processes():
    batches = [nyud_like(300 + i, (96, 128), (i % 8,), i == 1) for i in range(4)]
    results = {}
    for workers in (1, 2):
        meter = BoundaryMeter(0.011, workers=workers)
        for start in (0, 2):
            meter.update(torch.cat([b[0] for b in batches[start:start + 2]]),
                         torch.cat([b[1] for b in batches[start:start + 2]]))
        state = {key: value.clone() for key, value in meter.state().items()}  # waits for the workers
        assert (meter._executor is not None) == (workers == 2)  # N=1 never starts a pool
        results[workers] = (state, meter.compute())
        assert meter._executor is None  # compute() shut the pool down
    assert all(torch.equal(results[1][0][key], results[2][0][key]) for key in results[1][0])
    assert results[1][1] == results[2][1] and results[1][1]["num_images"] == 4
    assert multiprocessing.active_children() == []  # no leaked processes


def test_worker_counts_are_validated_and_passed_to_the_boundary_meter_only():
    from degmix_tuning.data.info import get_dataset_info

    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive number of processes"):
            BoundaryMeter(0.011, workers=bad)
        with pytest.raises(ValueError, match="workers must be a positive number of processes"):
            MultiTaskEvaluator(("edge",), get_dataset_info("nyud"), workers=bad)
    evaluator = MultiTaskEvaluator(("semseg", "edge"), get_dataset_info("nyud"), workers=3)
    assert evaluator.meters["edge"].workers == 3
    override = MultiTaskEvaluator(("edge",), get_dataset_info("nyud"), meter_kwargs={"edge": {"workers": 1}},
                                  workers=3)
    assert override.meters["edge"].workers == 1
    evaluator.close()  # nothing started: a no-op


def test_cli_eval_workers_flag(monkeypatch, capsys):
    import degmix_tuning.commands.run as run
    import degmix_tuning.metrics
    import degmix_tuning.training.engine
    from degmix_tuning.cli import build_parser, main

    parser = build_parser()
    assert parser.parse_args(["evaluate", "run"]).eval_workers == run._available_cores() >= 1
    assert parser.parse_args(["evaluate", "run", "--eval-workers", "3"]).eval_workers == 3
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["evaluate", "run", "--eval-workers", bad])
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("degmix-tuning evaluate: error: argument --eval-workers:")

    seen = {}

    class Recorder:
        def __init__(self, tasks, info, workers=1):
            seen["workers"] = workers

        def close(self):
            seen["closed"] = True

    class Config:
        class model:
            tasks, dataset = ("edge",), "nyud"

        class train:
            eval_batch_size = 2

    monkeypatch.setattr(run, "_load", lambda args: (None, Config))
    monkeypatch.setattr(run, "_dataset", lambda model, cfg, split: ([], None, None))
    monkeypatch.setattr(degmix_tuning.metrics, "MultiTaskEvaluator", Recorder)
    monkeypatch.setattr(degmix_tuning.training.engine, "evaluate", lambda model, loader, evaluator: {})
    assert main(["evaluate", "run", "--eval-workers", "3"]) == 0
    assert seen == {"workers": 3, "closed": True}
