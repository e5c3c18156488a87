"""Our training step reproduces the OFFICIAL DeMTG training step, in float64.

The fixture (tests/fixtures/official_training, see its README) was produced by running the official code: a tiny
random Swin + DemtHead per dataset (NYUD 4 tasks, PASCAL 5 tasks), read through the official dataset classes and
validation transforms, trained 3 steps (batch 1, one image per step) with the official criterion, SGD and poly
schedule. Here each checkpoint is imported with our importer and trained 3 steps with our own components:
`build_dataset` (reader + eval transform), `MultiTaskLoss(per_image=True)`, `build_optimizer` / `build_scheduler`.
Compared: the batch (bit for bit), each task's unweighted loss and the lr at every step, every parameter and
BatchNorm buffer after the 3 steps. Nothing of the official code is needed here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from degmix_tuning.backbones.weights import load_backbone_state
from degmix_tuning.data import build_dataset
from degmix_tuning.data.config import DataConfig
from degmix_tuning.data.info import get_dataset_info
from degmix_tuning.losses import MultiTaskLoss
from degmix_tuning.models import DeGMixConfig, ModelConfig
from degmix_tuning.official import convert_head_state, import_official, official_tasks
from degmix_tuning.training.checkpoint import load_tuned
from degmix_tuning.training.config import TrainConfig
from degmix_tuning.training.optim import build_optimizer, build_scheduler

FIXTURE = Path(__file__).parent / "fixtures" / "official_training"
SPEC = json.loads((FIXTURE / "fixture.json").read_text())
DATASETS = tuple(SPEC["datasets"])
STEPS = 3
# relative differences: |ours - official| / |official| for a loss; max|ours - official| / max|official| per tensor
TOL = 1e-10
# per-tensor movement max|final - initial| / max|initial| that every parameter must exceed (a test that can fail)
MIN_MOVE = 1e3 * TOL


def model_config(dataset: str) -> ModelConfig:
    """The model of fixture.json: official Swin (depths 2-2-2-2, 1 head per stage, window 4, no stochastic depth)
    and the DeMTG head (per-pixel task queries, batch-axis task fusion) at width head_dim."""
    return ModelConfig(
        backbone="tiny_swin",
        backbone_kwargs={"embed_dim": SPEC["embed_dims"], "depths": SPEC["depths"], "num_heads": SPEC["num_heads"],
                         "window_size": SPEC["window_size"], "drop_path_rate": 0.0},
        dataset=dataset, tasks=tuple(SPEC["datasets"][dataset]["tasks"]),
        head=DeGMixConfig(dim=SPEC["head_dim"], interaction="official", query_attention="pixel"),
        freeze_backbone=False,
    )


def train_config() -> TrainConfig:
    return TrainConfig(optimizer="sgd", lr=SPEC["lr"], momentum=SPEC["momentum"], weight_decay=SPEC["weight_decay"],
                       schedule="poly", poly_power=SPEC["poly_power"], max_steps=SPEC["iterations"], batch_size=1)


def official_batch(fixture: dict, step: int) -> dict[str, torch.Tensor]:
    """The batch of `step` as the official loader gave it: float32 [1, C, H, W] (labels stored as uint8)."""
    prefix = f"batch.{step}."
    return {k[len(prefix):]: v.float() for k, v in fixture.items() if k.startswith(prefix)}


def our_batch(dataset: str, step: int) -> dict[str, torch.Tensor]:
    """The same sample through our reader and eval transform (normalise, centre pad), batch of 1."""
    info = SPEC["datasets"][dataset]
    cfg = DataConfig(dataset=dataset, root=str(FIXTURE / info["root"]), crop_size=tuple(SPEC["pad"]))
    ds = build_dataset(cfg, info["split"], info["tasks"], train=False)
    index = ds.reader.ids.index(info["sample_ids"][step])
    sample = ds[index]
    assert sample["meta"]["id"] == info["sample_ids"][step]
    return {k: v[None] for k, v in sample.items() if k != "meta"}


def as_official_layout(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our label convention (class ids int64 [B, H, W]) in the official one (float32 [B, 1, H, W])."""
    return {k: (v[:, None].float() if v.dtype == torch.int64 else v) for k, v in ours.items()}


@pytest.fixture(scope="module", params=DATASETS)
def trained(request, tmp_path_factory):
    """Import the fixture checkpoint, train 3 steps with our components; -> everything the tests compare."""
    dataset = request.param
    fixture = load_file(str(FIXTURE / f"official_steps_{dataset}.safetensors"))
    run = tmp_path_factory.mktemp(f"official_training_{dataset}") / "run"
    ckpt = FIXTURE / f"demtg_tiny_{dataset}.ckpt"
    head_keys = [k[len("head."):] for k in torch.load(ckpt, weights_only=True)["state_dict"] if k.startswith("head.")]
    assert official_tasks(dict.fromkeys(head_keys)) == SPEC["datasets"][dataset]["tasks"]
    import_official(ckpt, model_config(dataset), run)
    model, cfg = load_tuned(run)
    assert cfg.tuning == "full"
    model = model.double().train()
    initial = copy.deepcopy(model)

    tasks = list(SPEC["datasets"][dataset]["tasks"])
    tc = train_config()
    criterion = MultiTaskLoss(tasks, get_dataset_info(dataset), per_image=True)
    optimizer = build_optimizer(tc, model)
    scheduler = build_scheduler(tc, optimizer, steps_per_epoch=None)
    batches, lrs, losses = [], [], []
    for step in range(STEPS):
        batch = our_batch(dataset, step)
        batches.append(batch)
        lrs.append([g["lr"] for g in optimizer.param_groups])
        batch64 = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}  # as the official run
        out = model(batch64["image"])
        loss, parts = criterion(out, batch64)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append({"total": loss.detach(), **parts})
    return {"dataset": dataset, "fixture": fixture, "model": model, "initial": initial, "batches": batches,
            "lrs": lrs, "losses": losses, "tasks": tasks}


def official_final_state(dataset: str, initial, fixture: dict) -> dict[str, torch.Tensor]:
    """The official weights after 3 steps, in our layout: converted by the importer's (exact) key and layout rules
    into a copy of our initial float64 model. Task index i of the official modules (defor_mixers.i, ...) is the
    i-th task of the official list; safetensors sorts keys, so the list comes from fixture.json."""
    ref = copy.deepcopy(initial)
    final = {k[len("final."):]: v for k, v in fixture.items() if k.startswith("final.")}
    head = {k[len("head."):]: v for k, v in final.items() if k.startswith("head.")}
    backbone = {k[len("backbone."):]: v for k, v in final.items() if k.startswith("backbone.")}
    assert all(v.dtype in (torch.float64, torch.int64) for v in final.values())
    tasks = SPEC["datasets"][dataset]["tasks"]
    ref.head.load_state_dict(convert_head_state(head, ref.head.state_dict(), tasks), strict=True)
    load_backbone_state(ref.backbone, backbone, "official_steps")
    return ref.state_dict()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b| (b: the official value)."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def test_our_reader_and_eval_transform_give_the_official_batch(trained):
    for step, ours in enumerate(trained["batches"]):
        official = official_batch(trained["fixture"], step)
        mine = as_official_layout(ours)
        assert mine.keys() == official.keys()
        for key in official:
            assert mine[key].dtype == official[key].dtype and mine[key].shape == official[key].shape, key
            assert torch.equal(mine[key], official[key]), (trained["dataset"], step, key)


def test_learning_rate_at_every_step(trained):
    for step, lrs in enumerate(trained["lrs"]):
        official = trained["fixture"][f"step.{step}.lr"]  # one per official param group (backbone, head)
        assert all(abs(lr - official[0].item()) <= TOL * official[0].item() for lr in lrs)
        assert torch.all(official == official[0])
    # the short poly schedule visibly decays: lr * (1 - t / 6) ** 0.9
    assert trained["fixture"]["step.2.lr"][0] < 0.7 * trained["fixture"]["step.0.lr"][0]


def test_task_losses_at_every_step(trained):
    diffs = {}
    for step, losses in enumerate(trained["losses"]):
        for task in trained["tasks"]:
            official = trained["fixture"][f"step.{step}.loss.{task}"]
            diffs[(step, task)] = abs(losses[task].item() - official.item()) / max(abs(official.item()), 1e-300)
            if official.item() == 0.0:  # an image with no valid pixel for the task (person-free parts, ...)
                diffs[(step, task)] = abs(losses[task].item())
        official_total = trained["fixture"][f"step.{step}.total"]
        diffs[(step, "total")] = abs(losses["total"].item() - official_total.item()) / abs(official_total.item())
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= TOL, (trained["dataset"], worst, diffs[worst], diffs)


def test_every_weight_and_batchnorm_buffer_after_three_steps(trained):
    official = official_final_state(trained["dataset"], trained["initial"], trained["fixture"])
    ours = trained["model"].state_dict()
    assert official.keys() == ours.keys()
    diffs = {}
    for key, ref in official.items():
        if ref.is_floating_point():
            diffs[key] = _rel(ours[key], ref)
        else:  # num_batches_tracked, relative_position_index
            assert torch.equal(ours[key], ref), key
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= TOL, (trained["dataset"], worst, diffs[worst])


def test_the_comparison_can_fail_every_parameter_moved(trained):
    """Each parameter moved far more than the tolerance, so a wrong update anywhere shows."""
    initial = dict(trained["initial"].named_parameters())
    moves = {k: _rel(p.detach(), initial[k].detach()) for k, p in trained["model"].named_parameters()}
    assert all(p.requires_grad for p in trained["model"].parameters())  # tuning "full"
    least = min(moves, key=moves.get)
    assert moves[least] > MIN_MOVE, (least, moves[least])
