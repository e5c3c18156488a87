"""Loss normalisation: pooled over the batch, or per image (the official 8 GPUs x 1 image under DDP).

The official criterion (DeMTG src/model/criterion.py, CrossEntropyLoss) returns `loss.sum() / max(n_valid, 1)`: a
person-free image (human_parts all 255) gives a parts loss of 0 on its GPU, and DDP still averages that GPU's
gradient in. Per-image normalisation must reproduce this and must not depend on how a batch is split over processes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from degmix_tuning.data.info import get_dataset_info
from degmix_tuning.losses import MultiTaskLoss, NonFiniteLossError
from degmix_tuning.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
PASCAL = ["semseg", "human_parts", "sal", "normals"]
ALL_TASKS = PASCAL + ["depth", "edge"]
CHANNELS = {"semseg": 5, "human_parts": 7, "sal": 2, "normals": 3, "depth": 1, "edge": 1}


def _batch(b: int = 3, h: int = 6, w: int = 7, dtype=torch.float64, seed: int = 0):
    """Random outputs and labels with a different number of valid pixels per image; image 0 is person-free."""
    g = torch.Generator().manual_seed(seed)
    outputs = {t: torch.randn(b, c, h, w, generator=g, dtype=dtype) for t, c in CHANNELS.items()}

    def ignore(shape, share):  # image i ignores about share * i of its pixels: unequal valid counts
        frac = torch.tensor([share * i for i in range(b)], dtype=dtype).view(-1, *[1] * (len(shape) - 1))
        return torch.rand(shape, generator=g, dtype=dtype) < frac

    labels = {}
    for t in ("semseg", "human_parts", "sal"):
        lab = torch.randint(0, CHANNELS[t], (b, h, w), generator=g)
        lab[ignore(lab.shape, 0.2)] = 255
        labels[t] = lab
    labels["human_parts"][0] = 255  # no person with parts
    normals = F.normalize(torch.randn(b, 3, h, w, generator=g, dtype=dtype), dim=1)
    normals[ignore((b, 1, h, w), 0.25).expand(-1, 3, -1, -1)] = 255
    depth = 0.5 + 4 * torch.rand(b, 1, h, w, generator=g, dtype=dtype)
    depth[ignore(depth.shape, 0.2)] = 255
    depth[:, :, 0, 0] = 0  # invalid too
    edge = (torch.rand(b, 1, h, w, generator=g, dtype=dtype) < 0.3).to(dtype)
    edge[ignore(edge.shape, 0.3)] = 255
    labels.update(normals=normals, depth=depth, edge=edge)
    return outputs, labels


def _image(d: dict, i: int) -> dict:
    return {t: v[i:i + 1] for t, v in d.items()}


def test_per_image_is_the_mean_of_single_image_losses_and_pooled_differs():
    outputs, labels = _batch()
    info = get_dataset_info("pascal")
    per_image = MultiTaskLoss(ALL_TASKS, info, per_image=True)
    pooled = MultiTaskLoss(ALL_TASKS, info)
    total, parts = per_image(outputs, labels)
    singles = [pooled(_image(outputs, i), _image(labels, i)) for i in range(3)]  # batch 1: nothing to pool over
    for t in ALL_TASKS:
        expected = sum(float(s[1][t]) for s in singles) / 3
        assert float(parts[t]) == pytest.approx(expected, rel=1e-12), t
    assert float(total) == pytest.approx(sum(float(s[0]) for s in singles) / 3, rel=1e-12)
    pooled_total, pooled_parts = pooled(outputs, labels)
    for t in ALL_TASKS:  # unequal valid-pixel counts: the two normalisations disagree on every task
        assert abs(float(pooled_parts[t]) - float(parts[t])) > 1e-3, t
    # at batch 1 they agree
    for i in range(3):
        one_total, one_parts = per_image(_image(outputs, i), _image(labels, i))
        assert float(one_total) == pytest.approx(float(singles[i][0]), rel=1e-12)
        assert all(float(one_parts[t]) == pytest.approx(float(singles[i][1][t]), rel=1e-12) for t in ALL_TASKS)


def test_saliency_is_balanced_per_image():
    """Constant logits: every pixel's CE is log 2, so an image with positive share p has loss 2 p (1-p) log 2."""
    label = torch.zeros(2, 10, 10, dtype=torch.long)
    label[0, :1] = 1  # p = 0.1
    label[1, :5] = 1
    label[1, 9] = 255  # ignored: p = 50 / 90 over the valid pixels
    logits = torch.zeros(2, 2, 10, 10, dtype=torch.float64)
    sal = get_task("sal")
    p = torch.tensor([0.1, 50 / 90], dtype=torch.float64)
    torch.testing.assert_close(sal.loss(logits, label, per_image=True), 2 * p * (1 - p) * math.log(2))
    p_batch = 60 / 190  # pooled: both images weighted by the batch's share
    expected = (60 * (1 - p_batch) + 130 * p_batch) / 190 * math.log(2)
    assert float(sal.loss(logits, label)) == pytest.approx(expected, rel=1e-12)


def test_a_person_free_image_adds_zero_to_the_parts_loss_and_counts_as_an_image():
    outputs, labels = _batch()
    logits = outputs["human_parts"].clone().requires_grad_(True)
    per = get_task("human_parts").loss(logits, labels["human_parts"], per_image=True)
    assert per[0] == 0 and bool((per[1:] > 0).all())
    _, parts = MultiTaskLoss(["human_parts"], per_image=True)({"human_parts": logits}, labels)
    assert float(parts["human_parts"]) == pytest.approx(float(per[1:].detach().sum()) / 3)  # / 3 images, not / 2
    per.sum().backward()
    assert torch.count_nonzero(logits.grad[0]) == 0 and torch.count_nonzero(logits.grad[1]) > 0
    # alone (the official batch 1 on one GPU): 0, not NaN, and no gradient
    alone = logits[:1].detach().requires_grad_(True)
    total, parts = MultiTaskLoss(["human_parts"], per_image=True)({"human_parts": alone}, _image(labels, 0))
    total.backward()
    assert float(total.detach()) == 0.0 and float(parts["human_parts"]) == 0.0 and torch.count_nonzero(alone.grad) == 0


def _by_hand(task: str, out: torch.Tensor, lab: torch.Tensor) -> float:
    """One image (no batch dim), written out pixel formula by pixel formula."""
    if task in ("semseg", "human_parts", "sal"):
        valid = lab != 255
        if not valid.any():
            return 0.0
        log_p = out - out.exp().sum(0, keepdim=True).log()  # log softmax over classes
        nll = -log_p.gather(0, torch.where(valid, lab, 0)[None])[0]
        if task == "sal":
            p = (lab[valid] == 1).double().mean()
            nll = nll * torch.where(lab == 1, 1 - p, p)
        return float(nll[valid].sum() / valid.sum())
    if task == "normals":
        valid = (lab != 255).all(0)
        unit = out / out.pow(2).sum(0, keepdim=True).sqrt()
        return float((unit - lab).abs().sum(0)[valid].mean())
    if task == "depth":
        valid = (lab != 255) & (lab != 0)
        return float((out - lab).abs()[valid].mean())
    valid, w = lab != 255, 0.95  # edge, the PASCAL positive weight
    sig = 1 / (1 + (-out).exp())
    bce = -w * lab * sig.log() - (1 - w) * (1 - lab) * (1 - sig).log()
    return float(bce[valid].mean())


@pytest.mark.parametrize("task", ALL_TASKS)
def test_each_task_per_image_loss_equals_a_hand_computation(task):
    outputs, labels = _batch()
    spec = get_task(task)
    overrides = get_dataset_info("pascal").loss_overrides(task)
    got = spec.loss(outputs[task], labels[task], per_image=True, **overrides)
    assert got.dtype == torch.float64 and got.shape == (3,)
    expected = [_by_hand(task, outputs[task][i], labels[task][i]) for i in range(3)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("per_image", [True, False])
def test_gradcheck(batch_size, per_image):
    outputs, labels = _batch(b=batch_size, h=4, w=5)
    if batch_size == 1:
        labels["human_parts"] = _batch(b=2, h=4, w=5)[1]["human_parts"][1:]  # an image with a person
    criterion = MultiTaskLoss(ALL_TASKS, get_dataset_info("pascal"), per_image=per_image)
    inputs = tuple(outputs[t].requires_grad_(True) for t in ALL_TASKS)
    assert torch.autograd.gradcheck(lambda *o: criterion(dict(zip(ALL_TASKS, o)), labels)[0], inputs)


def test_non_finite_per_image_loss_names_the_task():
    outputs, labels = _batch()
    outputs["normals"][1, :, 1, 1] = float("nan")
    labels["normals"][1, :, 1, 1] = 0.5  # a valid pixel
    with pytest.raises(NonFiniteLossError, match="normals"):
        MultiTaskLoss(ALL_TASKS, get_dataset_info("pascal"), per_image=True)(outputs, labels)


def test_half_precision_outputs_get_a_float32_loss_and_float64_stays():
    outputs, labels = _batch(dtype=torch.float32)
    criterion = MultiTaskLoss(PASCAL, get_dataset_info("pascal"), per_image=True)
    total, _ = criterion({t: v.bfloat16() for t, v in outputs.items()}, labels)
    assert total.dtype == torch.float32
    total, _ = criterion({t: v.double() for t, v in outputs.items()}, labels)
    assert total.dtype == torch.float64


# --- the key test: the same global batch split 1 x 4 and 2 x 2 gives the same parameters ---------------------------

SPLIT_ARGS = ["--synthetic", "--no-progress", "--backbone", "tiny_swin", "--head-dim", "32", "--tasks",
              ",".join(PASCAL), "--num-workers", "0", "--batch-size", "4", "--max-steps", "3", "--lr", "0.01",
              "--eval-every", "0", "--checkpoint-every", "0",
              "--set", "data.synthetic_n=24", "--set", "data.synthetic_size=48,64",
              "--set", "data.synthetic_seed=4",  # its train scene 5 shows no person (most synthetic scenes do)
              "--set", "data.scale_range=0.5,2.0",  # zooms and pads: unequal valid-pixel counts per image
              "--set", "train.freeze_bn=true",  # SyncBatchNorm needs CUDA; on CPU BatchNorm uses running statistics
              "--set", "train.eval_at_start=false"]


def _args(out: Path, normalization: str) -> list[str]:
    return SPLIT_ARGS + ["--output-dir", str(out), "--set", f"train.loss_normalization={normalization}"]


def _one_process(out: Path, normalization: str, seen: list | None = None) -> dict:
    from degmix_tuning.training.checkpoint import read_adapter
    from degmix_tuning.training.engine import train
    from degmix_tuning.training.recipe import build_parser, config_from_args

    cfg = config_from_args(build_parser("pascal").parse_args(_args(out, normalization)), "pascal")
    assert cfg.train.loss_normalization == normalization and cfg.train.batch_size == 4
    real_forward = MultiTaskLoss.forward

    def recording(self, outputs, batch, check_finite=True):
        if seen is not None:
            seen.append({t: batch[t].clone() for t in ("human_parts", "sal")})
        return real_forward(self, outputs, batch, check_finite)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MultiTaskLoss, "forward", recording)
        train(cfg, show_progress=False)
    return read_adapter(out)[0]


def _two_processes(out: Path, normalization: str, cache: Path) -> dict:
    from degmix_tuning.training.checkpoint import read_adapter

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(ROOT / "recipes" / "tune_pascal.py")] + _args(out, normalization)
    env = {**os.environ, "DEGMIX_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_adapter(out)[0]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.slow
def test_per_image_loss_does_not_depend_on_the_process_split(tmp_path, synthetic_cache):
    """3 optimizer steps on PASCAL-like data with person-free images: 1 process x 4 images and 2 processes x 2
    images reach the same parameters with per-image normalisation, and different ones with pooling."""
    seen: list = []
    one = _one_process(tmp_path / "one_image", "image", seen)
    assert len(seen) == 3 and all(s["human_parts"].shape[0] == 4 for s in seen)
    parts_valid = torch.stack([(s["human_parts"] != 255).flatten(1).sum(1) for s in seen])  # [step, image]
    assert (parts_valid == 0).any(), "no person-free image in the batches trained on"
    assert (parts_valid[(parts_valid == 0).any(1)] > 0).any(), "a step mixing person-free and person images"
    sal_valid = torch.stack([(s["sal"] != 255).flatten(1).sum(1) for s in seen])
    assert (sal_valid != sal_valid[:, :1]).any(), "equal valid-pixel counts: pooled and per-image would agree"

    two = _two_processes(tmp_path / "two_image", "image", synthetic_cache)
    split = _max_diff(one, two)
    one_pooled = _one_process(tmp_path / "one_batch", "batch")
    two_pooled = _two_processes(tmp_path / "two_batch", "batch", synthetic_cache)
    pooled_split, normalisation = _max_diff(one_pooled, two_pooled), _max_diff(one, one_pooled)
    print(f"max |param difference|: per-image 1x4 vs 2x2 {split:.3g}, pooled 1x4 vs 2x2 {pooled_split:.3g}, "
          f"1x4 per-image vs pooled {normalisation:.3g}")
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=f"1x4 and 2x2 differ at {k}")
    # the logged train loss of the 2-process run is the global batch's (README, "Several GPUs"), not rank 0's half
    def logged(run: Path) -> dict[str, float]:
        rows = [r.split(",") for r in (run / "log.csv").read_text().splitlines()[1:]]
        return {k: float(v) for step, k, v in rows if step == "3" and k.startswith("train/loss")}

    one_log, two_log = logged(tmp_path / "one_image"), logged(tmp_path / "two_image")
    assert set(one_log) == set(two_log) == {"train/loss", *(f"train/loss_{t}" for t in PASCAL)}
    for key, value in one_log.items():
        assert two_log[key] == pytest.approx(value, rel=1e-5), key
    assert pooled_split > 1e-4 and normalisation > 1e-4  # far above the tolerance: the test can fail
