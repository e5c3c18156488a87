"""The `mtlora` protocol's optimizer and lr schedule against the official MTLoRA code (github.com/scale-lab/MTLoRA
333a375, the training code DiTASK also runs).

The fixture (tests/fixtures/mtlora_protocol/, made by its generate.py from the official lr_scheduler.py and
optimizer.py, timm 0.9.2 as MTLoRA pins it; timm 1.0.31 gives the same numbers bit for bit) records:
- `curves.<name>.lr[i]`: the lr optimizer step i (0-based) runs with in MTLoRA's loop. MTLoRA builds timm's
  CosineLRScheduler (warmup_prefix=True, t_initial = total - warm-up steps), whose constructor sets the lr to the
  warm-up lr, and calls `step_update(i)` AFTER optimizer step i. Hence lr[0] == lr[1] == warm-up lr and
  lr[i] == schedule(i - 1) for i >= 1, where schedule(t) is timm's value for t updates (`scheduler_values`).
- `no_weight_decay.*`: parameter names/shapes and the group MTLoRA's build_optimizer puts them in. The model it is
  handed (MultiTaskSwin) has no `no_weight_decay()` methods, so only 1-d tensors and `.bias` names go undecayed;
  `relative_position_bias_table` (2-d) IS decayed.

The API under test (degmix_tuning/training/optim.py): `build_optimizer(train_cfg, model)`,
`build_scheduler(train_cfg, optimizer, steps_per_epoch)` -> object with `.step()` (called once after every
optimizer step) and `get_last_lr()` (the lr the NEXT optimizer step will use). `steps_per_epoch` counts optimizer
steps (MTLoRA: len(loader) // accumulation steps). lr, warmup_lr and min_lr are base values, each multiplied by
batch_size * gradient_accumulation_steps / lr_scale_batch (MTLoRA main.py l.577-593, batch_size there being the
per-GPU batch times the number of processes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from degmix_tuning.training.config import TrainConfig
from degmix_tuning.training.optim import build_optimizer, build_scheduler

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "mtlora_protocol" / "lr_curves.json").read_text())
CURVES = sorted(FIXTURE["curves"])
REL = 1e-12


def mtlora_train_config(inputs: dict) -> TrainConfig:
    """The `mtlora` protocol's TrainConfig for one fixture curve (batch_size = per-GPU batch x processes)."""
    return TrainConfig(
        optimizer="adamw", lr=inputs["base_lr"], lr_scale_batch=512, weight_decay=0.05, schedule="cosine",
        epochs=inputs["epochs"], warmup_epochs=inputs["warmup_epochs"], warmup_lr=inputs["warmup_lr"],
        min_lr=inputs["min_lr"], clip_grad_norm=5.0,  # max_steps: derived from epochs
        batch_size=inputs["batch_size"] * inputs["world_size"],
        gradient_accumulation_steps=inputs["accumulation_steps"],
    )


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))  # a decayed and an undecayed group


def group_lrs(optimizer) -> list[float]:
    return [g["lr"] for g in optimizer.param_groups]


@pytest.mark.parametrize("curve", CURVES)
def test_lr_of_every_optimizer_step_matches_mtlora(curve):
    c = FIXTURE["curves"][curve]
    tc = mtlora_train_config(c["inputs"])
    model = tiny_model()
    optimizer = build_optimizer(tc, model)
    scheduler = build_scheduler(tc, optimizer, c["optimizer_steps_per_epoch"])
    sched_values = c["scheduler_values"]
    for i, expected in enumerate(c["lr"]):
        lrs = group_lrs(optimizer)
        assert len(set(lrs)) == 1, f"step {i}: param groups disagree on the lr: {lrs}"
        if lrs[0] != pytest.approx(expected, rel=REL, abs=0.0):
            hint = ""
            if i >= 1 and lrs[0] == pytest.approx(sched_values[i], rel=REL, abs=0.0):
                hint = (" (it equals timm's value for t = i: the schedule runs one update ahead of MTLoRA's, which "
                        "calls step_update(i) after optimizer step i, so step i uses the value for t = i - 1)")
            pytest.fail(f"{curve}: optimizer step {i} ran with lr {lrs[0]!r}, MTLoRA uses {expected!r}{hint}")
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.01)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        assert scheduler.get_last_lr() == pytest.approx(group_lrs(optimizer), rel=REL, abs=0.0), \
            "get_last_lr() must be the lr the next optimizer step uses"


@pytest.mark.parametrize("curve", CURVES)
def test_scaled_endpoints(curve):
    """Warm-up starts at the scaled warmup_lr, peaks at the scaled lr and the cosine ends at the scaled min_lr."""
    c = FIXTURE["curves"][curve]
    scaled = c["scaled"]
    tc = mtlora_train_config(c["inputs"])
    optimizer = build_optimizer(tc, tiny_model())  # MTLoRA: AdamW(lr=scaled BASE_LR), optimizer.py l.58-60
    assert group_lrs(optimizer)[0] == pytest.approx(scaled["lr"], rel=REL, abs=0.0)
    build_scheduler(tc, optimizer, c["optimizer_steps_per_epoch"])  # timm's constructor sets the warm-up lr
    assert group_lrs(optimizer)[0] == pytest.approx(scaled["warmup_lr"], rel=REL, abs=0.0)
    assert max(c["lr"]) == pytest.approx(scaled["lr"], rel=REL)
    t = c["timm_scheduler"]
    total = c["inputs"]["epochs"] * c["optimizer_steps_per_epoch"]
    assert t["warmup_prefix"] and t["t_initial"] == total - t["warmup_t"]


def test_whole_schedule_reaches_min_lr():
    """The 10-epoch curve covers the run: its last steps sit just above the scaled min lr and never below it."""
    c = FIXTURE["curves"]["whole_schedule"]
    cosine = c["lr"][c["timm_scheduler"]["warmup_t"] + 1:]
    assert min(cosine) >= c["scaled"]["min_lr"]
    assert c["lr"][-1] == pytest.approx(c["scaled"]["min_lr"], rel=0.05)


def test_adamw_hyperparameters():
    tc = mtlora_train_config(FIXTURE["curves"]["warmup_then_cosine"]["inputs"])
    optimizer = build_optimizer(tc, tiny_model())
    assert isinstance(optimizer, torch.optim.AdamW)
    for g in optimizer.param_groups:  # MTLoRA config.py l.219-225 (eps 1e-8, betas (0.9, 0.999))
        assert tuple(g["betas"]) == (0.9, 0.999) and g["eps"] == 1e-8
        assert g["weight_decay"] in (0.0, 0.05)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}


def module_from_table(rows: list[dict], use_trainable: bool = False) -> nn.Module:
    """A module whose named_parameters() are exactly the table's names and shapes."""
    root = nn.Module()
    for row in rows:
        *path, leaf = row["name"].split(".")
        mod = root
        for part in path:
            if part not in mod._modules:
                mod.add_module(part, nn.Module())
            mod = mod._modules[part]
        requires_grad = row["trainable"] if use_trainable else True
        mod.register_parameter(leaf, nn.Parameter(torch.zeros(row["shape"]), requires_grad=requires_grad))
    assert [n for n, _ in root.named_parameters()] == [r["name"] for r in rows]
    return root


def undecayed_names(model: nn.Module, optimizer) -> tuple[set[str], set[str]]:
    wd = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            wd[id(p)] = g["weight_decay"]
    names = {n: wd.get(id(p)) for n, p in model.named_parameters() if p.requires_grad}
    missing = {n for n, v in names.items() if v is None}
    assert not missing, f"trainable parameters left out of the optimizer: {sorted(missing)[:5]}"
    return {n for n, v in names.items() if v == 0.0}, {n for n, v in names.items() if v != 0.0}


def test_no_weight_decay_swin_tiny():
    rows = FIXTURE["no_weight_decay"]["swin_tiny_patch4_window7_224"]
    model = module_from_table(rows)
    tc = mtlora_train_config(FIXTURE["curves"]["warmup_then_cosine"]["inputs"])
    exempt, decayed = undecayed_names(model, build_optimizer(tc, model))
    expected = {r["name"] for r in rows if r["no_weight_decay"]}
    assert "layers.0.blocks.0.attn.relative_position_bias_table" in decayed, (
        "MTLoRA decays relative_position_bias_table: main.py hands build_optimizer the MultiTaskSwin, which has no "
        "no_weight_decay_keywords(), so only 1-d tensors and '.bias' names are exempt (optimizer.py l.33-37, l.78)")
    assert exempt == expected, (f"exempt but decayed in MTLoRA: {sorted(exempt - expected)[:5]}; "
                                f"decayed but exempt in MTLoRA: {sorted(expected - exempt)[:5]}")
    assert decayed == {r["name"] for r in rows if not r["no_weight_decay"]}


@pytest.mark.skipif("mtlora_tiny_448_r64_pertask" not in FIXTURE["no_weight_decay"],
                    reason="fixture made without --mtlora-model")
def test_no_weight_decay_real_mtlora_model_trainable_part():
    """MTLoRA r64 (README config): its trainable parameters (8,344,634, the paper's 8.34M) grouped as MTLoRA does."""
    table = FIXTURE["no_weight_decay"]["mtlora_tiny_448_r64_pertask"]
    rows = table["params"]
    model = module_from_table(rows, use_trainable=True)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == table["trainable_params"] == 8_344_634
    tc = mtlora_train_config(FIXTURE["curves"]["warmup_then_cosine"]["inputs"])
    exempt, decayed = undecayed_names(model, build_optimizer(tc, model))
    assert exempt == {r["name"] for r in rows if r["trainable"] and r["no_weight_decay"]}
    assert decayed == {r["name"] for r in rows if r["trainable"] and not r["no_weight_decay"]}
