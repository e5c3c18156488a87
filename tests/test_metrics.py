"""Metrics against hand-computed values: mIoU, depth, normals, saliency maxF, delta-m and the evaluator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from degmix_tuning.data.info import get_dataset_info
from degmix_tuning.metrics import (
    METERS, DepthMeter, MultiTaskEvaluator, NormalsMeter, SaliencyMeter, SegmentationMeter, delta_m, task_deltas,
)
from degmix_tuning.metrics.saliency import f_beta, maxf_thresholds
from degmix_tuning.tasks import TASKS, get_task


def one_hot_logits(ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, H, W] class ids -> [B, C, H, W] logits whose argmax is `ids`."""
    return F.one_hot(ids, num_classes).permute(0, 3, 1, 2).float() * 5.0


def prob_logits(prob: torch.Tensor) -> torch.Tensor:
    """[B, H, W] probabilities -> 2-channel logits with softmax[:, 1] == prob."""
    return torch.stack([torch.zeros_like(prob), torch.log(prob / (1 - prob))], dim=1)


# ---------------------------------------------------------------------------------------------- segmentation
SEG_GT = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
SEG_PRED = torch.tensor([[[0, 1, 1], [1, 1, 0]]])


def test_miou_hand_computed_2x3():
    meter = SegmentationMeter(3)
    meter.update(one_hot_logits(SEG_PRED, 3), SEG_GT)
    out = meter.compute()
    # the ignored pixel (pred 0) counts nowhere. class 0: TP 1, FP 0, FN 1 -> 1/2.
    # class 1: TP 2 (0,2),(1,0); FP 2 (0,1) gt 0, (1,1) gt 2; FN 0 -> 2/4.  class 2: TP 0, FN 1 -> 0.
    assert out["iou_per_class"] == pytest.approx([0.5, 0.5, 0.0])
    assert out["miou"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert out["pixel_acc"] == pytest.approx(3 / 5)


def test_miou_absent_class_counts_as_zero_and_ids_accepted():
    meter = SegmentationMeter(4)  # class 3 appears in neither gt nor prediction
    meter.update(SEG_PRED, SEG_GT)  # integer ids are accepted too
    assert meter.compute()["miou"] == pytest.approx((0.5 + 0.5 + 0 + 0) / 4)


def test_miou_rejects_corrupt_labels_and_shapes():
    meter = SegmentationMeter(3)
    with pytest.raises(ValueError, match=r"class ids \[7\]"):
        meter.update(one_hot_logits(SEG_PRED, 3), torch.tensor([[[0, 7, 1], [1, 2, 255]]]))
    with pytest.raises(ValueError, match="expected 3 output channels"):
        meter.update(torch.zeros(1, 4, 2, 3), SEG_GT)
    with pytest.raises(ValueError, match="spatial size"):
        meter.update(torch.zeros(1, 3, 4, 3), SEG_GT)


# --------------------------------------------------------------------------------------------------- depth
def test_depth_hand_computed():
    gt = torch.tensor([[[[1.0, 2.0, 0.0], [4.0, 255.0, 0.5]]]])
    pred = torch.tensor([[[[1.5, 2.0, 9.0], [3.0, 7.0, -1.0]]]])  # -1 is clamped to 0; 9.0 and 7.0 sit on invalid gt
    meter = DepthMeter()
    meter.update(pred, gt)
    out = meter.compute()
    # valid: (1.5 vs 1), (2 vs 2), (3 vs 4), (0 vs 0.5): squared errors 0.25 + 0 + 1 + 0.25 = 1.5 over 4 pixels.
    assert out["rmse"] == pytest.approx(math.sqrt(1.5 / 4))
    assert out["abs_rel"] == pytest.approx((0.5 / 1 + 0 + 1 / 4 + 0.5 / 0.5) / 4)
    logs = [math.log(1.5) - 0, 0.0, math.log(3) - math.log(4), math.log(1e-9) - math.log(0.5)]
    assert out["log_rmse"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    assert out["num_pixels"] == 4


def test_depth_is_pooled_not_per_image_mean():
    meter = DepthMeter()
    meter.update(torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 1.0))  # error 1 on one pixel
    meter.update(torch.ones(1, 1, 1, 3), torch.ones(1, 1, 1, 3))  # 3 perfect pixels
    # pooled: sqrt(1 / 4) = 0.5; a per-image mean would give (1 + 0) / 2.
    assert meter.compute()["rmse"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------- normals
def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0]


def test_normals_hand_computed_90_60_0_20():
    # pixels: 90 deg, 60 deg (prediction not unit length), identical, 20 deg, and one invalid pixel.
    preds = [[1, 0, 0], [2, 0, 0], [0, 0, 1], _unit(0), [0.3, -0.2, 0.5]]
    gts = [[0, 1, 0], _unit(60), [0, 0, 1], _unit(20), [255, 255, 255]]
    pred = torch.tensor(preds, dtype=torch.float32).T.reshape(1, 3, 1, 5)
    gt = torch.tensor(gts, dtype=torch.float32).T.reshape(1, 3, 1, 5)
    meter = NormalsMeter()
    meter.update(pred, gt)
    out = meter.compute()
    assert out["num_pixels"] == 4
    assert out["mean_angle"] == pytest.approx((90 + 60 + 0 + 20) / 4, abs=1e-4)
    assert out["rmse_angle"] == pytest.approx(math.sqrt((90**2 + 60**2 + 0 + 20**2) / 4), abs=1e-4)  # = 55
    assert out["median_angle"] == pytest.approx((20 + 60) / 2, abs=0.005 + 1e-4)  # histogram: half a 0.01 bin
    assert (out["within_11_25"], out["within_22_5"], out["within_30"]) == pytest.approx((1 / 4, 2 / 4, 2 / 4))


def test_normals_median_odd_count_and_bin_width():
    meter = NormalsMeter(bin_width=1.0)
    angles = [10.3, 47.6, 130.2]
    pred = torch.tensor([[1.0, 0.0, 0.0]] * 3).T.reshape(1, 3, 1, 3)
    gt = torch.tensor([_unit(a) for a in angles]).T.reshape(1, 3, 1, 3)
    meter.update(pred, gt)
    assert meter.compute()["median_angle"] == pytest.approx(47.5)  # centre of the 1-degree bin [47, 48)


# ------------------------------------------------------------------------------------------------ saliency
SAL_GT = torch.tensor([[[1, 0, 1, 0, 255]]])
SAL_PROB = torch.tensor([[[0.92, 0.72, 0.52, 0.22, 0.99]]])


def test_maxf_hand_computed_winning_threshold():
    meter = SaliencyMeter()
    meter.update(prob_logits(SAL_PROB), SAL_GT)
    out = meter.compute()
    # t in 0.75..0.90 keeps only 0.92: TP 1, PP 1, AP 2 -> P 1, R 0.5, F = 1.3*0.5/(0.3*1 + 0.5) = 0.8125.
    # (t <= 0.20: P .5 R 1 -> 0.5652; t 0.25..0.50: P 2/3 R 1 -> 0.7222; t 0.55..0.70: P .5 R .5 -> 0.5; 0.95: 0)
    assert out["maxf"] == pytest.approx(0.8125)
    assert out["maxf_threshold"] == pytest.approx(0.75)
    f = f_beta(meter.state()["tp"], meter.state()["pred_pos"], meter.state()["actual_pos"].expand(19))
    assert f[0].item() == pytest.approx(1.3 * 0.5 / 1.15)
    assert f[6].item() == pytest.approx(1.3 * (2 / 3) / (0.3 * 2 / 3 + 1))
    assert f[12].item() == pytest.approx(0.5)
    assert f[18].item() == 0.0  # no predicted positives: NaN -> 0


def test_maxf_threshold_is_inclusive():
    meter = SaliencyMeter()
    meter.update(torch.zeros(1, 2, 1, 1), torch.ones(1, 1, 1, dtype=torch.long))  # softmax gives exactly 0.5
    assert meter.state()["pred_pos"][9].item() == 1  # thresholds[9] == 0.5 and the rule is prob >= t
    assert meter.state()["pred_pos"][10].item() == 0


def test_maxf_sigmoid_single_channel_matches_softmax():
    meter = SaliencyMeter()
    meter.update(torch.log(SAL_PROB / (1 - SAL_PROB)).unsqueeze(1), SAL_GT)
    assert meter.compute()["maxf"] == pytest.approx(0.8125)


def test_maxf_counts_match_direct_threshold_loop():
    prob = torch.rand(3, 9, 11)
    gt = (torch.rand(3, 9, 11) > 0.6).long()
    gt[0, :2] = 255
    meter = SaliencyMeter()
    meter.update(prob_logits(prob.clamp(1e-4, 1 - 1e-4)), gt)
    p = torch.softmax(prob_logits(prob.clamp(1e-4, 1 - 1e-4)), 1)[:, 1]
    valid = gt != 255
    for j, t in enumerate(maxf_thresholds()):
        positive = (p >= t) & valid
        assert meter.state()["pred_pos"][j] == positive.sum()
        assert meter.state()["tp"][j] == (positive & (gt == 1)).sum()
    assert len(maxf_thresholds()) == 19


def test_per_image_miou_mtlora_definition():
    meter = SaliencyMeter()
    prob = torch.stack([SAL_PROB[0], torch.full((1, 5), 0.1)])  # image 2: no gt positives, no predictions
    gt = torch.stack([SAL_GT[0], torch.zeros(1, 5, dtype=torch.long)])
    meter.update(prob_logits(prob), gt)
    out = meter.compute()
    # image 1 (strict >): t=0.20 -> 2/4; t=0.25..0.50 -> 2/3; t=0.55..0.70 -> 1/3; t>=0.75 -> 1/2. image 2: 1 always.
    assert out["per_image_miou"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["per_image_miou_threshold"] == pytest.approx(0.25)


def test_per_image_miou_skips_fully_ignored_images():
    meter = SaliencyMeter()
    prob = torch.stack([SAL_PROB[0], torch.full((1, 5), 0.9)])
    gt = torch.stack([SAL_GT[0], torch.full((1, 5), 255, dtype=torch.long)])  # image 2 has no valid pixel
    meter.update(prob_logits(prob), gt)
    assert int(meter.state()["num_images"]) == 1
    assert meter.compute()["per_image_miou"] == pytest.approx(2 / 3)


def test_saliency_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0, 1 or 255"):
        SaliencyMeter().update(prob_logits(SAL_PROB), torch.tensor([[[1, 0, 2, 0, 255]]]))


# ------------------------------------------------------------------------- accumulation and state reduce
def _random_case(task: str, batch: int, generator: torch.Generator):
    h, w = 6, 7
    if task == "semseg":
        gt = torch.randint(0, 5, (batch, h, w), generator=generator)
        gt[:, 0, :3] = 255
        return torch.randn(batch, 5, h, w, generator=generator), gt
    if task == "depth":
        gt = torch.rand(batch, 1, h, w, generator=generator) * 5
        gt[:, :, 0, :2] = 255
        gt[:, :, 1, :2] = 0
        return torch.randn(batch, 1, h, w, generator=generator) + 2, gt
    if task == "normals":
        gt = F.normalize(torch.randn(batch, 3, h, w, generator=generator), dim=1)
        gt[:, :, 0, :3] = 255
        return torch.randn(batch, 3, h, w, generator=generator), gt
    gt = (torch.rand(batch, h, w, generator=generator) > 0.5).long()
    gt[:, 2, :2] = 255
    return torch.randn(batch, 2, h, w, generator=generator), gt


METER_FACTORIES = {
    "semseg": lambda: SegmentationMeter(5), "depth": DepthMeter, "normals": NormalsMeter, "sal": SaliencyMeter,
}


@pytest.mark.parametrize("task", sorted(METER_FACTORIES))
def test_two_updates_equal_one_concatenated_and_state_sum(task):
    g = torch.Generator().manual_seed(3)
    (p1, l1), (p2, l2) = _random_case(task, 2, g), _random_case(task, 3, g)
    split, whole, a, b = (METER_FACTORIES[task]() for _ in range(4))
    split.update(p1, l1)
    split.update(p2, l2)
    whole.update(torch.cat([p1, p2]), torch.cat([l1, l2]))
    a.update(p1, l1)
    b.update(p2, l2)
    pooled = METER_FACTORIES[task]()
    pooled.load_state({k: v + b.state()[k] for k, v in a.state().items()})  # what a cross-process sum does
    expected = whole.compute()
    def close(got: dict) -> bool:
        # key by key: pytest.approx refuses nested containers (lists inside a dict) since pytest 9.1
        return got.keys() == expected.keys() and all(got[k] == pytest.approx(v, rel=1e-9, abs=1e-12)
                                                      for k, v in expected.items())

    for got in (split.compute(), pooled.compute()):
        assert close(got) if task != "sal" else got == expected
    a.merge_(b)
    assert close(a.compute())
    a.reset()
    assert all(int(v.abs().sum()) == 0 for v in a.state().values())


def test_reduce_applies_function_to_every_state_tensor():
    meter = SegmentationMeter(3)
    meter.update(SEG_PRED, SEG_GT)
    before = meter.compute()["miou"]
    meter.reduce_(lambda t: t * 2)  # "two identical processes": counts double, IoU unchanged
    assert int(meter.state()["confusion"].sum()) == 10
    assert meter.compute()["miou"] == pytest.approx(before)
    assert meter.to("cpu") is meter and meter.compute()["miou"] == pytest.approx(before)  # moves keep the state
    with pytest.raises(ValueError, match="shape"):
        meter.load_state({"confusion": torch.zeros(4, 4)})
    with pytest.raises(KeyError, match="expected keys"):
        meter.load_state({"hist": torch.zeros(3, 3)})


# ----------------------------------------------------------------------------------------------- delta-m
def test_delta_m_signs_and_value():
    reference = {"semseg": {"miou": 0.40}, "depth": {"rmse": 0.50}, "normals": {"mean_angle": 20.0}}
    results = {"semseg": {"miou": 0.44}, "depth": {"rmse": 0.45}, "normals": {"mean_angle": 22.0}}
    deltas = task_deltas(results, reference)
    # semseg +0.04/0.40 = +10 %; depth lower is better: -(0.45-0.5)/0.5 = +10 %; normals -(22-20)/20 = -10 %.
    assert deltas == pytest.approx({"semseg": 10.0, "depth": 10.0, "normals": -10.0})
    assert delta_m(results, reference) == pytest.approx(10 / 3)
    assert delta_m(results, reference, tasks=["semseg", "depth"]) == pytest.approx(10.0)
    worse = {"semseg": {"miou": 0.36}, "depth": {"rmse": 0.55}}
    assert delta_m(worse, reference, tasks=["semseg", "depth"]) == pytest.approx(-10.0)


def test_delta_m_other_metric_and_errors():
    reference = {"sal": {"maxf": 0.8, "per_image_miou": 0.5}, "depth": {"rmse": 0.5, "log_rmse": 0.2}}
    results = {"sal": {"maxf": 0.8, "per_image_miou": 0.55}, "depth": {"rmse": 0.5, "log_rmse": 0.25}}
    assert delta_m(results, reference, metrics={"sal": "per_image_miou", "depth": "log_rmse"}) == pytest.approx(
        (10.0 - 25.0) / 2)
    with pytest.raises(KeyError, match="no metric 'miou'"):
        delta_m({"semseg": {"acc": 1.0}}, {"semseg": {"miou": 0.4}})
    with pytest.raises(KeyError, match="no results for task 'depth'"):
        delta_m({}, {"depth": {"rmse": 0.5}})
    with pytest.raises(ValueError, match="is 0"):
        delta_m({"semseg": {"miou": 0.1}}, {"semseg": {"miou": 0.0}})


# ---------------------------------------------------------------------------------------------- evaluator
def test_every_task_has_a_meter_reporting_its_main_metric():
    info = get_dataset_info("pascal")
    assert set(TASKS.names()) <= set(METERS.names())
    g = torch.Generator().manual_seed(0)
    outputs = {"semseg": torch.randn(1, 21, 8, 8, generator=g), "human_parts": torch.randn(1, 7, 8, 8, generator=g),
               "sal": torch.randn(1, 2, 8, 8, generator=g), "normals": torch.randn(1, 3, 8, 8, generator=g),
               "edge": torch.randn(1, 1, 8, 8, generator=g)}
    batch = {"semseg": torch.randint(0, 21, (1, 8, 8), generator=g),
             "human_parts": torch.randint(0, 7, (1, 8, 8), generator=g),
             "sal": torch.randint(0, 2, (1, 8, 8), generator=g),
             "normals": F.normalize(torch.randn(1, 3, 8, 8, generator=g), dim=1),
             "edge": (torch.rand(1, 1, 8, 8, generator=g) > 0.8).float()}
    evaluator = MultiTaskEvaluator(info.tasks, info)
    evaluator.update(outputs, batch)
    results = evaluator.compute()
    for task in info.tasks:
        assert get_task(task).main_metric in results[task]
    assert evaluator.main_metrics(results) == {t: results[t][get_task(t).main_metric] for t in info.tasks}
    assert evaluator.meters["edge"].max_dist == 0.0075


def test_evaluator_state_sum_equals_pooled_run_and_errors():
    info = get_dataset_info("nyud")
    tasks = ("semseg", "depth")
    g = torch.Generator().manual_seed(1)

    def make_batch():
        depth = torch.rand(2, 1, 5, 6, generator=g) * 4
        depth[:, :, 0] = 0
        return ({"semseg": torch.randn(2, 40, 5, 6, generator=g), "depth": torch.rand(2, 1, 5, 6, generator=g) * 4},
                {"semseg": torch.randint(0, 40, (2, 5, 6), generator=g), "depth": depth})

    batches = [make_batch(), make_batch()]
    pooled, shard_a, shard_b = (MultiTaskEvaluator(tasks, info) for _ in range(3))
    for outputs, batch in batches:
        pooled.update(outputs, batch)
    shard_a.update(*batches[0])
    shard_b.update(*batches[1])
    # a cross-process all-reduce sees the tensors in the same order on every process; emulate it with shard_b's.
    others = iter(shard_b.state().values())
    shard_a.reduce_(lambda t: t + next(others))
    assert shard_a.compute()["depth"]["rmse"] == pytest.approx(pooled.compute()["depth"]["rmse"])
    assert shard_a.compute()["semseg"]["miou"] == pytest.approx(pooled.compute()["semseg"]["miou"])
    with pytest.raises(KeyError, match="batch has no label 'depth'"):
        pooled.update(batches[0][0], {"semseg": batches[0][1]["semseg"]})
    with pytest.raises(KeyError, match="no labels for task 'sal'"):
        MultiTaskEvaluator(("sal",), info)
    with pytest.raises(KeyError, match="unknown meter"):
        METERS.get("segm")



def test_evaluator_consumes_real_model_outputs(tiny_model):
    info = get_dataset_info("nyud")
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 64, 64, generator=g)
    depth = torch.rand(2, 1, 64, 64, generator=g) * 5
    depth[:, :, :8] = 255  # padded rows
    batch = {"image": images, "semseg": torch.randint(0, 40, (2, 64, 64), generator=g), "depth": depth}
    evaluator = MultiTaskEvaluator(tiny_model.tasks, info)
    with torch.no_grad():
        evaluator.update(tiny_model(images), batch)
    results = evaluator.compute()
    assert 0.0 <= results["semseg"]["miou"] <= 1.0 and len(results["semseg"]["iou_per_class"]) == 40
    assert results["depth"]["num_pixels"] == 2 * 56 * 64 and math.isfinite(results["depth"]["rmse"])
