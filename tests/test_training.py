"""Training end to end on tiny synthetic data: learning, exact resume, adapter files, NaN handling, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from degmix_tuning.training.checkpoint import load_tuned, read_adapter
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.engine import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(out: Path, **train_overrides) -> ExperimentConfig:
    overrides = [
        "model.backbone=tiny_swin", "model.head.dim=32", "model.tasks=semseg,depth",
        "data.synthetic=true", "data.synthetic_n=24", "data.synthetic_size=48,64", "data.num_workers=0",
        "train.batch_size=4", "train.eval_batch_size=6", "train.lr=0.05", "train.max_steps=30", "train.eval_every=0",
        "train.checkpoint_every=0", "train.log_every=5", "train.eval_at_start=true", f"train.output_dir={out}",
    ] + [f"train.{k}={v}" for k, v in train_overrides.items()]
    return ExperimentConfig().override(overrides)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synthetic_cache):
    out = tmp_path_factory.mktemp("run") / "tiny"
    return train(tiny_config(out), show_progress=False)


def test_training_beats_the_untrained_model(trained_run):
    before, after = trained_run.initial_metrics, trained_run.final_metrics
    assert after["depth"]["rmse"] < 0.8 * before["depth"]["rmse"]
    assert after["semseg"]["miou"] > before["semseg"]["miou"] + 0.005
    assert after["semseg"]["pixel_acc"] > before["semseg"]["pixel_acc"] + 0.2


def test_run_folder_contents(trained_run):
    run = trained_run.run_dir
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["backbone"] == "tiny_swin" and cfg["train"]["max_steps"] == 30
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 30]
    assert lines[-1]["metrics"]["depth"]["rmse"] == pytest.approx(trained_run.final_metrics["depth"]["rmse"])
    assert any((run / "tensorboard").rglob("events.out.tfevents*"))
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0] == "step,key,value" and any(",train/loss_semseg," in r for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["adapter_bytes"] == (run / "adapter.safetensors").stat().st_size
    assert summary["adapter_bytes"] < summary["full_model_bytes"]
    umask = os.umask(0)
    os.umask(umask)
    assert (run / "adapter.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file it wrote


def test_adapter_holds_only_trainable_state_and_reloads(trained_run):
    tensors, meta = read_adapter(trained_run.adapter_path)
    assert all(k.startswith("head.") for k in tensors)
    assert meta["config"]["model"]["backbone"] == "tiny_swin"
    model, cfg = load_tuned(trained_run.adapter_path)
    # the rebuilt model carries exactly the trained head
    for k, v in tensors.items():
        assert torch.equal(model.state_dict()[k], v)
    # a different-architecture backbone is refused with a message naming both
    with pytest.raises(ValueError, match="channels"):
        load_tuned(trained_run.adapter_path, backbone="resnet18")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, synthetic_cache):
    full = train(tiny_config(tmp_path / "full", max_steps=6, checkpoint_every=3, eval_at_start="false"),
                 show_progress=False)
    interrupted_cfg = tiny_config(tmp_path / "cut", max_steps=6, checkpoint_every=3, eval_at_start="false")
    first = train(interrupted_cfg, stop_after=3, show_progress=False)
    assert first.step == 3
    resumed = train(interrupted_cfg, resume_from="latest", show_progress=False)
    assert resumed.step == 6
    a, _ = read_adapter(full.adapter_path)
    b, _ = read_adapter(resumed.adapter_path)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"resumed weights differ at {k}")


def test_existing_run_is_not_overwritten(trained_run):
    cfg = ExperimentConfig.load(trained_run.run_dir / "config.json")
    (trained_run.run_dir / "checkpoints" / "step_30").mkdir(parents=True, exist_ok=True)
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, show_progress=False)


def test_nan_loss_stops_with_step_task_and_checkpoint(tmp_path, synthetic_cache, monkeypatch):
    from head_poisoning import nan_depth_from_call

    nan_depth_from_call(monkeypatch, 5)  # depth goes NaN from step 5 on
    cfg = tiny_config(tmp_path / "nan", max_steps=8, checkpoint_every=2, eval_at_start="false")
    with pytest.raises(TrainingDiverged, match=r"step 5 in task 'depth'.*step_4"):
        train(cfg, show_progress=False)


def test_recipe_without_data_names_the_fix(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "tune_nyud.py"), "--output-dir", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "data validate --dataset nyud" in proc.stderr and "--synthetic" in proc.stderr


def test_cli_evaluate_and_predict(trained_run, tmp_path):
    from degmix_tuning.cli import main

    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(trained_run.run_dir), "--out", str(out_json)]) == 0
    metrics = json.loads(out_json.read_text())["metrics"]
    # the run's eval batch size and the seeded backbone rebuild: the recorded numbers, exactly
    for task, recorded in trained_run.final_metrics.items():
        for key, value in recorded.items():
            if isinstance(value, float):
                assert metrics[task][key] == value, (task, key)
    pred_dir = tmp_path / "pred"
    assert main(["predict", str(trained_run.run_dir), "--limit", "2", "--out", str(pred_dir)]) == 0
    pngs = sorted((pred_dir / "vis").glob("*.png"))
    assert len(pngs) == 2
    from PIL import Image as _Image

    # a readable figure: input + 2 tasks, prediction and ground-truth rows, ~320 px per 64-px panel
    width, height = _Image.open(pngs[0]).size
    assert width > 3 * 250 and height > 2 * 150
    from PIL import Image

    seg = sorted((pred_dir / "semseg").glob("*.png"))
    assert len(seg) == 2 and Image.open(seg[0]).size == (64, 48)  # native size, padding cropped away
    depth = sorted((pred_dir / "depth").glob("*.npy"))
    import numpy as np

    assert np.load(depth[0]).shape == (48, 64)
    assert len(list((pred_dir / "depth").glob("*.mat"))) == 2


def test_reload_reproduces_the_recorded_metrics_whatever_the_rng_state(trained_run):
    """A random-init frozen backbone is rebuilt from train.seed, so evaluation repeats the run's numbers exactly."""
    from torch.utils.data import DataLoader

    from degmix_tuning.data import build_dataset
    from degmix_tuning.data.info import get_dataset_info
    from degmix_tuning.metrics import MultiTaskEvaluator
    from degmix_tuning.training.engine import _mean_std, evaluate

    results = []
    for seed in (123, 456):
        torch.manual_seed(seed)  # a different global RNG state each time: the rebuild must not depend on it
        model, cfg = load_tuned(trained_run.run_dir)
        mean, std = _mean_std(model)
        ds = build_dataset(cfg.data, cfg.data.val_split, list(cfg.model.tasks), train=False, mean=mean, std=std)
        loader = DataLoader(ds, batch_size=cfg.train.eval_batch_size, shuffle=False, num_workers=0)
        results.append(evaluate(model, loader, MultiTaskEvaluator(cfg.model.tasks, get_dataset_info(cfg.model.dataset))))
    for task, recorded in trained_run.final_metrics.items():
        for key, value in recorded.items():
            if isinstance(value, float):
                assert results[0][task][key] == results[1][task][key] == value, (task, key)


def test_other_frozen_weights_are_refused(trained_run):
    from degmix_tuning.backbones import create_backbone

    torch.manual_seed(7)
    other = create_backbone("tiny_swin")  # same architecture and channels, other weights
    with pytest.raises(ValueError, match="other frozen backbone weights"):
        load_tuned(trained_run.run_dir, backbone=other)
    with pytest.warns(UserWarning, match="other frozen backbone weights"):  # accepted on request, with a warning
        model, _ = load_tuned(trained_run.run_dir, backbone=other, allow_backbone_mismatch=True)
    assert torch.equal(model.backbone.state_dict()["model.patch_embed.proj.weight"],
                       other.state_dict()["model.patch_embed.proj.weight"])
    deeper = create_backbone("tiny_swin", depths=(1, 1, 2, 1))  # same channels, another architecture
    with pytest.raises(ValueError, match="another frozen backbone architecture"):
        load_tuned(trained_run.run_dir, backbone=deeper, allow_backbone_mismatch=True)


def test_checkpoints_hold_the_adapter_not_the_frozen_backbone(tmp_path, synthetic_cache):
    out = tmp_path / "small_ckpt"
    cfg = tiny_config(out, max_steps=4, checkpoint_every=2, eval_at_start="false")
    train(cfg, show_progress=False)
    ckpt = out / "checkpoints" / "step_4"
    assert not (ckpt / "model.safetensors").exists()
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    adapter = (out / "adapter.safetensors").stat().st_size
    # the adapter + SGD momentum (one float per trainable weight) + ~20 KB of scheduler/RNG state, nothing frozen
    assert size < 2 * adapter + 40_000, (size, adapter)
    tensors, meta = read_adapter(ckpt)
    assert meta["step"] == 4 and not any(k.startswith("backbone.") for k in tensors)
    other = tiny_config(tmp_path / "other_seed", max_steps=2, checkpoint_every=2, eval_at_start="false", seed=1)
    train(other, show_progress=False)  # its frozen random-init backbone differs from this run's
    foreign = tmp_path / "other_seed" / "checkpoints" / "step_2"
    # refused by the config the foreign checkpoint was written with (its own config.json), before any loading
    with pytest.raises(ValueError, match=r"different model.*train.seed: 1 -> 0"):
        train(cfg.override(["train.max_steps=6"]), resume_from=str(foreign), show_progress=False)
    result = train(cfg.override(["train.max_steps=6"]), resume_from="latest", show_progress=False)
    assert result.step == 6


def _launch_two_cpu_processes(out: Path, sets: list[str], cache: Path) -> subprocess.CompletedProcess:
    """The NYUD recipe under `accelerate launch --multi_gpu --num_processes 2` on CPU (a gloo job)."""
    import os

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(ROOT / "recipes" / "tune_nyud.py"), "--synthetic", "--no-progress", "--output-dir", str(out)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "DEGMIX_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


TWO_PROCESS_SETS = ["model.backbone=tiny_swin", "model.head.dim=32", "data.synthetic_n=24", "data.synthetic_size=48,64",
                    "data.num_workers=0"]


@pytest.mark.slow
def test_two_cpu_processes_form_one_job(tmp_path, synthetic_cache):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: one gloo job, one run folder written once."""
    out = tmp_path / "ddp"
    proc = _launch_two_cpu_processes(out, TWO_PROCESS_SETS + [
        "train.eval_batch_size=2", "train.max_steps=4", "train.eval_every=2", "train.checkpoint_every=2",
        "train.log_every=1"], synthetic_cache)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["step"] == 4
    assert proc.stdout.count("run folder:") == 1 and proc.stdout.count("step 4 eval") == 1  # rank 0 alone prints
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 2, 4]
    rows = (out / "log.csv").read_text().splitlines()
    assert rows.count("step,key,value") == 1
    keys = [tuple(r.split(",")[:2]) for r in rows[1:]]
    assert len(keys) == len(set(keys)) and ("4", "val/depth/rmse") in keys  # every (step, key) logged once
    writers = {p.name.split(".")[-2] for p in (out / "tensorboard").rglob("events.out.tfevents*")}
    assert len(writers) == 1  # one process wrote TensorBoard events
    # the pooled 2-process evaluation equals a single-process evaluation of the saved model
    from torch.utils.data import DataLoader

    from degmix_tuning.data import build_dataset
    from degmix_tuning.data.info import get_dataset_info
    from degmix_tuning.metrics import MultiTaskEvaluator
    from degmix_tuning.training.engine import _mean_std, evaluate

    model, cfg = load_tuned(out)
    mean, std = _mean_std(model)
    ds = build_dataset(cfg.data, cfg.data.val_split, list(cfg.model.tasks), train=False, mean=mean, std=std)
    single = evaluate(model, DataLoader(ds, batch_size=cfg.train.eval_batch_size), MultiTaskEvaluator(
        cfg.model.tasks, get_dataset_info(cfg.model.dataset)))
    for task, values in summary["final_metrics"].items():
        for key, value in values.items():
            if isinstance(value, float):
                assert single[task][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (task, key)


@pytest.mark.slow
def test_two_processes_at_batch_1_equal_one_process_at_batch_2(tmp_path, synthetic_cache):
    """DDP averages per-process gradients; with BatchNorm statistics frozen and equal valid-pixel counts per image
    (depth, no rescaling), 2 processes x 1 image follow the same trajectory as 1 process x 2 images."""
    sets = TWO_PROCESS_SETS + [
        "model.tasks=depth", "data.scale_range=1,1", "train.freeze_bn=true", "train.batch_size=2",
        "train.max_steps=3", "train.eval_every=0", "train.eval_at_start=false", "train.checkpoint_every=0",
        "train.lr=0.05"]
    _launch_two_cpu_processes(tmp_path / "two", sets, synthetic_cache)
    cfg = ExperimentConfig().override(["data.synthetic=true"] + sets + [f"train.output_dir={tmp_path / 'one'}"])
    one = train(cfg, show_progress=False)
    a, _ = read_adapter(tmp_path / "two")
    b, _ = read_adapter(one.adapter_path)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=f"2x1 and 1x2 differ at {k}")
    from degmix_tuning.training.engine import build_model

    torch.manual_seed(cfg.train.seed)  # what train() does before building: the untrained weights
    start = build_model(cfg).state_dict()
    assert max(float((b[k].float() - start[k].float()).abs().max()) for k in b if k.endswith("weight")) > 1e-3


def test_prediction_figure_shares_the_depth_scale_and_names_classes(tmp_path):
    import numpy as np

    from degmix_tuning.visualize import prediction_figure

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pred_depth = np.full((1, 48, 64), 1.5, np.float32)
    gt_depth = np.linspace(0.9, 4.6, 48 * 64, dtype=np.float32).reshape(1, 48, 64)
    gt_depth[0, :4] = 255  # ignored pixels take no part in the scale
    seg = rng.integers(0, 3, (48, 64))
    scales = prediction_figure(tmp_path / "f.png", image, {"semseg": seg, "depth": pred_depth},
                               {"semseg": seg, "depth": gt_depth}, {"semseg": ("wall", "floor", "cabinet")})
    lo, hi = scales["depth"]
    assert lo == pytest.approx(float(gt_depth[0, 4:].min())) and hi == pytest.approx(4.6)  # prediction 1.5 inside
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_log_files_get_plain_progress_lines(tmp_path, synthetic_cache, capsys, monkeypatch):
    """stdout is not a terminal here (pytest captures it): periodic lines instead of a bar's last frame."""
    monkeypatch.delenv("DEGMIX_NO_PROGRESS", raising=False)
    train(tiny_config(tmp_path / "plain", max_steps=4, log_every=2, eval_at_start="false", checkpoint_every=4),
          show_progress=True)
    out = capsys.readouterr().out
    assert "[degmix-tuning] step 2/4 semseg" in out and "img/s | elapsed" in out and "step 4/4" in out
    assert "step 4: evaluating" in out and "step 4: writing checkpoint" in out


def test_a_second_run_on_a_busy_folder_stops_at_once(tmp_path, synthetic_cache):
    from degmix_tuning.training.run_lock import RunFolderBusy, RunFolderLock

    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from degmix_tuning.training.run_lock import RunFolderLock\n"
        f"with RunFolderLock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=rf"in use by another run \(pid {holder.pid}\)"):
            train(tiny_config(out, max_steps=2), show_progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written by the refused run
    finally:
        holder.kill()
        holder.wait()
    with RunFolderLock(out):  # the kernel dropped the killed holder's lock: no stale lock
        pass


def _logged(run_dir: Path, key: str) -> dict[int, float]:
    rows = [r.split(",") for r in (run_dir / "log.csv").read_text().splitlines()[1:]]
    return {int(step): float(value) for step, k, value in rows if k == key}


def test_resume_applies_a_changed_lr_and_a_longer_schedule(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "change"
    cfg = tiny_config(out, max_steps=4, checkpoint_every=2, eval_at_start="false", log_every=1)
    train(cfg, stop_after=2, show_progress=False)
    resumed = cfg.override(["train.lr=0.01"])
    train(resumed, resume_from="latest", show_progress=False)
    assert "changed recipe: lr 0.05 -> 0.01" in capsys.readouterr().out
    lr = _logged(out, "train/lr")
    assert lr[3] == pytest.approx(0.01 * (1 - 3 / 4) ** 0.9, rel=1e-6)  # the new lr rules from the resumed step
    longer = resumed.override(["train.max_steps=6"])  # a finished run trains on, at a positive lr
    result = train(longer, resume_from="latest", show_progress=False)
    assert result.step == 6
    assert _logged(out, "train/lr")[5] == pytest.approx(0.01 * (1 - 5 / 6) ** 0.9, rel=1e-6)
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [(h["event"], h["step"]) for h in history] == [("start", 0), ("resume", 2), ("resume", 4)]
    assert history[1]["changes"] == {"train.lr": [0.05, 0.01]}
    assert history[2]["changes"] == {"train.max_steps": [4, 6]}
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] == 6  # what runs now


def test_resume_refuses_a_changed_model_tuning_or_data_and_lists_the_fields(tmp_path, synthetic_cache):
    out = tmp_path / "refuse"
    cfg = tiny_config(out, max_steps=4, checkpoint_every=2, eval_at_start="false")
    train(cfg, stop_after=2, show_progress=False)
    changed = cfg.override(["model.tasks=semseg", "data.flip=false", "train.lr=0.01"])
    with pytest.raises(ValueError, match=r"data.flip: True -> False; model.tasks: \['semseg', 'depth'\] -> \['semseg'\]"):
        train(changed, resume_from="latest", show_progress=False)
    with pytest.raises(ValueError, match="tuning: 'degmix' -> 'bitfit'"):
        train(cfg.override(["tuning=bitfit"]), resume_from="latest", show_progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved.pop("protocol_overrides")["train.max_steps"] == [40000, 4]  # derived at the start, recorded
    assert saved == {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k != "protocol_overrides"}
    assert len((out / "history.jsonl").read_text().splitlines()) == 1  # only the start: nothing else happened


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "corrupt"
    cfg = tiny_config(out, max_steps=4, checkpoint_every=2, eval_at_start="false", keep_checkpoints=2)
    train(cfg, show_progress=False)
    weights = out / "checkpoints" / "step_4" / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = train(cfg.override(["train.max_steps=5"]), resume_from="latest", show_progress=False)
    printed = capsys.readouterr().out
    assert "step_4 cannot be loaded" in printed and "falling back to" in printed and "step_2" in printed
    assert "resumed from" in printed and result.step == 5
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5]  # the replaced trajectory's step-4 evaluation is dropped; step 5 logged once
    rows = [tuple(r.split(",")[:2]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert len(rows) == len(set(rows))


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path, synthetic_cache, monkeypatch):
    from degmix_tuning.models.heads import TaskHead

    real_forward = TaskHead.forward
    calls = {"n": 0}

    def poison_running_var(self, x, size):
        calls["n"] += 1
        if calls["n"] > 2 * 3:  # from step 4 on (2 heads per step); train-mode BN does not use it, the loss stays finite
            self.bottleneck[1].running_var.fill_(float("inf"))
        return real_forward(self, x, size)

    monkeypatch.setattr(TaskHead, "forward", poison_running_var)
    cfg = tiny_config(tmp_path / "inf", max_steps=6, checkpoint_every=3, eval_at_start="false", eval_every=0)
    with pytest.raises(TrainingDiverged, match=r"non-finite by step 6 .*running_var.*step_3"):
        train(cfg, show_progress=False)
    assert [p.name for p in (tmp_path / "inf" / "checkpoints").iterdir()] == ["step_3"]


def test_the_adapter_is_written_before_the_final_checkpoint(tmp_path, synthetic_cache, monkeypatch):
    """A failing final checkpoint (e.g. a full disk) must not take the trained adapter with it."""
    import errno

    from degmix_tuning.training import engine

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "model.safetensors"))

    monkeypatch.setattr(engine, "save_state_atomically", full_disk)
    cfg = tiny_config(tmp_path / "disk", max_steps=2, eval_at_start="false", checkpoint_every=0)
    with pytest.raises(OSError):
        train(cfg, show_progress=False)
    tensors, meta = read_adapter(tmp_path / "disk")
    assert meta["step"] == 2 and tensors


def test_eval_images_larger_than_the_pad_size_are_refused_before_the_first_step(tmp_path, synthetic_cache):
    out = tmp_path / "small_pad"
    cfg = tiny_config(out, eval_at_start="false").override(["data.crop_size=32,48"])  # eval images are 48x64
    with pytest.raises(ValueError, match=r"larger than the eval pad size 32x48.*data.crop_size=48,64"):
        train(cfg, show_progress=False)
    log = out / "log.csv"
    assert not log.exists() or "train/loss" not in log.read_text()  # refused before the first step
