"""The fast CPU paths of the segmentation / normals / depth / saliency meters equal the direct formulas bit for bit.

Each reference below is the pre-speed-up implementation written out plainly (torch.argmax + boolean indexing +
bincount, F.normalize + norm(dim=1) + atan2, bucketize histograms). States are compared with torch.equal (exact),
computed metrics with == (NaN == NaN), including edge cases: fully ignored images and batches, classes absent
everywhere, ties and NaN in logits, zero-length normals, channels-last / 1-pixel / float64 / uint8 inputs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from degmix_tuning.metrics import DepthMeter, NormalsMeter, SaliencyMeter, SegmentationMeter, angular_error_degrees
from degmix_tuning.metrics.saliency import maxf_thresholds, per_image_miou_thresholds
from degmix_tuning.metrics.segmentation import argmax_channels

IGNORE = 255


# ------------------------------------------------------------------------------------------- references
def reference_confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    ids = pred.argmax(dim=1) if pred.is_floating_point() else pred
    gt = label.reshape(ids.shape).long()
    valid = gt != IGNORE
    flat = gt[valid] * num_classes + ids[valid].long()
    return torch.bincount(flat, minlength=num_classes ** 2).view(num_classes, num_classes)


def reference_angles(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    p = F.normalize(pred, p=2, dim=1)
    g = F.normalize(gt, p=2, dim=1)
    return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))


def reference_normals_state(pred: torch.Tensor, label: torch.Tensor, bin_width: float = 0.01) -> dict:
    num_bins = int(math.ceil(180.0 / bin_width))
    angle = reference_angles(pred.float(), label.float())[(label != IGNORE).all(dim=1)].double()
    bins = (angle / bin_width).long().clamp_(0, num_bins - 1)
    return {"angle_sum": angle.sum(), "angle_sq_sum": (angle ** 2).sum(), "count": torch.tensor(angle.numel()),
            "below": torch.stack([(angle < t).sum() for t in (11.25, 22.5, 30.0)]),
            "histogram": torch.bincount(bins, minlength=num_bins)}


def reference_depth_state(pred: torch.Tensor, label: torch.Tensor) -> dict:
    label = label.reshape(pred.shape)
    valid = (label != IGNORE) & (label > 0)
    p = pred.double().clamp_min(0.0)[valid]
    g = label.double()[valid]
    return {"sq_err": ((p - g) ** 2).sum(), "log_sq_err": ((torch.log(p.clamp_min(1e-9)) - torch.log(g)) ** 2).sum(),
            "abs_rel": ((p - g).abs() / g).sum(), "count": torch.tensor(float(g.numel()), dtype=torch.float64)}


def reference_saliency_state(pred: torch.Tensor, label: torch.Tensor) -> dict:
    prob = (torch.softmax(pred.float(), dim=1)[:, 1] if pred.shape[1] == 2 else torch.sigmoid(pred.float())[:, 0])
    gt = label.long()
    valid = gt != IGNORE
    positive = gt == 1
    state = {
        "pred_pos": torch.stack([((prob >= t) & valid).sum() for t in maxf_thresholds()]),
        "tp": torch.stack([((prob >= t) & positive).sum() for t in maxf_thresholds()]),
        "actual_pos": positive.sum(),
    }
    iou_sum = torch.zeros(len(per_image_miou_thresholds()), dtype=torch.float64)
    images = 0
    for b in range(prob.shape[0]):
        if not valid[b].any():
            continue
        images += 1
        for j, t in enumerate(per_image_miou_thresholds()):
            pred_pos = float(((prob[b] > t) & valid[b]).sum())
            tp = float(((prob[b] > t) & positive[b]).sum())
            union = pred_pos + float(positive[b].sum()) - tp
            iou_sum[j] += tp / union if union > 0 else 1.0
    state["image_iou_sum"] = iou_sum
    state["num_images"] = torch.tensor(images)
    return state


# -------------------------------------------------------------------------------------------- helpers
def same_results(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_results(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_results(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact equality, NaN positions included (torch.equal says NaN != NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a[~a.isnan()], b[~b.isnan()])


def assert_state(meter, expected: dict, keys=None) -> None:
    state = meter.state()
    for key in keys or expected:
        assert identical(state[key], expected[key].to(state[key].dtype)), (key, state[key], expected[key])


def seg_case(g: torch.Generator, batch: int, classes: int, h: int = 23, w: int = 37):
    logits = torch.randn(batch, classes, h, w, generator=g)
    label = torch.randint(0, classes, (batch, h, w), generator=g)
    label[torch.rand(batch, h, w, generator=g) < 0.25] = IGNORE
    return logits, label


# -------------------------------------------------------------------------------------------- segmentation
@pytest.mark.parametrize("classes", [1, 2, 7, 21, 40, 300])
def test_argmax_channels_equals_torch_argmax_with_ties_and_infinities(classes):
    g = torch.Generator().manual_seed(classes)
    logits = torch.randn(2, classes, 9, 13, generator=g).round()  # many exact ties: the first index must win
    logits[0, :, 0, 0] = 1.0  # all channels tied
    logits[1, -1, 1, 1] = float("inf")
    logits[1, :, 2, 2] = -float("inf")
    logits[0, :, 3, 3] = 0.0
    logits[0, 0, 3, 3] = -0.0  # -0.0 == +0.0: still a tie, channel 0 wins
    assert torch.equal(argmax_channels(logits), logits.argmax(dim=1))
    assert torch.equal(argmax_channels(logits.double()), logits.double().argmax(dim=1))


def test_argmax_channels_nan_falls_back_to_torch_rule():
    logits = torch.randn(1, 5, 4, 4)
    logits[0, 3, 1, 2] = float("nan")
    logits[0, 1, 1, 2] = float("inf")
    assert torch.equal(argmax_channels(logits), logits.argmax(dim=1))


@pytest.mark.parametrize("classes", [7, 21, 40])
def test_segmentation_meter_equals_reference(classes):
    g = torch.Generator().manual_seed(10 + classes)
    meter = SegmentationMeter(classes)
    expected = torch.zeros(classes, classes, dtype=torch.int64)
    logits, label = seg_case(g, 2, classes)
    label[1] = IGNORE  # one fully ignored image
    absent = classes - 1  # a class absent everywhere (neither label nor prediction)
    label[label == absent] = 0
    logits[:, absent] = -1e4
    tied = logits.round()
    batches = [(logits, label), (tied, label.to(torch.uint8)), (logits.double(), label[:, None]),
               (logits.contiguous(memory_format=torch.channels_last), label),
               (logits[:, :, 2:19, 3:30], label[:, 2:19, 3:30]),  # non-contiguous views
               (logits.argmax(dim=1), label), (logits.argmax(dim=1).to(torch.uint8), label),  # ids given
               (torch.full_like(logits, 2.0), label),  # every pixel tied: class 0
               (logits[:1], torch.full_like(label[:1], IGNORE))]  # fully ignored batch
    for pred, lab in batches:
        meter.update(pred, lab)
        expected += reference_confusion(pred, lab, classes)
    assert torch.equal(meter.state()["confusion"], expected)
    out = meter.compute()
    assert out["iou_per_class"][absent] == 0.0
    conf = expected.double()
    tp = conf.diag()
    iou = tp / torch.clamp(conf.sum(0) + conf.sum(1) - tp, min=1e-8)
    assert out["miou"] == float(iou.mean())


def test_segmentation_meter_nan_logits_and_errors_match_reference():
    g = torch.Generator().manual_seed(1)
    logits, label = seg_case(g, 2, 5)
    logits[1, 2, 4, 4] = float("nan")
    meter = SegmentationMeter(5)
    meter.update(logits, label)
    assert torch.equal(meter.state()["confusion"], reference_confusion(logits, label, 5))
    bad = label.clone()
    bad[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"class ids \[9\]"):
        meter.update(logits, bad)
    bad[0, 0, 0] = -3
    with pytest.raises(ValueError, match=r"class ids \[-3\]"):
        meter.update(logits, bad)
    ids = logits.nan_to_num().argmax(dim=1)
    ids[0, 1, 1] = 5
    label[0, 1, 1] = 1
    with pytest.raises(ValueError, match="predicted class ids must lie in 0..4"):
        meter.update(ids, label)
    label[0, 1, 1] = IGNORE  # out-of-range ids on ignored pixels are not checked (as before)
    meter.update(ids, label)


# ------------------------------------------------------------------------------------------------ normals
def normals_case(g: torch.Generator, batch: int, h: int = 19, w: int = 29):
    label = F.normalize(torch.randn(batch, 3, h, w, generator=g), dim=1)
    label = torch.where(torch.rand(batch, 1, h, w, generator=g) < 0.2, torch.full_like(label, IGNORE), label)
    scale = torch.exp(3 * torch.randn(batch, 1, h, w, generator=g))  # unnormalised, wide range of lengths
    return torch.randn(batch, 3, h, w, generator=g) * scale, label


def test_angular_error_bit_identical_to_formula():
    g = torch.Generator().manual_seed(2)
    pred, label = normals_case(g, 2, 64, 96)
    label = torch.where(label == IGNORE, F.normalize(torch.randn_like(label), dim=1), label)
    pred[:, :, :4] = 0.0  # zero-length predictions: 90 degrees
    pred[0, :, 5, :10] = label[0, :, 5, :10] * 7  # parallel
    pred[1, :, 6, :10] = -label[1, :, 6, :10] * 0.1  # antiparallel
    label[1, :, 7, :10] = 0.0  # zero-length labels
    pred[0, :, 8, 8] = torch.tensor([1e30, -1e30, 3e29])  # squares overflow to inf
    pred[1, :, 9, 9] = torch.tensor([1e-30, 2e-30, -1e-30])  # squares underflow
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            assert torch.equal(angular_error_degrees(pred, label), reference_angles(pred, label))
        finally:
            torch.set_num_threads(previous)
    assert torch.equal(angular_error_degrees(pred, label)[:, :4], torch.full((2, 4, 96), 90.0))


def test_normals_meter_equals_reference_with_edge_cases():
    g = torch.Generator().manual_seed(3)
    meter, coarse = NormalsMeter(), NormalsMeter(bin_width=0.5)
    expected = {k: torch.zeros_like(v) for k, v in meter.state().items()}
    expected_coarse = {k: torch.zeros_like(v) for k, v in coarse.state().items()}
    pred, label = normals_case(g, 2)
    pred[:, :, :3] = 0.0  # zero-length predictions
    all_ignored = label.clone()
    all_ignored[1] = IGNORE  # one fully ignored image
    one_pixel_pred, one_pixel_label = normals_case(g, 3, 1, 1)  # torch's last-dim norm kernel: formula kept
    nan_pred = pred.clone()
    nan_pred[0, 1, 2, 2] = float("nan")
    batches = [(pred, label), (pred, all_ignored), (pred.double(), label),
               (pred.contiguous(memory_format=torch.channels_last), label), (pred[:, :, 1:, 2:], label[:, :, 1:, 2:]),
               (one_pixel_pred, one_pixel_label), (nan_pred, label), (pred, torch.full_like(label, IGNORE))]
    for p, lab in batches:
        meter.update(p, lab)
        coarse.update(p, lab)
        for target, bin_width in ((expected, 0.01), (expected_coarse, 0.5)):
            for key, value in reference_normals_state(p, lab, bin_width).items():
                target[key] = target[key] + value
    assert_state(meter, expected)
    assert_state(coarse, expected_coarse)
    assert math.isnan(meter.compute()["mean_angle"])  # the NaN prediction propagates exactly as before
    empty = NormalsMeter()
    empty.update(pred, torch.full_like(label, IGNORE))
    assert empty.compute()["num_pixels"] == 0 and empty.compute()["median_angle"] is None  # missing, not NaN


# -------------------------------------------------------------------------------------------------- depth
def test_depth_meter_equals_reference():
    g = torch.Generator().manual_seed(4)
    meter = DepthMeter()
    expected = {k: torch.zeros_like(v) for k, v in meter.state().items()}
    label = torch.rand(2, 1, 21, 33, generator=g) * 8
    label[torch.rand(2, 1, 21, 33, generator=g) < 0.2] = 0.0
    label[torch.rand(2, 1, 21, 33, generator=g) < 0.1] = IGNORE
    pred = torch.randn(2, 1, 21, 33, generator=g) * 2 + 3  # some negative: clamped to 0, then floored for the log
    ignored = label.clone()
    ignored[0] = IGNORE
    for p, lab in [(pred, label), (pred, label[:, 0]), (pred.double(), label.double()), (pred, ignored),
                   (pred[:, :, 3:, 5:], label[:, :, 3:, 5:]), (pred, torch.zeros_like(label))]:
        meter.update(p, lab)
        for key, value in reference_depth_state(p, lab).items():
            expected[key] = expected[key] + value
    assert_state(meter, expected)


# ----------------------------------------------------------------------------------------------- saliency
@pytest.mark.parametrize("channels", [1, 2])
def test_saliency_meter_equals_reference(channels):
    g = torch.Generator().manual_seed(5 + channels)
    meter = SaliencyMeter()
    expected = {k: torch.zeros_like(v) for k, v in meter.state().items()}
    pred = torch.randn(3, channels, 17, 23, generator=g) * 3
    label = (torch.rand(3, 17, 23, generator=g) > 0.6).long()
    label[torch.rand(3, 17, 23, generator=g) < 0.2] = IGNORE
    label[1] = IGNORE  # fully ignored image: not scored per image
    label[2] = 0  # no positives
    on_threshold = torch.zeros(1, 2, 4, 5) if channels == 2 else torch.zeros(1, 1, 4, 5)  # prob exactly 0.5
    for p, lab in [(pred, label), (pred.round(), label.to(torch.uint8)), (on_threshold, torch.ones(1, 4, 5).long())]:
        meter.update(p, lab)
        for key, value in reference_saliency_state(p, lab).items():
            expected[key] = expected[key] + value
    assert_state(meter, expected, keys=["pred_pos", "tp", "actual_pos", "num_images"])
    # per-image IoU: same formula, summed in another order by the plain loop -> compare to 1e-12
    assert torch.allclose(meter.state()["image_iou_sum"], expected["image_iou_sum"], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="0, 1 or 255"):
        meter.update(pred, torch.full_like(label, 2))


def test_saliency_nan_logits_take_the_generic_path():
    from degmix_tuning.metrics import saliency

    pred = torch.randn(2, 2, 6, 7)
    pred[0, 1, 2, 3] = float("nan")
    label = (torch.rand(2, 6, 7) > 0.5).long()
    fast, generic = SaliencyMeter(), SaliencyMeter()
    fast.update(pred, label)
    # the generic (bucketize) path, as run on non-CPU devices
    prob = saliency.saliency_probability(pred).contiguous()
    gt = label.long()
    valid = gt != IGNORE
    positive = gt == 1
    level = torch.bucketize(prob[valid], generic.thresholds, right=True)
    n = len(generic.thresholds)
    generic._add("pred_pos", torch.bincount(level, minlength=n + 1).flip(0).cumsum(0).flip(0)[1:])
    generic._add("tp", torch.bincount(level[positive[valid]], minlength=n + 1).flip(0).cumsum(0).flip(0)[1:])
    generic._add("actual_pos", (positive & valid).sum())
    generic._update_per_image_miou(prob, positive, valid)
    for key, value in generic.state().items():
        assert torch.equal(fast.state()[key], value), key


def test_fast_meters_two_updates_equal_one_and_results_match_reference_compute():
    g = torch.Generator().manual_seed(6)
    logits, label = seg_case(g, 4, 40, 31, 41)
    whole, split = SegmentationMeter(40), SegmentationMeter(40)
    whole.update(logits, label)
    split.update(logits[:1], label[:1])
    split.update(logits[1:], label[1:])
    assert same_results(whole.compute(), split.compute())
