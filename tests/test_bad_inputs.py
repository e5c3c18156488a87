"""Bad inputs are refused or reported, never passed on silently (issue 21): metrics with no valid pixel are MISSING
with a reason (never NaN, never a made-up 0) wherever they are shown or written; `data validate` warns about such a
split; booleans and NaN/inf are refused for numeric config fields; loss weights must be finite and >= 0; NaN
offsets never reach torchvision's CPU deformable conv (which crashes the process on them)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from degmix_tuning.data.formats import write_npy
from degmix_tuning.data.info import get_dataset_info
from degmix_tuning.metrics import MultiTaskEvaluator, delta_m, summary_line
from degmix_tuning.tasks import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]
H, W = 8, 10


def strict_json(obj) -> dict:
    """Round trip through JSON that refuses NaN/inf (what `json.dumps` would otherwise write as invalid JSON)."""
    return json.loads(json.dumps(obj, allow_nan=False))


# ------------------------------------------------------------------------------------- 1. missing metrics
def _outputs(info, tasks, batch: int, g: torch.Generator) -> dict:
    return {t: torch.randn(batch, info.num_outputs(t), H, W, generator=g) for t in tasks}


def _labels(task: str, batch: int, fill: float) -> torch.Tensor:
    if task in ("depth", "edge"):
        return torch.full((batch, 1, H, W), fill)
    if task == "normals":
        return torch.full((batch, 3, H, W), fill)
    return torch.full((batch, H, W), int(fill), dtype=torch.long)


@pytest.mark.parametrize("dataset, fills", [
    ("nyud", {"semseg": IGNORE_INDEX, "depth": 0.0, "normals": IGNORE_INDEX, "edge": 0.0}),
    ("pascal", {"semseg": IGNORE_INDEX, "human_parts": IGNORE_INDEX, "sal": IGNORE_INDEX, "edge": IGNORE_INDEX}),
])
def test_a_metric_without_valid_pixels_is_missing_with_its_reason(dataset, fills):
    """Every task: no pixel its metric can score -> None + reason (with the image count), strict JSON, a printed
    "missing (...)"; before, depth/normals gave NaN and segmentation/saliency/edge a made-up 0."""
    info = get_dataset_info(dataset)
    tasks = tuple(fills)
    evaluator = MultiTaskEvaluator(tasks, info)
    g = torch.Generator().manual_seed(0)
    for batch in (2, 1):  # 3 images over two batches
        evaluator.update(_outputs(info, tasks, batch, g), {t: _labels(t, batch, f) for t, f in fills.items()})
    results = strict_json(evaluator.compute())
    expected = {"semseg": "no labelled (non-255) semseg pixel",
                "human_parts": "no labelled (non-255) human_parts pixel",
                "depth": "no valid depth pixel", "normals": "no valid normals pixel",
                "sal": "no valid (non-255) sal pixel", "edge": "no ground-truth edge (boundary) pixel"}
    from degmix_tuning.tasks import get_task

    for task in tasks:
        key = get_task(task).main_metric
        assert results[task][key] is None, (task, results[task])
        assert results[task]["missing"] == f"{expected[task]} in 3 evaluated images"
    assert all(v is None or not isinstance(v, float) for t in tasks for v in results[t].values())
    line = summary_line(results)
    assert "depth rmse: missing (no valid depth pixel in 3 evaluated images)" in line or dataset == "pascal"
    assert line.count("missing (") == len(tasks) and "nan" not in line
    assert all(v is None for v in evaluator.main_metrics(results).values())


def test_saliency_without_a_salient_pixel_misses_maxf_only():
    """Valid pixels but no label 1: recall is undefined so maxF is missing; per-image mIoU (1 for an empty/empty image)
    is still a number."""
    evaluator = MultiTaskEvaluator(("sal",), get_dataset_info("pascal"))
    evaluator.update({"sal": torch.full((2, 2, H, W), -3.0)}, {"sal": torch.zeros(2, H, W, dtype=torch.long)})
    res = strict_json(evaluator.compute())["sal"]
    assert res["maxf"] is None and res["per_image_miou"] == 1.0
    assert res["missing"] == "no salient (label 1) sal pixel in 2 evaluated images"


def test_nan_predictions_become_missing_not_nan():
    evaluator = MultiTaskEvaluator(("depth",), get_dataset_info("nyud"))
    evaluator.update({"depth": torch.full((1, 1, H, W), float("nan"))}, {"depth": torch.ones(1, 1, H, W)})
    res = strict_json(evaluator.compute())["depth"]
    assert res["rmse"] is None and res["num_pixels"] == H * W
    assert "rmse is nan: the depth predictions are not finite" in res["missing"]


def test_image_count_is_summed_over_processes():
    """The reason's image count is part of the evaluator state that a cross-process reduce sums."""
    info = get_dataset_info("nyud")
    a, b = MultiTaskEvaluator(("depth",), info), MultiTaskEvaluator(("depth",), info)
    a.update({"depth": torch.ones(2, 1, H, W)}, {"depth": torch.zeros(2, 1, H, W)})
    b.update({"depth": torch.ones(3, 1, H, W)}, {"depth": torch.zeros(3, 1, H, W)})
    others = iter(b.state().values())
    a.reduce_(lambda t: t + next(others))
    assert a.compute()["depth"]["missing"] == "no valid depth pixel in 5 evaluated images"


def test_delta_m_refuses_or_skips_a_missing_metric_with_its_reason():
    from degmix_tuning.training.selection import BestEvaluation

    reason = "no valid depth pixel in 12 evaluated images"
    results = {"semseg": {"miou": 0.44}, "depth": {"rmse": None, "missing": reason}}
    reference = {"semseg": {"miou": 0.40}, "depth": {"rmse": 0.5}}
    with pytest.raises(ValueError, match=r"results depth rmse is missing \(no valid depth pixel in 12 evaluated"):
        delta_m(results, reference)
    assert delta_m(results, reference, skip_missing=True) == pytest.approx(10.0)  # semseg alone
    with pytest.raises(ValueError, match="no task can be compared"):
        delta_m({"depth": results["depth"]}, {"depth": reference["depth"]}, skip_missing=True)
    with pytest.raises(ValueError, match="missing"):  # a NaN written by an older run is missing too, not a number
        delta_m({"depth": {"rmse": float("nan")}}, {"depth": {"rmse": 0.5}})
    best = BestEvaluation("degmix")  # train.select=best: ranks on the tasks it can compare
    assert best.offer(1, results) and best.offer(2, {**results, "semseg": {"miou": 0.5}})
    assert best.score == pytest.approx(100 * (0.5 - 0.44) / 0.44)


def test_an_evaluation_with_no_comparable_task_is_never_the_best_and_is_named():
    """train.select=best must not stop a run when an evaluation has nothing to compare (first-evaluation reference
    of mIoU 0 plus a missing depth): that evaluation is left unranked, recorded, and the run goes on."""
    from degmix_tuning.training.selection import BestEvaluation

    missing = {"depth": {"rmse": None, "missing": "no valid depth pixel in 4 evaluated images"}}
    best = BestEvaluation("degmix", reference={"semseg": {"miou": 0.0}, "depth": {"rmse": 0.5}})
    assert not best.offer(1, {"semseg": {"miou": 0.3}, **missing})
    assert best.offer(2, {"semseg": {"miou": 0.3}, "depth": {"rmse": 0.4}})
    assert best.step == 2 and best.score == pytest.approx(20.0) and best.summary()["unranked_steps"] == [1]
    again = BestEvaluation("degmix")
    again.load_state_dict(best.state_dict())
    assert again.unranked == [1] and again.step == 2


@pytest.fixture(scope="module")
def no_depth_run(tmp_path_factory):
    """A 2-step run on a NYUD root whose val depth maps are all 0 (no valid pixel); its stdout."""
    from test_data_readers import fake_indoor_scene as scene

    from degmix_tuning.data.synthetic.writer import write_synthetic_dataset
    from degmix_tuning.training.config import ExperimentConfig
    from degmix_tuning.training.engine import train

    out = tmp_path_factory.mktemp("no_depth")
    root = write_synthetic_dataset(out / "nyud", n=8, flavour="nyud", seed=0, size=(48, 64), render_fn=scene)
    val = (root / "gt_sets" / "val.txt").read_text().split()
    for sample_id in val:
        write_npy(root / "depth" / f"{sample_id}.npy", np.zeros((48, 64), np.float32))
    cfg = ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=16", "model.tasks=semseg,depth", "random_backbone=true",
        "data.synthetic=false", f"data.root={root}", "data.crop_size=48,64", "data.num_workers=0",
        "train.batch_size=2", "train.eval_batch_size=2", "train.max_steps=2", "train.eval_every=0",
        "train.checkpoint_every=0", "train.eval_at_start=false", "train.trackers=csv",
        f"train.output_dir={out / 'runs' / 'full'}"])
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = train(cfg, show_progress=False)
    return root, result.run_dir, buf.getvalue(), len(val)


def test_a_run_without_valid_val_depth_prints_and_writes_missing(no_depth_run):
    _, run, stdout, n_val = no_depth_run
    reason = f"no valid depth pixel in {n_val} evaluated images"
    assert "step 2 eval: semseg miou=" in stdout and f"depth rmse: missing ({reason})" in stdout
    assert "nan" not in stdout.lower().replace("nan_", "")
    for line in (run / "metrics.jsonl").read_text().splitlines():  # strict JSON: NaN would not parse
        depth = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))["metrics"]["depth"]
        assert depth["rmse"] is None and depth["missing"] == reason
    summary = json.loads((run / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert summary["final_metrics"]["depth"]["rmse"] is None and summary["headline_metrics"]["depth"] == {"rmse": None}


def test_reports_treat_a_missing_metric_as_missing(no_depth_run):
    from degmix_tuning.reporting.comparison import build_comparison
    from degmix_tuning.reporting.runs import load_run

    _, run, _, n_val = no_depth_run
    record = load_run(run)
    assert set(record.paper_metrics()) == {"semseg"}
    assert record.missing_metrics() == {"depth": f"depth rmse is missing (no valid depth pixel in {n_val} evaluated "
                                                 "images)"}
    other = run.parent / "lora"
    shutil.copytree(run, other)
    lines = (other / "metrics.jsonl").read_text().splitlines()
    old_style = json.loads(lines[-1])
    old_style["metrics"]["depth"] = {"rmse": float("nan"), "num_pixels": 0}  # as runs wrote it before
    (other / "metrics.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(old_style)]) + "\n")
    assert load_run(other).paper_metrics() == record.paper_metrics()
    setup = {"tasks": ["semseg", "depth"], "protocol": "degmix"}
    comparison = build_comparison(run.parent, ["full", "lora"], "full", setup)
    assert [r.delta_m for r in comparison.rows] == [None, None]
    assert comparison.delta_m_note.startswith("Δm undefined: the reference misses a metric (full: depth rmse is "
                                              "missing (no valid depth pixel")
    assert [r.metrics["depth"] for r in comparison.rows] == [None, None]
    assert all(cells[-2:] == ["missing", "—"] for cells in comparison.table_rows())
    strict_json(comparison.to_dict())


def test_evaluate_command_shows_missing_and_writes_strict_json(no_depth_run, tmp_path, capsys):
    from degmix_tuning.cli import main

    root, run, _, n_val = no_depth_run
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(run), "--data-root", str(root), "--eval-workers", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"depth: missing metrics: no valid depth pixel in {n_val} evaluated images" in printed
    assert "nan" not in printed.lower()
    written = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))["metrics"]["depth"]
    assert written["rmse"] is None and written["missing"].startswith("no valid depth pixel")


def test_data_validate_warns_about_a_split_without_valid_pixels(no_depth_run, capsys):
    """A warning (exit 0, like other legal-but-unusual data) naming split and task; the clean train split is quiet."""
    from degmix_tuning.cli import main

    root, _, _, n_val = no_depth_run
    assert main(["data", "validate", "--dataset", "nyud", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: [val] depth: no valid (non-0, non-255) depth pixel in the {n_val} checked ids; "
                        "evaluated on val, the depth metrics would be reported as missing"]
    assert "OK: no problems found (1 warning(s) above)" in out


# -------------------------------------------------------------------------------------- 2. config values
@pytest.mark.parametrize("override, message", [
    ("train.batch_size=true", "train.batch_size: expected an integer, got the boolean true"),
    ("train.lr=false", "train.lr: expected a number, got the boolean false"),
    ("train.clip_grad_norm=true", "train.clip_grad_norm: expected a number, got the boolean true (or null)"),
    ("model.head.dim=true", "model.head.dim: expected an integer, got the boolean true"),
    ("data.cat_max_ratio=inf", "data.cat_max_ratio: expected a finite number, got 'inf'"),
    ("train.weight_decay=NaN", "train.weight_decay: expected a finite number, got nan"),
])
def test_booleans_and_non_finite_numbers_are_refused_in_one_line(override, message):
    from degmix_tuning.training.config import ExperimentConfig

    with pytest.raises(ValueError) as info:
        ExperimentConfig().override([override])
    assert str(info.value) == message
    assert ExperimentConfig().override(["train.batch_size=3"]).train.batch_size == 3  # numbers still pass


def test_recipe_refuses_a_boolean_batch_size_with_exit_2(capsys):
    from degmix_tuning.training.recipe import main

    assert main("nyud", ["--synthetic", "--set", "train.batch_size=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.batch_size: expected an integer, got the boolean true" in err[0]


# ---------------------------------------------------------------------------------------- 3. loss weights
@pytest.mark.parametrize("weights, message", [
    ({"depth": -1.0}, "loss weight of task 'depth' must be a finite number >= 0, got -1.0"),
    ({"semseg": float("nan")}, "loss weight of task 'semseg' must be a finite number >= 0, got nan"),
    ({"depth": float("inf")}, "loss weight of task 'depth' must be a finite number >= 0, got inf"),
    ({"depth": True}, "loss weight of task 'depth' must be a number, got True"),
    ({"semseg": 0, "depth": 0.0}, "every loss weight is 0 (semseg, depth): nothing would be trained"),
])
def test_unusable_loss_weights_are_refused_naming_the_task(weights, message):
    from degmix_tuning.losses import MultiTaskLoss

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MultiTaskLoss(["semseg", "depth"], weights=weights)


def test_a_zero_loss_weight_switches_the_task_loss_off():
    """Zero is allowed: the task is still computed (and evaluated) but adds nothing to the total or its gradient."""
    from degmix_tuning.losses import MultiTaskLoss

    g = torch.Generator().manual_seed(0)
    outputs = {"semseg": torch.randn(2, 40, H, W, generator=g), "depth": torch.randn(2, 1, H, W, generator=g)}
    for v in outputs.values():
        v.requires_grad_(True)
    batch = {"semseg": torch.randint(0, 40, (2, H, W), generator=g), "depth": torch.rand(2, 1, H, W, generator=g) + 1}
    total, parts = MultiTaskLoss(["semseg", "depth"], weights={"depth": 0})(outputs, batch)
    assert parts["depth"] > 0 and total.item() == pytest.approx(parts["semseg"].item(), rel=1e-6)
    total.backward()
    assert outputs["depth"].grad.abs().max() == 0 and outputs["semseg"].grad.abs().max() > 0


def test_the_train_command_refuses_a_negative_loss_weight(tmp_path, capsys):
    from degmix_tuning.training.recipe import main

    code = main("nyud", ["--synthetic", "--random-backbone", "--backbone", "tiny_swin", "--output-dir",
                         str(tmp_path / "run"), "--set", 'train.loss_weights={"depth": -2}', "--set",
                         "data.synthetic_n=4", "--set", "data.synthetic_size=48,64", "--set", "train.batch_size=1",
                         "--max-steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "loss weight of task 'depth' must be a finite number >= 0, got -2" in err[0]


def test_print_config_refuses_a_negative_loss_weight_before_anything_runs(tmp_path, capsys):
    """The check sits in TrainConfig, so a config that would be refused at start is refused when printed too."""
    from degmix_tuning.training.recipe import main

    code = main("nyud", ["--synthetic", "--random-backbone", "--backbone", "tiny_swin", "--output-dir",
                         str(tmp_path / "run"), "--set", 'train.loss_weights={"edge": -0.5}', "--print-config"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "loss weight of task 'edge' must be a finite number >= 0, got -0.5" in err[0]
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 4. NaN offsets, torchvision
NAN_FORWARD = """
import torch
from degmix_tuning import create_model
from degmix_tuning.losses import MultiTaskLoss, NonFiniteLossError
from degmix_tuning.models.presets import get_preset
torch.manual_seed(0)
cfg = get_preset("degmix_tuning_tiny_nyud").to_dict()
cfg["head"]["deform_impl"] = "torchvision"
model = create_model(type(get_preset("degmix_tuning_tiny_nyud")).from_dict(cfg)).train()
mixer_conv = next(m for n, m in model.named_modules() if n.endswith("channel_mix.0"))
with torch.no_grad():
    mixer_conv.weight[0, 0] = float("nan")  # NaN features -> NaN offsets in the deformable conv behind it
out = model(torch.randn(2, 3, 64, 64))
print("nan outputs:", sorted(t for t, v in out.items() if v.isnan().any()), flush=True)
criterion = MultiTaskLoss(["semseg", "depth"])
batch = {"semseg": torch.randint(0, 40, (2, 64, 64)), "depth": torch.rand(2, 1, 64, 64) + 1}
_, parts = criterion(out, batch, check_finite=False)
try:
    criterion.watch.record(1, parts)  # what the training loop does: on the CPU it raises at once
except NonFiniteLossError as exc:
    print("caught:", exc)
"""


def test_nan_in_a_mixer_weight_with_torchvision_is_caught_not_a_crash():
    """Before: SIGSEGV (returncode -11) inside torchvision's CPU kernel. Now: NaN outputs, named by the loss check."""
    proc = subprocess.run([sys.executable, "-c", NAN_FORWARD], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "nan outputs: ['depth', 'semseg']" in proc.stdout
    assert "caught: loss of task 'semseg' is nan at step 1" in proc.stdout


def test_guarded_op_equals_torchvision_when_finite_and_grid_sample_when_not():
    """Finite offsets: bit-identical to torchvision's op (outputs and gradients). Non-finite ones: NaN at exactly the
    output pixels where grid_sample gives NaN, finite elsewhere; and no host sync (masks only)."""
    from torchvision.ops import deform_conv2d

    from degmix_tuning.models.deform_ops import deform_conv1x1_grid_sample
    from degmix_tuning.models.deformable_mixer import guarded_deform_conv2d
    from test_step_syncs import SYNC_OPS
    from torch.utils._python_dispatch import TorchDispatchMode

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(2, 8, 9, 11, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    weight = torch.randn(5, 4, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    got = guarded_deform_conv2d(x, offset, weight)
    ref = deform_conv2d(x, offset, weight)
    assert torch.equal(got, ref)
    grads = torch.autograd.grad(got.square().sum(), (x, offset, weight))
    for a, b in zip(grads, torch.autograd.grad(ref.square().sum(), (x, offset, weight))):
        assert torch.equal(a, b)

    bad = offset.detach().clone()
    bad[0, 3, 2, 5] = float("nan")
    bad[1, 0, 7, 1] = float("inf")
    bad[1, 7, 0, 0] = -float("inf")

    class Syncs(TorchDispatchMode):
        seen: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func._overloadpacket.__name__ in SYNC_OPS:
                self.seen.append(func._overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Syncs() as syncs:
        out = guarded_deform_conv2d(x.detach(), bad, weight.detach())
    assert syncs.seen == []
    expected_nan = deform_conv1x1_grid_sample(x.detach(), bad, weight.detach()).isnan()
    assert torch.equal(out.isnan(), expected_nan) and int(expected_nan[:, 0].sum()) == 3
    clean = bad.masked_fill(~torch.isfinite(bad), 0.0)
    assert torch.equal(out[~out.isnan()], deform_conv2d(x.detach(), clean, weight.detach())[~out.isnan()])
    assert not math.isnan(float(out[0, 0, 0, 0]))
